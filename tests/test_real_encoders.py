"""Issue 16: the real encoders' loading, preprocessing and determinism, through the production code
with stand-in weights (tiny architectures; the published Hugging Face cache layout where it matters)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import mnist_image, recording
from PIL import Image

from retrieval.encoders import WeightsNotFoundError, create_encoder
from retrieval.media import Waveform, load_audio, load_image


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty Hugging Face cache that transformers and huggingface_hub read at call time."""
    from huggingface_hub import constants

    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HOME", str(cache.parent))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return cache


def _noise(seconds: float, seed: int, rate: int = 48_000) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * rate))).astype(np.float32)


# -- 1. long audio ------------------------------------------------------------------------------------
def test_clap_long_audio_gives_one_vector_that_depends_on_the_whole_clip(tiny_models: dict[str, str]) -> None:
    encoder = create_encoder(tiny_models["clap"])
    clip = _noise(15, 0)
    first = encoder.encode("audio", [Waveform(clip, 48_000)])
    for _ in range(3):  # the published rand_trunc picked a random 10 s crop each time
        assert np.array_equal(encoder.encode("audio", [Waveform(clip, 48_000)]), first)
    changed_end = clip.copy()
    changed_end[-3 * 48_000 :] = _noise(3, 1)  # only the last 3 s differ (outside a crop of the first 10 s)
    other = encoder.encode("audio", [Waveform(changed_end, 48_000)])
    assert float(first[0] @ other[0]) < 0.99999
    # the same file in a batch with others gives the same vector (batch-independent)
    batched = encoder.encode("audio", [Waveform(_noise(2, 5), 48_000), Waveform(clip, 48_000)])
    np.testing.assert_allclose(batched[1], first[0], atol=1e-5)


def test_clap_fusion_model_is_deterministic_for_long_and_short_clips(tmp_path: Path) -> None:
    from tiny_models import save_tiny_clap_dir

    encoder = create_encoder(f"clap:{save_tiny_clap_dir(tmp_path / 'fusion', fusion=True)}", cache=False)
    assert encoder.log_mel.fusion
    clips = [Waveform(_noise(15, 0), 48_000), Waveform(_noise(1, 2), 48_000)]
    a = encoder.encode("audio", clips)
    b = encoder.encode("audio", clips[::-1])[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    changed = clips[0].samples.copy()
    changed[-3 * 48_000 :] = 0.5 * changed[-3 * 48_000 :]
    assert float(a[0] @ encoder.encode("audio", [Waveform(changed, 48_000)])[0]) < 0.99999


# -- 8. preprocessing in torch, equal to the reference ---------------------------------------------------------
@pytest.mark.parametrize("seconds", [0.4, 3.0, 10.0])
def test_clap_torch_log_mel_equals_the_reference_extractor(tiny_models: dict[str, str], seconds: float) -> None:
    """Tolerance: 0.01 dB on log-mel values that span ~100 dB (measured: ~2e-5)."""
    encoder = create_encoder(tiny_models["clap"])
    clip = _noise(seconds, 3)
    reference = encoder.processor.feature_extractor(clip, sampling_rate=48_000, return_tensors="pt")
    ours = encoder.log_mel([clip])
    assert ours.features.shape == reference["input_features"].shape == (1, 1, 1001, 64)
    assert (ours.features.cpu() - reference["input_features"].float()).abs().max() < 0.01


def test_clip_torch_preprocessing_equals_open_clip_transform(tiny_models: dict[str, str]) -> None:
    """Tolerance: one uint8 step (1/255) per pixel before normalisation; both paths round to uint8."""
    import open_clip

    rng = np.random.default_rng(0)
    images = [load_image(mnist_image(d)) for d in range(3)]
    images += [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)) for h, w in ((300, 500), (61, 47))]
    for interpolation, mode in (("bicubic", "shortest"), ("bilinear", "squash")):
        model, _, reference = open_clip.create_model_and_transforms(
            tiny_models["openclip"].removeprefix("openclip:"),
            image_interpolation=interpolation,
            image_resize_mode=mode,
        )
        from retrieval.encoders.image_preprocess import TorchImagePreprocess

        ours = TorchImagePreprocess.from_open_clip(model, reference, torch.device("cpu"))(images)
        expected = torch.stack([reference(image) for image in images])
        assert ours.shape == expected.shape
        assert ((ours - expected) * ours.new_tensor(model.visual.image_std).view(1, 3, 1, 1)).abs().max() <= 1.01 / 255


