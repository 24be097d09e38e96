"""Every benchmark script runs at a tiny size, in its own process, and writes its report (into a temporary
folder, never docs/benchmarks): a script that breaks (an import of a renamed function, a changed signature,
a bad shape at a small size) fails here instead of on the next person who measures. Timings are printed by
the scripts, never judged. Scripts that need a GPU or a Milvus server that is absent skip with the reason
(NEEDS), as does pretrained_indexing.py, which has no tiny size; those that read the digits run on a few of
the media the suite runs on (real or synthetic: conftest.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, require_datasets

pytestmark = pytest.mark.slow

BENCH = ROOT / "bench"
MODULES = {"common.py", "fusion_cross_data.py"}  # imported by the scripts, not run

# script -> its tiny arguments ({tmp}: a fresh folder) and the report it writes (None: it prints only)
TINY: dict[str, tuple[list[str], str | None]] = {
    "check.py": (["--sizes", "300"], "check"),
    "cold_prefetch.py": (["--work", "{tmp}", "--items", "3000", "--rows", "50", "--trials", "1"], "cold_prefetch"),
    "decode_memory.py": (["--scale", "0.05"], "decode_memory"),
    "gpu_search.py": (
        ["--devices", "cpu", "--sizes", "3000", "--seconds", "0.05", "--out", "{reports}/gpu_search.json"],
        "gpu_search",
    ),
    "id_map_memory.py": (["--count", "3000", "--dim", "16", "--factory", "IVF16,PQ8x4fs"], None),
    "index_choice.py": (["--sizes", "2000", "--hnsw-limit", "2000"], "index_choice"),
    "integrity.py": (["--rows", "2000", "--rounds", "2"], "integrity"),
    "manifest_memory.py": (["--rows", "5", "10"], None),
    "milvus_rescore.py": (["--items", "500", "--rounds", "2"], "milvus_rescore"),
    "refusion.py": (["--items", "2000"], "refusion"),
    "search_latency.py": (["--sizes", "2000", "--queries", "5"], "search_latency"),
    "shortlist_10m.py": (["--items", "20000", "--work", "{tmp}", "--pq-sample", "1000"], "shortlist_10m"),
}
# The same on the digits (tiny_digits: 2 takes a digit a speaker, 2 images a digit per split range)
DIGITS: dict[str, tuple[list[str], str | None]] = {
    "audio_features.py": (["--dtw-queries", "2", "--epochs", "1"], "audio_features"),
    "fusion_digits.py": (
        ["--per-kind", "2", "--epochs", "1", "--work", "{tmp}", "--out", "{reports}"],
        "fusion_digits",
    ),
    "indexing.py": (["--repeats", "1", "--limit", "20", "--synthetic", "10", "--clip-items", "0"], "indexing"),
    "speech_encoder.py": (["--queries", "2"], "speech_encoder"),
    "transcription.py": (["--skip-settings", "--limit", "4", "--out", "{tmp}.jsonl"], "transcription"),
    "whisper_encoder.py": (["--queries", "2", "--long-takes", "1"], "whisper_encoder"),
}
# bench/scale_10m.py's work folder feeds three more scripts, the cross-speaker media cache one more, and
# cli_query.py needs a demo collection: each chain is one test
SCALE = {"scale_10m.py", "code_bits.py", "depth_rules.py", "shortlist_recall.py"}
CHAINS = {"fusion_cross_speaker.py", "adaptive_powers.py", "cli_query.py", "scale_out.py"}
NEEDS = {
    "gpu_encoders.py": "a CUDA GPU (fp16 encoders at full size: no tiny setting means anything on a CPU)",
    "milvus_server.py": "a Milvus server (RETRIEVAL_TEST_MILVUS)",
    "milvus_indexing.py": "a Milvus server and the whole digits demo indexed twice a round (minutes)",
    "pretrained_indexing.py": "~1.2 GB of stand-in weights at the real architectures' sizes (minutes of CPU)",
    "ui_views.py": "the full demo with gated and cross-attention trained, and Chromium (about a minute a round)",
}


@pytest.fixture(scope="module")
def tiny_digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few of the suite's digits in the datasets' layout: 2 takes of each digit by each speaker, and 2
    images of each digit in each of the MNIST ranges the scripts split by (below 2,500, to 3,750, above)."""
    source, out = require_datasets(), tmp_path_factory.mktemp("digits")
    (out / "fsdd" / "recordings").mkdir(parents=True)
    (out / "mnist" / "images").mkdir(parents=True)
    for wav in (source / "fsdd" / "recordings").glob("*.wav"):
        if int(wav.stem.split("_")[2]) < 2:
            shutil.copy(wav, out / "fsdd" / "recordings" / wav.name)
    taken: dict[tuple[int, int], int] = {}
    for png in sorted((source / "mnist" / "images").glob("*.png")):
        index, digit = (int(part) for part in png.stem.split("_"))
        key = (digit, sum(index >= bound for bound in (2500, 3750)))
        if taken.get(key, 0) < 2:
            taken[key] = taken.get(key, 0) + 1
            shutil.copy(png, out / "mnist" / "images" / png.name)
    return out


