"""Streamlit UI: `streamlit run app.py`. Search with any mix of image, text and audio; compare fusion methods.

Configuration (optional): RETRIEVAL_DB (an SQLAlchemy URL, default sqlite:///data/demo.db) and
RETRIEVAL_ROOTS (folders the Index page may read). With no database yet, the page offers to build the
digits demo collection.
"""

from __future__ import annotations

import os

# Before torch loads (OpenMP reads it once): idle OpenMP threads sleep instead of spinning. A browser on
# the same cores as this server made the spinning threads wait for each other: a three-method text search
# took 155-300 ms in the server instead of 40 ms alone; passive, 60-125 ms (first search in Chromium
# 0.9-1.3 s -> 0.55-0.9 s). Alone, passive costs a batch of 512 texts 1.50 -> 1.64 s. An explicit setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import streamlit as st

from ui import evaluate_page, index_page, item_page, search, strategies_page
from ui.charts import SCROLL_CHARTS
from ui.results_cache import forget_answering
from ui.state import collections, database_exists, db_url, sidebar
from ui.tables import TOOLBAR_ROOM

PAGES = ("Search", "Strategies", "Evaluate", "Index", "Item")


def build_demo(url: str) -> None:
    import os
    from pathlib import Path

    from indexer.datasets import DatasetsMissingError
    from indexer.demo import DemoSpec, index_demo
    from storage import sqlite_path

    # the manifest beside an SQLite file (data/demo.db -> data/digits); RETRIEVAL_DEMO_LIMIT: fewer items
    database = sqlite_path(url)
    out = database.parent / "digits" if database else Path("data/digits")
    limit = os.environ.get("RETRIEVAL_DEMO_LIMIT")

    with st.status(
        "Building the digits demo collection, then training the learned strategies…", expanded=True
    ) as status:
        try:
            bar = st.progress(0.0)

            def report(stage: str, done: int, total: int) -> None:
                bar.progress(min(1.0, done / max(total, 1)), text=f"{stage}: {done}/{total}")

            index_demo(url, out, spec=DemoSpec(limit=int(limit) if limit else None), progress=report)
        except DatasetsMissingError as exc:
            status.update(label="The demo needs the digits datasets", state="error")
            st.text(str(exc))
            return
        status.update(label="Demo collection ready", state="complete")
    collections.clear()


def main() -> None:
    st.set_page_config(page_title="Multimodal retrieval", page_icon="🔎", layout="wide")
    st.html(SCROLL_CHARTS + TOOLBAR_ROOM)
    forget_answering()  # a model trained or chosen since the last run answers now
    url = db_url()
    page = st.sidebar.radio("Page", PAGES, key="page", horizontal=True)
    if not database_exists(url) or not collections(url):
        if page != "Index":
            st.title("Multimodal retrieval")
            st.info(
                f"No collection in `{url}` yet. Build the digits demo collection (2,000 items indexed, then "
                "gated, cross-attention and learned early trained: about a minute), or index your own media "
                "on the Index page."
            )
            if st.button("Build the demo collection", type="primary", key="build_demo"):
                build_demo(url)
                st.rerun()
            return
        index_page.render(url, None)
        return
    settings = sidebar(url)
    if settings is None:
        return
    if page == "Search":
        search.render(settings)
    elif page == "Strategies":
        strategies_page.render(settings)
    elif page == "Evaluate":
        evaluate_page.render(settings)
    elif page == "Index":
        index_page.render(url, settings.collection)
    else:
        item_page.render(settings)


main()