# -- 2. a tag's own preprocessing and QuickGELU -----------------------------------------------------------
def test_openclip_tag_brings_its_preprocessing_and_quickgelu(hub_cache: Path, tmp_path: Path) -> None:
    import open_clip
    from open_clip.transformer import QuickGELU
    from tiny_models import TINY_TAG_CFG, register_tiny_tag

    name = register_tiny_tag(hub_cache, tmp_path / "configs")
    encoder = create_encoder(f"openclip:{name}", cache=False)
    assert tuple(encoder.pixels.mean.flatten().tolist()) == TINY_TAG_CFG["mean"]
    assert (encoder.pixels.interpolation, encoder.pixels.resize_mode) == ("bilinear", "squash")
    assert any(isinstance(m, QuickGELU) for m in encoder.model.modules())
    assert "squash" in encoder.preprocessing and "quickgelu" in encoder.preprocessing
    # what open_clip gives when it is handed the tag itself (offline, from the same cache)
    # (open_clip only warns about a tag's QuickGELU unless told: force_quick_gelu, as the encoder does)
    model, _, preprocess = open_clip.create_model_and_transforms(*name.split("/"), force_quick_gelu=True)
    image = load_image(mnist_image(7))
    with torch.inference_mode():
        expected = model.eval().encode_image(preprocess(image)[None]).numpy()
        text = model.encode_text(open_clip.get_tokenizer(name.split("/")[0])(["seven"])).numpy()
    expected /= np.linalg.norm(expected)
    text /= np.linalg.norm(text)
    assert float(encoder.encode("image", [image])[0] @ expected[0]) > 0.9999
    assert float(encoder.encode("text", ["seven"])[0] @ text[0]) > 0.99999


# -- 6. every missing model at once, where we looked, a command that works ------------------------------------
def test_missing_weights_are_all_reported_with_folders_and_hf_download(hub_cache: Path, tmp_path: Path) -> None:
    from indexer import Indexer
    from retrieval.profiles import PROFILES

    with pytest.raises(WeightsNotFoundError) as caught:
        Indexer(f"sqlite:///{tmp_path}/p.db", profile=PROFILES["pretrained"]).run(tmp_path)
    message = str(caught.value)
    assert len(caught.value.missing) == 2 and message.startswith("2 models' weights are not on this machine")
    assert str(hub_cache / "models--laion--clap-htsat-unfused") in message
    assert str(hub_cache / "models--laion--CLIP-ViT-B-32-laion2B-s34B-b79K") in message
    assert "`hf download laion/clap-htsat-unfused`" in message
    assert "`hf download laion/CLIP-ViT-B-32-laion2B-s34B-b79K open_clip_pytorch_model.bin`" in message
    assert "huggingface-cli" not in message


def test_hf_download_is_what_the_installed_huggingface_hub_ships() -> None:
    import shutil
    import subprocess
    import sys

    hf = Path(sys.executable).parent / "hf"
    assert hf.exists() or shutil.which("hf")
    help_text = subprocess.run([str(hf), "download", "--help"], capture_output=True, text=True, timeout=120)
    assert help_text.returncode == 0 and "REPO_ID" in help_text.stdout


