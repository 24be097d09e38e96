from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import mnist_image, recording

from retrieval.encoders import WeightsNotFoundError, create_encoder, list_encoders
from retrieval.media import load_audio, load_image


def test_registry_lists_every_family_and_refuses_unknown_names() -> None:
    assert {"hog", "mfcc", "sbert", "openclip", "clap"} <= set(list_encoders())
    with pytest.raises(LookupError, match="unknown encoder 'nope'"):
        create_encoder("nope")


def test_what_a_family_reads_is_known_without_building_it_and_true() -> None:
    from retrieval.encoders.registry import READS, encoder_reads

    for family in ("hog", "mfcc", "speech", "sbert"):
        assert encoder_reads(family) == tuple(create_encoder(family).modalities), family
    assert encoder_reads("clap:anything") == ("audio", "text") and set(READS) >= {"openclip", "clap"}


def test_hog_separates_digits() -> None:
    encoder = create_encoder("hog")
    ones = encoder.encode("image", [load_image(mnist_image(1, n)) for n in range(3)])
    zero = encoder.encode("image", [load_image(mnist_image(0))])
    assert ones.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(ones, axis=1), 1.0, rtol=1e-5)
    assert (ones[0] @ ones[1]) > (ones[0] @ zero[0])


def test_mfcc_is_deterministic_and_prefers_the_same_word() -> None:
    encoder = create_encoder("mfcc")
    waves = [load_audio(recording(d, "jackson", t), encoder.sample_rate) for d, t in ((6, 0), (6, 1), (0, 0))]
    a = encoder.encode("audio", waves)
    b = encoder.encode("audio", waves)
    assert np.array_equal(a, b)
    assert a[0] @ a[1] > a[0] @ a[2]


def test_packaged_minilm_gives_real_semantic_vectors() -> None:
    encoder = create_encoder("sbert")
    vectors = encoder.encode("text", ["a photo of a dog", "a picture of a puppy", "quarterly tax report"])
    assert encoder.dim == 384
    assert vectors[0] @ vectors[1] > vectors[0] @ vectors[2] + 0.3


def test_tiny_openclip_through_the_factory(tiny_models: dict[str, str]) -> None:
    encoder = create_encoder(tiny_models["openclip"])
    image = encoder.encode("image", [load_image(mnist_image(2))])
    text = encoder.encode("text", ["two", "a cat"])
    assert image.shape == (1, 32) and text.shape == (2, 32)
    assert encoder.weights is None  # random weights, said so


def test_tiny_openclip_from_a_local_dir(tiny_models: dict[str, str]) -> None:
    encoder = create_encoder(tiny_models["openclip_dir"])
    assert encoder.weights and encoder.weights.startswith("local-dir:")
    again = create_encoder(tiny_models["openclip_dir"], cache=False)
    image = load_image(mnist_image(4))
    np.testing.assert_allclose(encoder.encode("image", [image]), again.encode("image", [image]), atol=1e-5)


def test_tiny_clap_reads_audio_and_text(tiny_models: dict[str, str]) -> None:
    encoder = create_encoder(tiny_models["clap"])
    wave = load_audio(recording(3), encoder.sample_rate)
    audio = encoder.encode("audio", [wave, wave])
    text = encoder.encode("text", ["the digit three", "zero"])
    assert audio.shape == (2, 16) and text.shape == (2, 16)
    np.testing.assert_allclose(audio[0], audio[1], atol=1e-5)


@pytest.mark.parametrize(
    "name, looked",
    [
        ("openclip:ViT-B-32/laion2b_s34b_b79k", "laion/CLIP-ViT-B-32-laion2B-s34B-b79K"),
        ("openclip:ViT-B-32/not-a-tag", "not-a-tag"),
        ("clap:laion/clap-htsat-unfused", "laion/clap-htsat-unfused"),
        ("sbert:/nowhere/model", "/nowhere/model"),
    ],
)
def test_missing_weights_say_which_model_where_and_what_to_do(name: str, looked: str) -> None:
    with pytest.raises(WeightsNotFoundError) as caught:
        create_encoder(name, cache=False)
    message = str(caught.value)
    assert "Looked in" in message and looked in message
    assert any(word in message for word in ("download", "Known tags", "Give a local folder"))


def test_missing_local_dir_is_reported(tmp_path: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        create_encoder(f"openclip:local-dir:{tmp_path / 'absent'}", cache=False)


def test_mfcc_batches_clips_by_length_and_matches_the_per_clip_spectrogram() -> None:
    from retrieval.encoders.features import MfccAudioEncoder
    from retrieval.media import Waveform

    encoder = MfccAudioEncoder()
    rng = np.random.default_rng(0)
    lengths = [300, 4_000, 16_000, 9_000, 17_000, 40_000, 16_001, 250_000]  # under a frame, ..., 15 s alone
    clips = [Waveform((0.1 * rng.standard_normal(n)).astype(np.float32), 16_000) for n in lengths]
    got = encoder.encode("audio", clips, batch_size=64)
    assert np.isfinite(got).all()  # a clip shorter than five frames once gave NaN (empty segments)
    for clip, vector in zip(clips, got):
        expected = encoder.summary(encoder.log_mel(clip.samples))  # one clip alone, not in a padded group
        expected = expected / np.linalg.norm(expected)
        assert np.allclose(vector, expected, atol=1e-5)


TEXTS = [
    "seven",
    "the number seven, said twice: seven!",
    "Ünïcode façade — 七",
    "",
    " ".join(["a long caption that runs past the model's 256 tokens"] * 40),
]


def test_a_query_through_the_onnx_export_equals_sentence_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 38, item 5: a few texts run through onnxruntime on an export of the same weights; a batch
    through sentence-transformers, which leaves the export behind. Both must give the same vectors."""
    from retrieval.encoders.sbert import CACHE_ENV, QUERY_TEXTS

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    encoder = create_encoder("sbert", cache=False)
    assert not list(tmp_path.rglob("*.onnx"))
    batch = encoder.encode("text", TEXTS * 2)  # more than QUERY_TEXTS: torch, then the export is written
    assert len(TEXTS) * 2 > QUERY_TEXTS and len(list(tmp_path.rglob("*.onnx"))) == 1
    single = np.concatenate([encoder.encode("text", [text]) for text in TEXTS])
    assert encoder._onnx is not None  # the single texts took the export
    np.testing.assert_allclose(single, batch[: len(TEXTS)], atol=1e-4)
    assert single[0] @ single[1] > single[0] @ single[4]


def test_a_text_query_in_a_fresh_process_loads_neither_torch_nor_transformers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess
    import sys

    from retrieval.encoders.sbert import CACHE_ENV, prepare_queries

    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    assert prepare_queries() is not None  # what scripts/setup.sh runs once
    script = (
        "import sys; from retrieval.encoders import create_encoder; "
        "v = create_encoder('sbert').encode('text', ['seven']); "
        "print(v.shape, 'torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "(1, 384) False False"
