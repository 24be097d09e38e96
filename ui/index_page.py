"""Index page: index a server folder or manifest with live progress; train a learned strategy.

Nothing is removed without a confirmation that gives the count: a run never prunes by itself; when the
source no longer lists some items, the page says how many and offers to remove them.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import streamlit as st

from indexer import Indexer
from indexer.pipeline import IndexSummary
from indexer.sources import OUTSIDE
from retrieval.errors import InvalidInputError, reportable
from retrieval.evaluate import load_queries
from retrieval.fusion import learned_strategies, strategy_class
from retrieval.results import CheckpointInfo
from retrieval.train import TrainConfig, TrainResult
from ui import checkpoints
from ui.plain import md
from ui.provenance import describe as describe_checkpoint
from ui.results_cache import forget_answering
from ui.state import allowed_roots, collections, database_exists, engine_for, inside_roots, queries_file

ROOTS_HINT = "outside the allowed folders; refused (add its folder to RETRIEVAL_ROOTS to allow it)"


def suggested_name(path: str) -> str:
    """A new collection named after the folder (a manifest's own folder)."""
    if not path.strip():
        return "collection"
    source = Path(path.strip())
    folder = source.parent if source.suffix.lower() in (".csv", ".jsonl") else source
    return re.sub(r"[^A-Za-z0-9_-]+", "-", folder.resolve().name).strip("-") or "collection"


def render(url: str, collection: str | None) -> None:
    st.header("Index")
    st.caption("Allowed folders: " + ", ".join(f"`{r}`" for r in allowed_roots()))
    # a placeholder, not a value: a pre-filled path read as one already chosen (walkthrough #20)
    path = st.text_input(
        "Folder or manifest (.csv / .jsonl) on the server",
        key="index_path",
        placeholder="e.g. data/digits/manifest.csv or a folder of images, clips and texts",
    )
    suggestion = suggested_name(path)
    name = (
        st.text_input(
            "Index into the collection",
            key="index_collection",
            placeholder=f"{suggestion} (a new collection named after the folder)",
            help="Leave empty for a new collection named after the folder; name an existing one to add to it.",
        ).strip()
        or suggestion
    )
    existing = collections(url) if database_exists(url) else []
    if name in existing:
        st.warning(f"This run adds to the existing collection **{md(name)}**: its items stay, and new ones join them.")
    elif path.strip() or st.session_state.get("index_collection", "").strip():
        st.caption(f"Creates the new collection **{md(name)}**.")
    else:  # nothing typed yet: no name to promise (walkthrough 2, #12)
        st.caption("A new collection is named after the folder or manifest, unless you name one.")
    st.checkbox(
        "Offer to remove items this source no longer lists",
        key="index_prune",
        help="Nothing is removed without your confirmation, which gives the count first.",
    )
    if st.button("Index", type="primary", key="index_run"):
        if path.strip():
            run_indexer(url, name, Path(path.strip()))
        else:
            st.error("Type the folder or manifest to index first.")
    show_last_run()
    confirm_removal(url)
    if collection:
        st.divider()
        train_section(url, collection)


def _progress_bar():  # noqa: ANN202
    bar = st.progress(0.0, text="starting…")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{stage}: {done}/{total}")

    return progress


def run_indexer(url: str, name: str, path: Path, prune: bool = False) -> None:
    st.session_state["index_last"] = None
    if not inside_roots(path):
        st.error(f"{md(path)} is outside the allowed folders; set RETRIEVAL_ROOTS to allow it.")
        return
    if not path.exists():
        st.error(f"{md(path)}: no such folder or manifest.")
        return
    progress = _progress_bar()
    with st.status(f"Indexing {path} into {name}…", expanded=True) as status:
        try:
            summary = Indexer(url, name).run(path, prune=prune, progress=progress, roots=allowed_roots())
        except Exception as exc:
            status.update(label="Indexing failed", state="error")
            if not reportable(exc):
                raise
            st.error(md(exc))
            return
        skipped = len(summary.problems)
        label = f"Indexed {summary.items} items into {name} in {summary.seconds:.1f}s"
        if skipped:
            status.update(label=f"{label}, but {skipped:,} file(s) were skipped: see below", state="error")
        else:
            status.update(label=label, state="complete")
    st.session_state["index_last"] = (name, summary)
    st.session_state["index_pending_removal"] = (
        (name, str(path), summary.missing) if summary.missing and st.session_state.get("index_prune") else None
    )
    collections.clear()
    engine_for.clear()


def describe(summary: IndexSummary) -> str:
    assets = ", ".join(f"{n:,} {m}" for m, n in summary.assets.items()) or "none"
    return (
        f"{summary.items:,} item{'' if summary.items == 1 else 's'} ({assets}); this run encoded {summary.encoded:,}, left {summary.unchanged:,} "
        f"unchanged, re-encoded {summary.changed:,} changed and removed {summary.removed:,}."
    )


def show_last_run() -> None:
    last = st.session_state.get("index_last")
    if not last:
        return
    name, summary = last
    st.write(f"**{md(name)}**: {describe(summary)}")
    if summary.missing and not st.session_state.get("index_pending_removal"):
        st.info(f"{summary.missing:,} item(s) of {md(name)} are no longer listed by this source; they were kept.")
    if summary.problems:
        st.warning(f"{len(summary.problems):,} file(s) were skipped; nothing already indexed from them was removed.")
        reasons = [ROOTS_HINT if p.reason == OUTSIDE else p.reason for p in summary.problems]
        st.dataframe(
            pd.DataFrame({"file": [p.path for p in summary.problems], "reason": reasons}),
            hide_index=True,
        )


def confirm_removal(url: str) -> None:
    pending = st.session_state.get("index_pending_removal")
    if not pending:
        return
    name, path, count = pending
    st.warning(
        f"{count:,} item(s) of **{md(name)}** are no longer listed by {md(path)}. Remove them from the collection?"
    )
    left, right = st.columns(2)
    if left.button(f"Remove {count:,} item(s)", key="index_confirm_removal"):
        run_indexer(url, name, Path(path), prune=True)
        st.session_state["index_pending_removal"] = None
    elif right.button("Keep them", key="index_keep"):
        st.session_state["index_pending_removal"] = None
        st.rerun()


TRAINED_KEY = "train_done_message"
LOSSES_KEY = "train_last_losses"  # (strategy, checkpoint file, losses) of the last training in this session
UNTICK_KEY = "train_untick"  # the strategy whose "Replace it" a finished training clears in the next run


def train_section(url: str, collection: str) -> None:
    st.subheader("Train a learned strategy")
    if TRAINED_KEY in st.session_state:
        st.success(st.session_state.pop(TRAINED_KEY))
    untick = st.session_state.pop(UNTICK_KEY, None)
    if untick is not None:
        # set, not deleted: a deleted widget value left the box drawn ticked in the browser, which sent it back
        # ticked with the next click, so a second Train replaced the model unasked (walkthrough 4, #6)
        st.session_state[f"train_replace_{untick}"] = False
    st.caption(f"Trains on the collection chosen in the sidebar: **{md(collection)}**.")
    if "train_strategy" not in st.session_state and "kept_train_strategy" in st.session_state:
        st.session_state["train_strategy"] = st.session_state["kept_train_strategy"]  # dropped on another page
    strategy = st.selectbox("Strategy", learned_strategies(), key="train_strategy")
    st.session_state["kept_train_strategy"] = strategy
    label = st.text_input("Label field (empty: self-supervised)", value="digit", key="train_label")
    epochs = st.slider("Epochs", 1, 100, 30, key="train_epochs")
    engine = engine_for(url, collection)
    if strategy_class(strategy).learns:
        checkpoints.render(engine, strategy)
    show_last_losses(engine, strategy)
    where = training_items(engine, strategy)
    confirmed = replacing_confirmed(engine, strategy)
    if not confirmed:
        st.caption(
            f"Train is off until you tick \"Replace it\": a model trained here becomes the one '{md(strategy)}' "
            "answers with. The one in use now stays in the saved models, to choose again."
        )
    # a click from before a model was in use (two clicks in a row) still needs the confirmation
    if not (st.button("Train", key="train_run", disabled=not confirmed) and confirmed):
        return
    out = Path("data/checkpoints") / f"{collection}-{strategy}-{int(time.time())}.safetensors"
    out.parent.mkdir(parents=True, exist_ok=True)
    bar = st.progress(0.0, text="training…")
    chart = st.empty()
    losses: list[float] = []

    def progress(epoch: int, total: int, loss: float) -> None:
        losses.append(loss)
        bar.progress(epoch / total, text=f"epoch {epoch}/{total}, loss {loss:.3f}")
        loss_chart(chart, losses)

    before = engine.models.latest(strategy) if strategy_class(strategy).learns else None
    replaced = engine.models.info(before) if before else None
    try:
        config = TrainConfig(strategy, label_field=label.strip() or None, where=where, epochs=epochs)
        result = engine.models.train(config, out, progress)
        forget_answering()
    except Exception as exc:
        if not reportable(exc):
            raise
        st.error(md(exc))
        return
    # drawn again from the top, so the saved models and the model that answers show the new one
    st.session_state[TRAINED_KEY] = trained_message(strategy, result, replaced)
    st.session_state[LOSSES_KEY] = (strategy, str(result.path), result.losses or losses)
    st.session_state[UNTICK_KEY] = strategy  # the next model asks again (walkthrough 2, #13)
    st.rerun()


def loss_chart(place, losses: list[float]) -> None:  # noqa: ANN001
    epochs = pd.Index(range(1, len(losses) + 1), name="epoch")
    place.line_chart(pd.DataFrame({"loss": losses}, index=epochs), x_label="epoch", y_label="training loss")


def show_last_losses(engine, strategy: str) -> None:  # noqa: ANN001
    """The loss chart of the model this session trained last, while it is still the one `strategy` answers
    with (it vanished when training ended: walkthrough 4, #6)."""
    last = st.session_state.get(LOSSES_KEY)
    if not last or last[0] != strategy or not last[2]:
        return
    answering = engine.models.latest(strategy) if strategy_class(strategy).learns else last[1]
    if answering is None or Path(answering).resolve() != Path(last[1]).resolve():
        return  # another model answers now: its losses are not these
    st.caption(f"Training loss of {md(Path(last[1]).name)}, the model trained last:")
    loss_chart(st, last[2])


TRAIN_SPLIT = {"split": "train"}  # the collection's own split field, as the demo's manifest writes it


def training_items(engine, strategy: str) -> dict[str, str]:  # noqa: ANN001
    """Which items training learns from (a metadata filter), said on the page: the collection's 'train' split
    by default where its items carry one; and a warning when those items include evaluation queries' own
    items, whose labels Evaluate then grades the strategy on (issue 37: training used every item)."""
    metadata = engine.catalogue.metadata()
    in_split = sum(1 for meta in metadata.values() if (meta or {}).get("split") == "train")
    where: dict[str, str] = {}
    if in_split:
        on_split = st.checkbox(
            f"Train only on the items whose split is 'train' ({in_split} of {len(metadata)})",
            value=True,
            key="train_on_split",
            help="The collection's own split: the other items stay unseen, for Evaluate's queries.",
        )
        where = TRAIN_SPLIT if on_split else {}
    else:
        st.caption(f"These items carry no 'split' field: training learns from all {len(metadata)} of them.")
    overlap, total = evaluation_overlap(engine, metadata, where)
    if overlap:
        st.warning(
            f"{overlap} of the {total} evaluation queries come from items this training learns from: Evaluate "
            f"would grade '{md(strategy)}' on items it was trained on, and overrate it."
        )
    return where


def evaluation_overlap(engine, metadata: dict[int, dict], where: dict[str, str]) -> tuple[int, int]:  # noqa: ANN001
    """(queries whose own item is among the training items, all queries) of the page's queries file."""
    path = queries_file()
    if not path.is_file():
        return 0, 0
    try:
        queries = load_queries(path)
    except (OSError, InvalidInputError):
        return 0, 0  # Evaluate reports a broken file; here it only has no overlap to warn of
    keys = engine.catalogue.item_keys()
    trained = {
        keys[i] for i, meta in metadata.items() if i in keys and all((meta or {}).get(k) == v for k, v in where.items())
    }
    return sum(1 for q in queries if q.exclude in trained), len(queries)


def replacing_confirmed(engine, strategy: str) -> bool:  # noqa: ANN001
    """For a learned strategy that answers with a model already: say which, and ask before a new one replaces
    it under Search and Evaluate (the newest checkpoint is the one they use)."""
    if not strategy_class(strategy).learns:
        return True
    file = engine.models.latest(strategy)
    current = engine.models.info(file) if file else None
    if current is None:
        return True
    st.caption(f"'{md(strategy)}' answers now with {describe_checkpoint(current)}.")
    return st.checkbox(
        f"Replace it: Search and Evaluate will answer '{md(strategy)}' with the model trained now",
        key=f"train_replace_{strategy}",
    )


def trained_message(strategy: str, result: TrainResult, replaced: CheckpointInfo | None) -> str:
    """What the new model changes, truly: a learned strategy's newest checkpoint is the one Search and Evaluate
    use from now on (said with the one it replaces)."""
    said = f"Trained on {result.items} items in {result.seconds:.1f}s; saved {md(result.path)}. "
    said += f"Search and Evaluate now answer '{md(strategy)}' with this model"
    if replaced is not None:
        said += f" instead of {describe_checkpoint(replaced)}"
    return said + "."
