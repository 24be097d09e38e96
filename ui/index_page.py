"""Index page: index a server folder or manifest with live progress; train a learned strategy."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import streamlit as st

from indexer import Indexer
from retrieval.fusion import learned_strategies
from retrieval.train import TrainConfig
from ui.state import allowed_roots, collections, engine_for, inside_roots


def render(url: str, collection: str | None) -> None:
    st.header("Index")
    st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in allowed_roots()))
    path = st.text_input(
        "Folder or manifest (.csv / .jsonl) on the server", key="index_path", value="data/digits/manifest.csv"
    )
    name = st.text_input("Collection", value=collection or "default", key="index_collection")
    prune = st.checkbox("Remove items whose files are gone", key="index_prune")
    if st.button("Index", type="primary", key="index_run"):
        run_indexer(url, name, Path(path), prune)
    if collection:
        st.divider()
        train_section(url, collection)


def run_indexer(url: str, name: str, path: Path, prune: bool) -> None:
    if not inside_roots(path):
        st.error(f"{path} is outside the allowed folders; set RETRIEVAL_ROOTS to allow it.")
        return
    if not path.exists():
        st.error(f"{path}: no such folder or manifest.")
        return
    bar = st.progress(0.0, text="starting…")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{stage}: {done}/{total}")

    with st.status(f"Indexing {path}…", expanded=True) as status:
        try:
            summary = Indexer(url, name).run(path, prune=prune, progress=progress)
        except Exception as exc:
            status.update(label="Indexing failed", state="error")
            st.error(str(exc))
            return
        status.update(label=f"Indexed {summary.items} items in {summary.seconds:.1f}s", state="complete")
    st.write(
        f"Assets: {summary.assets} · encoded {summary.encoded}, unchanged {summary.unchanged}, "
        f"changed {summary.changed}, removed {summary.removed}"
    )
    if summary.problems:
        st.subheader(f"Skipped ({len(summary.problems)})")
        st.dataframe(pd.DataFrame([vars(p) for p in summary.problems]), hide_index=True)
    collections.clear()
    engine_for.clear()


def train_section(url: str, collection: str) -> None:
    st.subheader("Train a learned strategy")
    strategy = st.selectbox("Strategy", learned_strategies(), key="train_strategy")
    label = st.text_input("Label field (empty: self-supervised)", value="digit", key="train_label")
    epochs = st.slider("Epochs", 1, 100, 30, key="train_epochs")
    if not st.button("Train", key="train_run"):
        return
    engine = engine_for(url, collection)
    out = Path("data/checkpoints") / f"{collection}-{strategy}-{int(time.time())}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = st.progress(0.0, text="training…")
    chart = st.empty()
    losses: list[float] = []

    def progress(epoch: int, total: int, loss: float) -> None:
        losses.append(loss)
        bar.progress(epoch / total, text=f"epoch {epoch}/{total}, loss {loss:.3f}")
        chart.line_chart(pd.DataFrame({"loss": losses}))

    try:
        result = engine.train(TrainConfig(strategy, label_field=label.strip() or None, epochs=epochs), out, progress)
    except (ValueError, LookupError) as exc:
        st.error(str(exc))
        return
    st.success(
        f"Trained on {result.items} items in {result.seconds:.1f}s; saved {result.path}. "
        f"Choose '{strategy}' in the sidebar to use it."
    )
