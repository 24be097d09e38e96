"""Tables as people read them: numbers to three decimals, a blank cell as "—" (never "None", "nan" or
"0.123000", which pandas' Styler and Streamlit's grid showed by default: issue 37)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from pandas.io.formats.style import Styler

BLANK = "—"
DECIMALS = 3


def readable(frame: pd.DataFrame) -> Styler:
    """`frame` styled for `st.dataframe`: floats to `DECIMALS` places, missing cells as `BLANK`; the values
    stay numbers, so a column still sorts as numbers."""
    floats = frame.select_dtypes("float").columns
    return frame.style.format(na_rep=BLANK).format(f"{{:.{DECIMALS}f}}", subset=floats, na_rep=BLANK)


def table(data: pd.DataFrame | Styler, **options: Any) -> None:
    """`st.dataframe` with a missing cell drawn as `BLANK`: the browser's grid draws a missing value as its
    `placeholder` ("None" by default) whatever the Styler's display value says."""
    st.dataframe(readable(data) if isinstance(data, pd.DataFrame) else data, placeholder=BLANK, **options)


# The grid's toolbar (show, download, search, full screen) floats 44 px high at the table's top right: at rest
# and on its way in it sat over the header and first rows, and once in, over the text above the table. Each
# table gets a band of that height above it, and the toolbar always sits in its band (walkthrough #10).
TOOLBAR_ROOM = (
    "<style>"
    '[data-testid="stElementContainer"]:has([data-testid="stDataFrame"]){margin-top:2.75rem}'
    '[data-testid="stDataFrame"] [data-testid="stElementToolbar"]{top:-2.75rem !important}'
    "</style>"
)
