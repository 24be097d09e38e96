"""The `speech` encoder: Google's speech_embedding through onnxruntime, from openWakeWord 0.5.1's own files."""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pytest
from conftest import recording

from retrieval.encoders import WeightsNotFoundError, create_encoder, speech
from retrieval.media import Waveform, load_audio

RATE = 16_000


def tone(seconds: float, seed: int = 0) -> np.ndarray:
    """A voiced-like sound: a gliding tone with harmonics and a little noise."""
    t = np.arange(int(seconds * RATE)) / RATE
    pitch = 120 + 60 * t / max(seconds, 1e-3)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    wave = sum(np.sin(k * phase) / k for k in range(1, 6)) * np.hanning(len(t))
    noise = np.random.default_rng(seed).standard_normal(len(t)) * 0.01
    return (0.2 * wave + noise).astype(np.float32)


@pytest.fixture(scope="module")
def encoder() -> speech.SpeechEmbeddingEncoder:
    made = create_encoder("speech")
    assert isinstance(made, speech.SpeechEmbeddingEncoder)
    return made


@pytest.mark.parametrize("seconds", [0.5, 3.2])
def test_window_vectors_equal_openwakewords_own_front_end(encoder, seconds: float) -> None:
    """The reference is openWakeWord's AudioFeatures (onnx), fed the same padded clip as 16-bit PCM."""
    from openwakeword.utils import AudioFeatures

    reference = AudioFeatures(inference_framework="onnx")
    padded = encoder.padded(tone(seconds))
    pcm = np.clip(padded * 32767.0, -32768, 32767).astype(np.int16)
    expected = reference._get_embeddings(pcm)
    (ours,) = encoder.frames([tone(seconds)])
    assert ours.shape == expected.shape
    np.testing.assert_allclose(ours, expected, atol=1e-4)


def test_short_and_long_clips_give_unit_vectors_and_longer_clips_more_windows(encoder) -> None:
    clips = [tone(0.02), tone(0.6), tone(30.0)]
    vectors = encoder.encode("audio", [Waveform(c, RATE) for c in clips])
    assert vectors.shape == (3, 2 * speech.DIM) and np.isfinite(vectors).all()
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    counts = [len(f) for f in encoder.frames(clips)]
    assert counts[0] == counts[1] < counts[2]  # short clips are padded to the same 1.5 s; 30 s is windowed
    (mel,) = encoder.log_mels([encoder.padded(clips[2])])
    assert abs(len(mel) - (30.0 + 2 * speech.EDGE_SECONDS) * 100) <= 4  # 10 ms frames over the padded clip
    assert counts[2] == (len(mel) - speech.WINDOW) // speech.STRIDE + 1  # every window, none dropped


def test_a_clip_centred_anywhere_in_its_padding_is_read_alike(encoder) -> None:
    """Centring is what carries a word across voices (docs/benchmarks/speech_encoder.md): the padded clip
    has as much silence before the sound as after it."""
    padded = encoder.padded(np.ones(8000, np.float32))
    before, after = np.argmax(padded != 0), np.argmax(padded[::-1] != 0)
    assert len(padded) == int(speech.MIN_SECONDS * RATE) and abs(int(before) - int(after)) <= 1
    long = encoder.padded(np.ones(40_000, np.float32))
    assert len(long) == 40_000 + 2 * int(speech.EDGE_SECONDS * RATE)


def test_deterministic_and_the_same_alone_or_in_a_batch(encoder) -> None:
    clips = [Waveform(tone(s, seed=i), RATE) for i, s in enumerate((0.3, 0.9, 2.5, 0.3))]
    batch = encoder.encode("audio", clips)
    again = encoder.encode("audio", clips)
    assert np.array_equal(batch, again)
    for i, clip in enumerate(clips):  # onnxruntime's kernels differ by batch size in the 5th decimal; the
        # vectors are stored as float16 (3 decimals), so that is the same vector
        np.testing.assert_allclose(encoder.encode("audio", [clip])[0], batch[i], atol=2e-4)


def test_a_missing_package_or_file_is_named_with_the_pip_install(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None)
    with pytest.raises(WeightsNotFoundError, match=r"pip install openwakeword==0\.5\.1"):
        create_encoder("speech", cache=False)
    (tmp_path / "melspectrogram.onnx").write_bytes(b"")
    with pytest.raises(WeightsNotFoundError, match=r"embedding_model\.onnx") as caught:
        create_encoder(f"speech:{tmp_path}", cache=False)
    assert "melspectrogram.onnx" not in str(caught.value).split("Looked in:")[1].split("pip install")[0]


def test_reads_audio_at_16_khz_only(encoder) -> None:
    with pytest.raises(RuntimeError, match="16000 Hz"):
        encoder.encode("audio", [Waveform(tone(0.5), 8000)])


