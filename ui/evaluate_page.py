"""Evaluate page: metrics by method and query kind on labelled queries, from the evaluation layer."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from retrieval.errors import reportable
from retrieval.evaluate import SIGNIFICANCE, Evaluation, evaluate, label_qrels, load_queries, load_trec_qrels
from retrieval.plots import metric_chart
from retrieval.results import Method
from ui import measured
from ui.charts import draw_natural, legible
from ui.plain import md
from ui.search import describe
from ui.state import Settings, engine_for, queries_file
from ui.tables import readable
from ui.tables import table as show_table  # `table` names this page's frames


def _label_fields(engine) -> list[str]:  # noqa: ANN001
    metadata = engine.catalogue.metadata()
    return sorted({k for meta in metadata.values() for k in (meta or {})})


def render(settings: Settings) -> None:
    st.header("Evaluate")
    engine = engine_for(settings.url, settings.collection)
    uploaded = st.file_uploader(
        "Queries (JSONL: id, text/image/audio, label, exclude)", type=["jsonl"], key="eval_queries"
    )
    demo_queries = queries_file()
    if uploaded is None and not demo_queries.is_file():
        st.info("Upload a JSONL file of labelled queries to evaluate the methods chosen in the sidebar.")
        return
    fields = _label_fields(engine)
    relevance = st.radio(
        "Relevance", ["items sharing a label", "a TREC qrels file"], horizontal=True, key="eval_relevance"
    )
    label_field = qrels_file = None
    if relevance == "items sharing a label":
        if not fields:
            st.warning("This collection's items carry no metadata to use as labels; upload a qrels file.")
            return
        label_field = st.selectbox(
            "Label field", fields, index=fields.index("digit") if "digit" in fields else 0, key="eval_label"
        )
    else:
        qrels_file = st.file_uploader("Qrels (query iteration item_key relevance)", key="eval_qrels")
    source = (
        "the uploaded file" if uploaded else f"`{demo_queries}` (the collection's labelled queries, as on Strategies)"
    )
    st.caption(
        f"Every query of {source}; the methods as the sidebar sets them ({methods_text(settings.methods)}); "
        f"k = {settings.k}; {measured.TEST}."
    )
    if st.button("Run the evaluation", type="primary", key="eval_run"):
        st.session_state["eval_result"] = run(engine, settings, demo_queries, uploaded, label_field, qrels_file)
        st.session_state["eval_methods"] = settings.methods
    result = st.session_state.get("eval_result")
    if result is not None:
        measured_with = st.session_state.get("eval_methods", settings.methods)
        if measured_with != settings.methods:
            st.warning(
                f"These results were measured with the sidebar's earlier settings ({methods_text(measured_with)}), "
                "not today's: run the evaluation again to measure what the sidebar sets now."
            )
        show(result, settings.k)


def methods_text(methods: list[Method]) -> str:
    """Each method and what shapes its ranking, as the Search page's captions say it."""
    return "; ".join(
        md(m.label) + (f": {md(said)}" if (said := describe(m, {**m.params, "weights": m.weights})) else "")
        for m in methods
    )


def run(
    engine,  # noqa: ANN001
    settings: Settings,
    queries_path: Path,
    uploaded,  # noqa: ANN001
    label_field: str | None,
    qrels_file,  # noqa: ANN001
) -> Evaluation | None:
    """Run the evaluation with a progress bar per stage (encoding, then each method), queries counted."""
    with st.status("Evaluating…", expanded=True) as status:
        bar = st.progress(0.0, text="reading the queries…")
        stages = ["encoding queries", *[m.label for m in settings.methods]]

        def progress(stage: str, done: int, total: int) -> None:
            overall = (stages.index(stage) + done / max(total, 1)) / len(stages)
            bar.progress(min(1.0, overall), text=f"{stage}: {done}/{total} queries")

        try:
            with tempfile.TemporaryDirectory() as folder:
                path = queries_path
                if uploaded is not None:
                    path = Path(folder) / "queries.jsonl"
                    path.write_bytes(uploaded.getvalue())
                queries = load_queries(path, label_field)
                if qrels_file is not None:
                    (Path(folder) / "qrels.txt").write_bytes(qrels_file.getvalue())
                    qrels = load_trec_qrels(Path(folder) / "qrels.txt")
                elif label_field and uploaded is None:
                    # the labelled file, as the Strategies page measures it: kept per collection and models
                    result = measured.evaluation(engine, path, label_field, settings.methods, settings.k, progress)
                    status.update(label=f"Evaluated {result.queries['all']} queries", state="complete", expanded=False)
                    return result
                elif label_field:
                    qrels = label_qrels(engine, queries, label_field)
                else:
                    status.update(label="No relevance judgements", state="error")
                    st.warning("Upload a qrels file first.")
                    return None
                result = evaluate(engine, queries, qrels, settings.methods, k=settings.k, progress=progress)
        except Exception as exc:
            status.update(label="Evaluation failed", state="error")
            if not reportable(exc):
                raise
            st.error(md(exc))
            return None
        status.update(label=f"Evaluated {result.queries['all']} queries", state="complete", expanded=False)
    return result