def test_missing_local_clap_folder_is_not_told_to_download_a_path(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as caught:
        create_encoder(f"clap:{tmp_path / 'no-such-model'}", cache=False)
    message = str(caught.value)
    assert str(tmp_path / "no-such-model") in message and "save_pretrained" in message
    assert "download" not in message


# -- 5. a failed first run leaves no collection behind -------------------------------------------------------
def test_failed_first_run_does_not_create_the_collection(hub_cache: Path, small_folder: Path, tmp_path: Path) -> None:
    from indexer import Indexer
    from retrieval.profiles import PROFILES
    from storage import Database
    from storage.repository import get_collection

    url = f"sqlite:///{tmp_path}/p.db"
    with pytest.raises(WeightsNotFoundError):
        Indexer(url, profile=PROFILES["pretrained"]).run(small_folder)
    with Database(url).session() as session:
        assert get_collection(session, "default") is None
    summary = Indexer(url, profile=PROFILES["offline"]).run(small_folder)  # once refused: another profile
    assert summary.assets == {"audio": 8, "image": 8, "text": 4}


# -- 4. a device this machine lacks --------------------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:1", "gpu", "mps"])
def test_missing_device_is_one_line_that_lists_the_devices(
    device: str, small_folder: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from indexer.__main__ import main
    from storage import Database
    from storage.repository import get_collection

    if device == "mps" and torch.backends.mps.is_available():
        pytest.skip("this machine has MPS")
    url = f"sqlite:///{tmp_path}/p.db"
    assert main([str(small_folder), "--db", url, "--device", device, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith(f"error: --device {device}:") and "devices here: cpu" in err
    with Database(url).session() as session:
        assert get_collection(session, "default") is None


# -- 3. one decode step, per encoder rate ----------------------------------------------------------------
def test_index_and_query_give_clap_48khz_audio_beside_mfcc(
    tiny_models: dict[str, str], small_folder: Path, tmp_path: Path
) -> None:
    from indexer import Indexer
    from retrieval import SearchEngine
    from retrieval.profiles import load_profile
    from storage import Asset, VectorStorage
    from storage.repository import get_collection

    clap = tiny_models["clap"]
    profile = tmp_path / "mixed.json"
    profile.write_text(json.dumps({"name": "mixed", "encoders": {"audio": ["mfcc", clap], "text": ["sbert"]}}))
    url = f"sqlite:///{tmp_path}/p.db"
    seen: list[int] = []
    encoder = create_encoder(clap)
    original = encoder._encode_batch

    def spy(modality, batch):
        seen.extend(w.sample_rate for w in batch if modality == "audio")
        return original(modality, batch)

    encoder._encode_batch = spy  # type: ignore[method-assign]
    try:
        Indexer(url, profile=load_profile(profile)).run(small_folder)
        assert seen and set(seen) == {48_000}
        engine = SearchEngine.open(url)
        wav = small_folder / "d2_george.wav"
        with engine.db.session() as session:
            table = VectorStorage(Path(get_collection(session, "default").vector_dir)).load(f"audio@{clap}")
            item_id = session.query(Asset).filter(Asset.path.like("%d2_george.wav")).one().item_id
        stored = table.vectors[list(table.ids).index(item_id)].astype(np.float32)
        query = engine.encode_query(__import__("retrieval").QueryInput(audio=str(wav))).vectors[("audio", clap)]
        assert float(stored @ query) > 0.999  # float16 storage; 16 kHz audio gave ~0.9 with random weights
    finally:
        encoder._encode_batch = original  # type: ignore[method-assign]


def test_an_encoder_refuses_audio_at_another_rate(tiny_models: dict[str, str]) -> None:
    encoder = create_encoder(tiny_models["clap"])
    with pytest.raises(RuntimeError, match="reads audio at 48000 Hz but was given audio at \\[16000\\] Hz"):
        encoder.encode("audio", [load_audio(recording(1), 16_000)])


# -- 7. no library progress bars on a CLI call ------------------------------------------------------------
@pytest.mark.parametrize("quiet", [True, False])
def test_cli_prints_no_weight_loading_bars(
    quiet: bool,
    tiny_models: dict[str, str],
    small_folder: Path,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    from indexer.__main__ import main

    monkeypatch.delenv("HF_HUB_DISABLE_PROGRESS_BARS", raising=False)  # as for a user who never set it
    monkeypatch.setattr(importlib.import_module("huggingface_hub.utils.tqdm"), "HF_HUB_DISABLE_PROGRESS_BARS", None)
    transformers_logging.enable_progress_bar()
    hub_utils.enable_progress_bars()
    try:
        profile = tmp_path / "p.json"
        profile.write_text(json.dumps({"name": "p", "encoders": {"audio": [tiny_models["clap"]], "text": ["sbert"]}}))
        argv = [str(small_folder), "--db", f"sqlite:///{tmp_path}/p.db", "--profile", str(profile)]
        from retrieval.encoders.registry import _CACHE

        _CACHE.clear()  # load the weights again, inside this call
        assert main(argv + (["--quiet"] if quiet else [])) == 0
    finally:
        transformers_logging.disable_progress_bar()
        hub_utils.disable_progress_bars()
    out, err = capfd.readouterr()
    assert "Loading weights" not in out + err
    assert "encode" in err if not quiet else "encode" not in err  # our own bars are still there unless --quiet