@pytest.mark.real_media
def test_carries_a_spoken_digit_from_one_voice_to_another_better_than_mfcc(encoder) -> None:
    """Nearest neighbour from the other speakers only, two takes of each digit: speech ≥ 0.8 and above mfcc."""
    speakers, takes = ("george", "jackson", "lucas", "nicolas"), (0, 1)
    keys = list(itertools.product(range(10), speakers, takes))

    def accuracy(name: str) -> float:
        made = create_encoder(name)
        vectors = made.encode("audio", [load_audio(recording(d, s, t), made.sample_rate) for d, s, t in keys])
        similarity = vectors @ vectors.T
        same_speaker = np.array([[a[1] == b[1] for b in keys] for a in keys])
        similarity[same_speaker] = -np.inf
        digits = np.array([k[0] for k in keys])
        return float((digits[similarity.argmax(axis=1)] == digits).mean())

    ours, mfcc = accuracy("speech"), accuracy("mfcc")
    assert ours >= 0.8 and ours > mfcc + 0.2, (ours, mfcc)


def test_a_clips_vector_does_not_depend_on_the_clips_batched_with_it(encoder) -> None:
    """The front end's decibels were relative to the loudest value of all it was sent: a clip batched with a
    louder one of the same length got other bands, and its stored vector was not the one the same clip gets
    as a query (encoded alone). Up to 0.03 apart here before each clip went to the front end on its own."""
    quiet, loud, other = tone(0.8, 1), 8 * tone(0.8, 2), tone(0.5, 3)  # one padded length for the first two
    waves = [Waveform(quiet, RATE), Waveform(loud, RATE), Waveform(other, RATE)]
    together = encoder.encode("audio", waves)
    alone = np.concatenate([encoder.encode("audio", [w]) for w in waves])
    assert np.abs(together - alone).max() < 1e-6
    assert np.abs(together[0] - together[1]).max() > 1e-3  # the two clips of one length do differ


def quiet_room(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    """-60 dBFS hiss and mains hum: what a phone records with no one speaking."""
    t = np.arange(int(seconds * RATE)) / RATE
    hiss = 1e-3 * np.random.default_rng(seed).standard_normal(len(t))
    return (hiss + 5e-4 * np.sin(2 * np.pi * 50 * t)).astype(np.float32)


def test_finds_nothing_in_a_recording_without_a_voice(encoder) -> None:
    """White noise, a quiet room and a steady note hold no speech; the detector says so."""
    rng = np.random.default_rng(1)
    t = np.arange(RATE) / RATE
    clips = [
        0.1 * rng.standard_normal(RATE).astype(np.float32),
        quiet_room(),
        (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
    ]
    assert encoder.finds_nothing("audio", [Waveform(c, RATE) for c in clips]) == [True, True, True]


@pytest.mark.real_media
def test_hears_every_speaker_say_every_digit(encoder) -> None:
    """Each of the four speakers' first two takes of every digit (80 clips, 8 kHz recordings read at 16 kHz)."""
    keys = list(itertools.product(range(10), ("george", "jackson", "lucas", "nicolas"), (0, 1)))
    clips = [load_audio(recording(d, s, t), RATE) for d, s, t in keys]
    missed = [k for k, nothing in zip(keys, encoder.finds_nothing("audio", clips)) if nothing]
    assert missed == []


def test_a_folder_without_the_detector_finds_something_in_every_recording(tmp_path: Path) -> None:
    """A backbone folder given by hand may lack silero_vad.onnx: nothing is then screened for want of a voice."""
    folder = speech.packaged_speech_folder()
    assert folder is not None
    for name in speech.FILES:
        (tmp_path / name).symlink_to(folder / name)
    made = create_encoder(f"speech:{tmp_path}")
    assert made.finds_nothing("audio", [Waveform(quiet_room(), RATE)]) == [False]


def test_a_long_clip_reaches_the_network_a_bounded_number_of_windows_at_a_time(encoder, monkeypatch) -> None:
    """Probe case 51: a 590 s clip held 2.6 GB, the network's activations for all its windows at once. The
    network now reads at most MAX_WINDOWS windows a call, short clips' together, and the vectors are the same
    as one call's."""
    clips = [tone(0.6), tone(40.0, seed=1), tone(0.9, seed=2)]
    reference = speech.SpeechEmbeddingEncoder(speech.packaged_speech_folder())  # type: ignore[arg-type]
    monkeypatch.setattr(speech, "MAX_WINDOWS", 10_000)
    whole = reference.frames(clips)
    sizes: list[int] = []
    network = encoder.embedding_model

    class Counting:
        def run(self, outputs, feeds):
            sizes.append(len(feeds["input_1"]))
            return network.run(outputs, feeds)

    monkeypatch.undo()
    assert not network.get_session_options().enable_cpu_mem_arena, "an arena would keep the peak for good"
    monkeypatch.setattr(encoder, "embedding_model", Counting())
    parts = encoder.frames(clips)
    assert max(sizes) <= 256 and sum(sizes) == sum(len(w) for w in whole) > 256 * 2
    for ours, one_call in zip(parts, whole):
        np.testing.assert_allclose(ours, one_call, atol=1e-6)
