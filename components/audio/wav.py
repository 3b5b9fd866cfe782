"""Loading one-second 16 kHz mono clips from WAV files, with clear errors for bad files.

Called by the Speech Commands reader (to probe noise files), by the Beam feature extraction
(every clip) and by inference code that feeds raw recordings to ``components.features``.
Every failure is a ``ComponentError`` that names the file and the reason, so that the
extraction can route the clip to its dead-letter output instead of dying.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf

from components.errors import ComponentError

SAMPLE_RATE = 16000
CLIP_SAMPLES = 16000

WrongRate = Literal["resample", "skip"]


def load_clip(
    path: str | Path, *, offset: int = 0, on_wrong_rate: WrongRate = "resample"
) -> np.ndarray:
    """Read ``CLIP_SAMPLES`` samples starting at ``offset`` (in 16 kHz samples).

    Returns float32 in [-1, 1]. Short clips are zero-padded at the end, as the Speech
    Commands training code does; longer files are cut. Multi-channel files are mixed down
    to mono. A file at another rate is resampled, or refused when ``on_wrong_rate="skip"``.
    """
    path = Path(path)
    info = _header(path, on_wrong_rate)
    rate = info.samplerate
    start = math.floor(offset * rate / SAMPLE_RATE)
    if offset < 0 or start >= info.frames:
        raise ComponentError(f"{path}: offset {offset} outside the file ({info.frames} samples)")
    frames = math.ceil(CLIP_SAMPLES * rate / SAMPLE_RATE)
    audio = _mono(_read(path, start, frames), path)
    if rate != SAMPLE_RATE:
        audio = resample(audio, rate)
    return fit_length(audio)


def load_file(path: str | Path, *, on_wrong_rate: WrongRate = "resample") -> np.ndarray:
    """A whole file (e.g. a background-noise recording) as 16 kHz mono float32."""
    path = Path(path)
    info = _header(path, on_wrong_rate)
    audio = _mono(_read(path, 0, -1), path)
    return audio if info.samplerate == SAMPLE_RATE else resample(audio, info.samplerate)


def fit_length(audio: np.ndarray) -> np.ndarray:
    """Cut or zero-pad (at the end) to exactly ``CLIP_SAMPLES`` float32 samples."""
    out = np.zeros(CLIP_SAMPLES, dtype=np.float32)
    n = min(len(audio), CLIP_SAMPLES)
    out[:n] = audio[:n]
    return out


def resample(audio: np.ndarray, rate: int) -> np.ndarray:
    """Polyphase resampling from ``rate`` to ``SAMPLE_RATE`` (scipy imported lazily)."""
    from scipy.signal import resample_poly

    g = math.gcd(rate, SAMPLE_RATE)
    out = resample_poly(audio.astype(np.float64), SAMPLE_RATE // g, rate // g)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def frame_count(path: str | Path) -> int:
    """Length of a file in 16 kHz samples (after any resampling); raises like ``load_clip``."""
    info = _probe(Path(path))
    return info.frames * SAMPLE_RATE // info.samplerate


def _header(path: Path, on_wrong_rate: WrongRate) -> sf._SoundFileInfo:
    """Header of a file that has samples and an acceptable rate."""
    info = _probe(path)
    if info.frames == 0:
        raise ComponentError(f"{path}: empty WAV (no samples)")
    if info.samplerate != SAMPLE_RATE and on_wrong_rate == "skip":
        raise ComponentError(f"{path}: sample rate {info.samplerate} Hz, expected {SAMPLE_RATE} Hz")
    return info


def _probe(path: Path) -> sf._SoundFileInfo:
    """Header of a WAV file; missing, empty and unreadable files become ComponentError."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ComponentError(f"{path}: cannot read file ({e.strerror})") from e
    if size == 0:
        raise ComponentError(f"{path}: empty file (0 bytes)")
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError) as e:
        raise ComponentError(f"{path}: corrupt or not a WAV file ({e})") from e
    _check_complete(path, size)
    return info


def _check_complete(path: Path, size: int) -> None:
    """Refuse a RIFF/WAV whose data chunk is shorter than its header declares.

    libsndfile silently reads what is there, so a half-downloaded clip would otherwise
    pass as a short one. Sizes of 0 or 0xFFFFFFFF mean "unknown" (streamed files).
    """
    with path.open("rb") as f:
        head = f.read(4096)
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return
    pos = 12
    while pos + 8 <= len(head):
        chunk, length = struct.unpack_from("<4sI", head, pos)
        if chunk == b"data":
            available = size - pos - 8
            if 0 < length < 0xFFFFFFFF and available < length:
                raise ComponentError(
                    f"{path}: truncated (data chunk declares {length} bytes, {available} present)"
                )
            return
        pos += 8 + length + (length & 1)


def _read(path: Path, start: int, frames: int) -> np.ndarray:
    """Samples as float32 (frames, channels); decoding errors become ComponentError."""
    try:
        data, _ = sf.read(str(path), start=start, frames=frames, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as e:
        raise ComponentError(f"{path}: corrupt audio data ({e})") from e
    if data.size == 0:
        raise ComponentError(f"{path}: truncated (no samples could be decoded)")
    return data


def _mono(data: np.ndarray, path: Path) -> np.ndarray:
    """Mix channels down to one and reject non-finite samples (broken float WAVs)."""
    audio = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.all(np.isfinite(audio)):
        raise ComponentError(f"{path}: corrupt audio data (NaN or infinite samples)")
    return np.clip(audio, -1.0, 1.0)
