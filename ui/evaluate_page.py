"""Evaluate page: metrics by method and query kind on labelled queries, from the evaluation layer."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd
import streamlit as st

from retrieval.evaluate import evaluate, label_qrels, load_queries, load_trec_qrels
from retrieval.plots import metric_chart
from ui.state import Settings, engine_for

DEMO_QUERIES = Path(os.environ.get("RETRIEVAL_QUERIES", "data/digits/queries.jsonl"))


def _label_fields(engine) -> list[str]:  # noqa: ANN001
    metadata = engine.metadata()
    return sorted({k for meta in metadata.values() for k in (meta or {})})


def render(settings: Settings) -> None:
    st.header("Evaluate")
    engine = engine_for(settings.url, settings.collection)
    uploaded = st.file_uploader(
        "Queries (JSONL: id, text/image/audio, label, exclude)", type=["jsonl"], key="eval_queries"
    )
    if uploaded is None and not DEMO_QUERIES.is_file():
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
    source = "the uploaded file" if uploaded else f"`{DEMO_QUERIES}` (the demo's labelled queries)"
    st.caption(f"Queries from {source}; methods from the sidebar; k = {settings.k}.")
    if not st.button("Run the evaluation", type="primary", key="eval_run"):
        return
    with st.status("Evaluating…", expanded=False) as status:
        try:
            with tempfile.TemporaryDirectory() as folder:
                path = DEMO_QUERIES
                if uploaded is not None:
                    path = Path(folder) / "queries.jsonl"
                    path.write_bytes(uploaded.getvalue())
                queries = load_queries(path, label_field)
                if qrels_file is not None:
                    (Path(folder) / "qrels.txt").write_bytes(qrels_file.getvalue())
                    qrels = load_trec_qrels(Path(folder) / "qrels.txt")
                elif label_field:
                    qrels = label_qrels(engine, queries, label_field)
                else:
                    st.warning("Upload a qrels file first.")
                    return
                result = evaluate(engine, queries, qrels, settings.methods, k=settings.k)
        except (ValueError, LookupError, OSError) as exc:
            status.update(label="Evaluation failed", state="error")
            st.error(str(exc))
            return
        status.update(label=f"Evaluated {result.queries['all']} queries", state="complete")
    metric = st.selectbox("Metric", result.metrics, index=result.metrics.index(f"ndcg@{settings.k}"), key="eval_metric")
    table = pd.DataFrame(
        {method: {kind: values[metric] for kind, values in by_kind.items()} for method, by_kind in result.table.items()}
    ).T
    st.dataframe(table.round(3))
    st.altair_chart(metric_chart(result, metric))
    st.markdown(result.to_markdown([metric]).split("Paired")[-1] if len(result.table) > 1 else "")
