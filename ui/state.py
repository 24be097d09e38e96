"""What every page shares: the database URL, the cached engine, and the sidebar's method settings."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass, fields
from pathlib import Path

import streamlit as st

from retrieval import SearchEngine
from retrieval.fusion import list_strategies, strategy_class
from retrieval.fusion.scoring import NORMALISATIONS
from retrieval.report import best_learned
from retrieval.results import Method
from storage import Database, sqlite_path
from storage.db import DEFAULT_URL as DEFAULT_DB
from storage.repository import collection_names

MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def db_url() -> str:
    return os.environ.get("RETRIEVAL_DB", DEFAULT_DB)


def queries_file() -> Path:
    """The collection's labelled queries (RETRIEVAL_QUERIES; the demo's by default), read at each rerun:
    read once at import, the first session in a process decided every later one's."""
    return Path(os.environ.get("RETRIEVAL_QUERIES", "data/digits/queries.jsonl"))


def database_exists(url: str) -> bool:
    path = sqlite_path(url)
    return path is None or path.exists()


@st.cache_resource(show_spinner="Opening the collection (models, vectors, indexes)...")
def engine_for(url: str, collection: str) -> SearchEngine:
    engine = SearchEngine.open(url, collection)
    engine.load_encoders()
    engine.prepare(["late", "early", "hybrid"])
    engine.warm_up(list(list_strategies()))
    # The models, vectors and indexes just loaded live as long as the server: without this, each full
    # collection walked them all and took 0.5-0.7 s of a rerun (gc callbacks, AppTest on the demo)
    gc.freeze()
    return engine


@st.cache_data(ttl=30, show_spinner=False)
def collections(url: str) -> list[str]:
    db = Database(url)
    with db.session() as session:
        return collection_names(session)


@dataclass
class Settings:
    url: str
    collection: str
    methods: list[Method]
    k: int


WEIGHTINGS = ("adaptive", "fixed")  # the first is the strategies' default


def method_options(presets: list[str]) -> list[str]:
    """Every strategy, then every saved preset as `preset:NAME`. A preset named like a strategy (the demo saved
    trained early as `learned_early` before it became a strategy) is left out: its results would carry the
    strategy's label beside the strategy's own, and one would hide the other."""
    strategies = list(list_strategies())
    return strategies + [f"preset:{p}" for p in presets if p not in strategies]


def sidebar(url: str) -> Settings | None:
    """Collection, methods to show, weights, normalisation, RRF k, number of results."""
    st.sidebar.caption(f"Database: `{url}`")
    names = collections(url)
    if not names:
        st.sidebar.warning("No collection yet: index one on the Index page.")
        return None
    collection = st.sidebar.selectbox(
        "Collection", names, key="collection", index=names.index("default") if "default" in names else 0
    )
    engine = engine_for(url, collection)
    options = method_options(engine.presets())
    chosen = st.sidebar.multiselect(
        "Fusion methods to show",
        options,
        default=["late", best_learned(engine) or "early"],  # late vs learned: lists that differ
        key="methods",
        help="Learned methods (gated, cross_attention, learned_early) need training: see the Index page.",
        # no "Select N matches" row: shown first while typing, it took Enter, so "early" + Enter also added
        # preset:early_centred (issue 37); Enter now adds the best match, as a person expects
        select_all=False,
    )
    st.sidebar.markdown("**Query weights**")
    weights = {m: st.sidebar.slider(m, 0.0, 2.0, 1.0, 0.05, key=f"weight_{m}") for m in ("image", "audio", "text")}
    normalisation = st.sidebar.selectbox(
        "Late/hybrid: score normalisation",
        NORMALISATIONS,
        key="normalisation",
        help="Normalisation can reorder results: it is always shown.",
    )
    fusion = st.sidebar.selectbox("Late/hybrid: fusion", ("sum", "mnz", "rrf"), key="fusion")
    weighting = st.sidebar.selectbox(
        "Channel weights",
        WEIGHTINGS,
        key="weighting",
        help="Adaptive: each channel weighted per query by how clearly it separates the collection (no labels), "
        "so a noise clip or a blank image hardly counts. Fixed: your weights only. Late, hybrid and early.",
    )
    st.session_state.setdefault("screen_inputs", True)  # set here, not by `value`: a button also sets it
    screen = st.sidebar.checkbox(
        "Leave out flat inputs",
        key="screen_inputs",
        help="An input that scores every item about alike (a noise clip, a blank image), or a recording in which "
        "no one speaks, is left out by every method (a saved preset keeps its own setting).",
    )
    rrf_k = st.sidebar.number_input(  # a whole number as one (not "60.00"), and only where it counts
        "RRF k",
        1.0,
        1000.0,
        60.0,
        1.0,
        key="rrf_k",
        format="%g",
        disabled=fusion != "rrf",
        help="Reciprocal rank fusion's constant: a rank r adds 1 / (k + r). Used only with fusion rrf.",
    )
    k = st.sidebar.slider("Results", 3, 30, 10, key="k")
    methods = []
    for option in chosen:
        if option.startswith("preset:"):
            methods.append(engine.preset(option.removeprefix("preset:")))
            continue
        params: dict = {"weighting": weighting} if option in ("late", "hybrid", "early") else {}
        if option in ("late", "hybrid"):
            params |= {"normalisation": normalisation, "fusion": fusion, "rrf_k": rrf_k}
        if not screen and "screen" in {f.name for f in fields(strategy_class(option).Params)}:
            params["screen"] = False  # named only when off: the default's caption and cache keys stay as they were
        methods.append(Method(option, option, params, {m: w for m, w in weights.items() if w != 1.0}))
    return Settings(url, collection, methods, k)


def allowed_roots() -> list[Path]:
    """Server folders the Index page may read: RETRIEVAL_ROOTS (os.pathsep-separated), else the working
    folder and the shared datasets beside the checkout."""
    configured = os.environ.get("RETRIEVAL_ROOTS")
    if configured:
        return [Path(p).resolve() for p in configured.split(os.pathsep) if p]
    return [Path.cwd().resolve(), (Path(__file__).resolve().parents[2] / "shared" / "datasets").resolve()]


def inside_roots(path: Path) -> bool:
    resolved = path.resolve()
    return any(resolved == root or root in resolved.parents for root in allowed_roots())