def run(script: str, args: list[str], reports: Path, digits: Path | None = None, module: bool = False) -> str:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "BENCH_REPORTS": str(reports), "OMP_NUM_THREADS": "1"}
    if digits is not None:
        env["DIGITS_DATASETS"] = str(digits)
    command = [sys.executable, "-m", script, *args] if module else [sys.executable, str(BENCH / script), *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=ROOT, timeout=600)
    assert done.returncode == 0, f"{' '.join(command)}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    return done.stdout


def filled(args: list[str], tmp_path: Path) -> list[str]:
    return [a.format(tmp=tmp_path / "work", reports=tmp_path / "reports") for a in args]


def test_every_script_has_a_tiny_run() -> None:
    scripts = {p.name for p in BENCH.glob("*.py")} - MODULES
    assert scripts == set(TINY) | set(DIGITS) | SCALE | CHAINS | set(NEEDS), "give a new script a tiny run here"


def reported(reports: Path, report: str | None, out: str) -> None:
    """The report is written and printed, and nothing else is written."""
    if report is None:
        assert not any(reports.iterdir())
        return
    page = (reports / f"{report}.md").read_text()
    assert page.splitlines()[0] in out, page[:500]
    assert json.loads((reports / f"{report}.json").read_text())
    assert {p.stem for p in reports.iterdir()} == {report}


@pytest.mark.parametrize("script", sorted(TINY))
def test_a_script_runs_at_a_tiny_size(script: str, tmp_path: Path) -> None:
    args, report = TINY[script]
    if script == "milvus_rescore.py":
        pytest.importorskip("milvus_lite", reason="Milvus Lite is not installed")
    reports = tmp_path / "reports"
    reports.mkdir()
    reported(reports, report, run(script, filled(args, tmp_path), reports))


@pytest.mark.datasets
@pytest.mark.parametrize("script", sorted(DIGITS))
def test_a_script_runs_on_a_few_digits(script: str, tiny_digits: Path, tmp_path: Path) -> None:
    args, report = DIGITS[script]
    reports = tmp_path / "reports"
    reports.mkdir()
    reported(reports, report, run(script, filled(args, tmp_path), reports, tiny_digits))


@pytest.mark.datasets
def test_the_cross_speaker_scripts(tiny_digits: Path, tmp_path: Path) -> None:
    """fusion_cross_speaker.py encodes the media into a cache that adaptive_powers.py then reads."""
    cache, reports = str(tmp_path / "media.npz"), tmp_path / "reports"
    reports.mkdir()
    tiny = ["--rotations", "1", "--seeds", "1", "--per-kind", "2", "--epochs", "1", "--cache", cache]
    out = run("fusion_cross_speaker.py", tiny, reports, tiny_digits)
    assert "late" in (reports / "fusion_cross_speaker.md").read_text() and "Tuned presets" in out
    run("adaptive_powers.py", ["--per-kind", "2", "--cache", cache], reports, tiny_digits)
    assert (reports / "adaptive_powers.md").exists()


