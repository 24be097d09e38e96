"""Strategies page: the comparison table of fusion strategies, measured on this collection (retrieval.report)."""

from __future__ import annotations

from dataclasses import MISSING, fields

import pandas as pd
import streamlit as st

from retrieval.fusion import strategy_class
from retrieval.report import StrategyReport, default_methods, report_charts
from retrieval.results import Method
from ui import measured
from ui.charts import draw_natural, legible
from ui.evaluate_page import _label_fields, differences, headline, methods_text
from ui.plain import md
from ui.state import Settings, engine_for, queries_file
from ui.tables import table


def report_frame(report: StrategyReport) -> pd.DataFrame:
    """One row per method: the columns of the seed's star table, as numbers."""
    k = report.k
    rows = []
    for r in report.rows:
        rows.append(
            {
                "method": r.method,
                "fuses": f"at {r.fuses_at} time",
                "learns": "yes" if r.learns else "no",
                "p50 ms": r.p50_ms,
                f"P@{k}": r.quality.get("all", {}).get(f"P@{k}"),
                f"nDCG@{k}": r.quality.get("all", {}).get(f"nDCG@{k}"),
                f"nDCG@{k}, all three": r.full_ndcg,
                f"nDCG@{k}, one missing": r.one_missing_ndcg,
                "training s": r.train_seconds,
                "index MB": None if r.index_bytes is None else r.index_bytes / 1e6,
                "adding a modality": r.error or r.new_modality,
            }
        )
    return pd.DataFrame(rows)


def render(settings: Settings) -> None:
    st.header("Strategies")
    st.write(
        "Every fusion strategy measured on this collection: search latency, quality per query kind, quality "
        "when a query lacks one modality, training time, index size on disk, and what adding a modality costs."
    )
    engine = engine_for(settings.url, settings.collection)
    fields = _label_fields(engine)
    labelled = queries_file().is_file() and bool(fields)
    if labelled:
        label_field = st.selectbox(
            "Label field (relevant = same label)",
            fields,
            index=fields.index("digit") if "digit" in fields else 0,
            key="report_label",
        )
        st.caption(
            f"The queries and the test of the Evaluate page: every query of `{queries_file()}`, k = {settings.k}; "
            f"{measured.TEST}. Measured once per collection and models, then kept."
        )
    else:
        label_field = None
        st.caption("No labelled queries: latency and sizes only, from 20 of the collection's items.")
    settings_said(engine, settings.methods)
    if st.button("Measure every strategy", type="primary", key="run_report"):
        st.session_state["strategy_report"] = _measure(engine, label_field if labelled else None, settings.k)
    report: StrategyReport | None = st.session_state.get("strategy_report")
    if report is None:  # measured in another session of this server: shown, not measured again
        label = label_field if labelled else None
        report = measured.kept_report(engine, queries_file() if label else None, label, settings.k)
    if report is None:
        return
    kept = measured.report_made(report)
    if kept is not None:  # kept in the server: made in this session or another, perhaps long ago
        made, label, k = kept
        st.caption(
            f"Measured at {made:%Y-%m-%d %H:%M} UTC with k = {k}"
            + (f" and relevant = same {md(label)}" if label else "")
            + "; kept for every session until the queries file, the label, k or a model changes."
        )
    if report.evaluation is not None:
        st.caption(md(f"Queries: all {report.queries['all']} of {queries_file()}; relevant = same {label_field}."))
        metric = f"ndcg@{report.k}"
        st.markdown(headline(report.evaluation, metric))
        if len(report.evaluation.table) > 1:
            st.markdown(differences(report.evaluation, metric))
    table(report_frame(report), hide_index=True)
    for chart in report_charts(report).values():
        # its own size, not the page's width (stretched, the latency bars were drawn 0.25 px thick), fitted to
        # a narrower page (issue 37)
        draw_natural(legible(chart.to_dict()))


def with_defaults(method: Method) -> Method:
    """`method` with each of its strategy's default parameters named (those it sets itself kept)."""
    defaults = {f.name: f.default for f in fields(strategy_class(method.strategy).Params) if f.default is not MISSING}
    return Method(method.label, method.strategy, {**defaults, **method.params}, method.weights)


def settings_said(engine, sidebar: list[Method]) -> None:  # noqa: ANN001
    """What every strategy is measured with here (its own defaults, every weight 1), and, where the sidebar sets
    a method otherwise, that Evaluate measures the sidebar's settings, whose numbers then differ (walkthrough 4,
    #8: the two pages showed gated 0.950 and 0.930 and neither said why)."""
    measured_with = {m.label: with_defaults(m) for m in default_methods(engine)}
    st.caption(
        "Each strategy with every query weight 1 and its own defaults, not the sidebar's settings: "
        + methods_text([m for m in measured_with.values() if m.strategy in ("late", "hybrid", "early")])
        + "; a learned one with the model that answers for it; a saved preset as saved."
    )
    differ = [m for m in sidebar if m.label in measured_with and with_defaults(m) != measured_with[m.label]]
    if differ:
        st.warning(
            f"The sidebar sets {methods_text(differ)}: Evaluate measures those settings, so its numbers for "
            f"{', '.join(md(m.label) for m in differ)} differ from these."
        )


def _measure(engine, label_field: str | None, k: int) -> StrategyReport:  # noqa: ANN001
    with st.status("Measuring every strategy…", expanded=True) as status:
        bar = st.progress(0.0)

        def progress(label: str, done: int, total: int) -> None:
            bar.progress(min(1.0, done / max(total, 1)), text=f"{label} ({done}/{total})")

        report = measured.report(engine, queries_file() if label_field else None, label_field, k, progress)
        status.update(label=f"Measured {len(report.rows)} methods on {report.queries['all']} queries", state="complete")
    return report