def format_p(p: float) -> str:
    """A p-value as people read it: a randomisation test never gives exactly 0."""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def show(result: Evaluation, k: int) -> None:
    default = f"ndcg@{k}" if f"ndcg@{k}" in result.metrics else result.metrics[0]
    metric = st.selectbox("Metric", result.metrics, index=result.metrics.index(default), key="eval_metric")
    table = pd.DataFrame(
        {method: {kind: values[metric] for kind, values in by_kind.items()} for method, by_kind in result.table.items()}
    ).T
    overall = {method: by_kind["all"][metric] for method, by_kind in result.table.items()}
    st.caption(f"Queries: all {result.queries['all']} evaluated; {measured.TEST}.")
    st.markdown(headline(result, metric))
    if len(overall) > 1:
        st.markdown(differences(result, metric))
    show_table(readable(table).highlight_max(axis=0, props="font-weight: bold; background-color: #d7ecd9"))
    draw_natural(legible(metric_chart(result, metric).to_dict()))
    if len(result.table) > 1:
        significance(result, metric, max(overall, key=lambda m: overall[m]), overall)


def _joined(words: list[str], last: str = "and") -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + f" {last} " + words[-1]


def headline(result: Evaluation, metric: str) -> str:
    """The method with the highest score, called the best only when it is significantly better than every
    other (issue 37: gated was named best while its own table showed it no better than late, p 0.757)."""
    overall = {method: by_kind["all"][metric] for method, by_kind in result.table.items()}
    top = max(overall, key=lambda m: overall[m])
    scope = f"{metric} over all {result.queries['all']} queries"
    if len(overall) == 1:
        return f"On {scope}: **{md(top)}** ({overall[top]:.3f})."
    unbeaten = result.unbeaten(metric)
    if unbeaten == [top]:
        return (
            f"Best on {scope}: **{md(top)}** ({overall[top]:.3f}), significantly better than every other method "
            f"(p < {SIGNIFICANCE})."
        )
    level = [f"**{md(m)}** ({overall[m]:.3f})" for m in unbeaten]
    return (
        f"Highest on {scope}: **{md(top)}** ({overall[top]:.3f}), but no method is significantly better than "
        f"{_joined(level, 'or')} (p ≥ {SIGNIFICANCE} for each pair of them)."
    )


def differences(result: Evaluation, metric: str) -> str:
    """Which differences between methods are significant, each with its p."""
    pairs = result.significant(metric)
    if not pairs:
        return f"No difference between two methods is significant on {metric} (p < {SIGNIFICANCE})."
    said = [f"{md(better)} over {md(worse)} (p {format_p(p)})" for better, worse, p in pairs]
    return f"Significant differences on {metric} (p < {SIGNIFICANCE}): " + "; ".join(said) + "."


def significance(result: Evaluation, metric: str, top: str, overall: dict[str, float]) -> None:
    """Each other method against the highest: the difference, its p-value, and whether it is significant."""
    rows = []
    for other in overall:
        if other == top:
            continue
        p = result.p_value(metric, top, other)
        rows.append(
            {
                "comparison": f"{top} vs {other}",
                f"difference in {metric}": overall[top] - overall[other],
                "p-value": format_p(p),
                "significant (p < 0.05)": "yes" if p < SIGNIFICANCE else "no",
            }
        )
    st.markdown(
        f"**Is {md(top)} really better than each other method?** {measured.TEST[0].upper()}{measured.TEST[1:]}, on all "
        "queries:"
    )
    show_table(pd.DataFrame(rows), hide_index=True)