@pytest.mark.datasets
def test_the_command_line_query_script(tiny_digits: Path, tmp_path: Path) -> None:
    reports, url = tmp_path / "reports", f"sqlite:///{tmp_path}/demo.db"
    reports.mkdir()
    demo = ["demo", "--db", url, "--out", str(tmp_path / "digits"), "--limit", "20", "--no-train", "--quiet"]
    run("indexer", demo, reports, tiny_digits, module=True)
    run("cli_query.py", ["--db", url, "--runs", "1"], reports, tiny_digits)
    assert "| image+audio+text |" in (reports / "cli_query.md").read_text()


@pytest.mark.server
@pytest.mark.datasets
def test_the_scale_out_script(tiny_digits: Path, tmp_path: Path) -> None:
    """Starts a local Ray cluster and Milvus Lite, as the suite's scale-out tests do."""
    pytest.importorskip("ray", reason="Ray is not installed")
    reports = tmp_path / "reports"
    reports.mkdir()
    run("scale_out.py", ["--repeats", "1", "--limit", "10"], reports, tiny_digits)
    assert "Ray + FAISS" in (reports / "scale_out.md").read_text()


def test_the_scale_scripts(tmp_path: Path) -> None:
    """bench/scale_10m.py builds, finds the truth and searches (a process each); the scripts that read its
    work folder then run over it."""
    work, reports = tmp_path / "work", tmp_path / "reports"
    reports.mkdir()
    scale = ["--items", "3000", "--work", str(work), "--strategies", "late", "--queries", "5", "--truth-queries", "5"]
    run("scale_10m.py", scale, reports)
    assert "3,000" in (reports / "scale_10m.md").read_text()
    shared = ["--strategy", "late", "--queries", "3", "--passes", "1"]
    out = run("code_bits.py", ["--a", str(work), "--b", str(work), *shared], reports)
    assert "late a, the rules: recall@10 1.000" in out  # 3,000 items: flat indexes, so the exact top 10
    out = run("depth_rules.py", ["--work", str(work), *shared], reports)
    assert "late new rules: recall@10 1.000" in out
    run("shortlist_recall.py", ["--work", str(work), "--queries", "2", "--factory", "IVF16,PQ32x4fs"], reports)
    assert (reports / "shortlist_recall.md").exists()


def test_milvus_indexing_has_no_tiny_size() -> None:
    pytest.skip(f"bench/milvus_indexing.py needs {NEEDS['milvus_indexing.py']}")


def test_ui_views_has_no_tiny_size() -> None:
    pytest.skip(f"bench/ui_views.py needs {NEEDS['ui_views.py']}")


def test_pretrained_indexing_has_no_tiny_size() -> None:
    pytest.skip(f"bench/pretrained_indexing.py needs {NEEDS['pretrained_indexing.py']}")


@pytest.mark.server
def test_the_milvus_server_script_on_the_test_server(milvus_server: str, tmp_path: Path) -> None:
    """Skips with the conftest fixture's reason where no server is set up. This checkout stands in for the
    code before a change (`--before`): its search, in a process of its own, finds FAISS's top 10 too."""
    reports = tmp_path / "reports"
    reports.mkdir()
    run(
        "milvus_server.py", ["--uri", milvus_server, "--items", "300", "--queries", "3", "--before", str(ROOT)], reports
    )
    report = json.loads((reports / "milvus_server.json").read_text())
    before = next(label for label in report["runs"] if label.startswith("milvus server, before"))
    assert report["same_top_k"][before] == {"late": True, "early": True}
    assert set(report["runs"][before]) == {"late", "early"}


def test_gpu_encoders_where_a_gpu_is(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip(f"needs {NEEDS['gpu_encoders.py']}")
    run("gpu_encoders.py", ["--seconds", "0.2", "--out", str(tmp_path / "gpu.json")], tmp_path)
    assert (tmp_path / "gpu.json").exists()
