"""The Streamlit UI's pages and widgets; `app.py` wires them together."""
