"""Reading audio files, and resampling to the model rate exactly as the official package does.

qwen-tts reads a file with librosa (soundfile underneath, float32, channels averaged to mono) and
resamples with ``librosa.resample``'s default: soxr at "HQ" quality, the output cut or zero-padded
to ceil(n * sr_out / sr_in) samples. We call soxr the same way, so the 24 kHz signal, and with it
the codec codes and the speaker embedding of a clip at any rate, equal the official ones.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError

SOXR_QUALITY = "soxr_hq"  # librosa.resample's default res_type


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal from ``sr_in`` to ``sr_out`` Hz: float32 of ceil(N * sr_out / sr_in)
    samples, as ``librosa.resample(x, orig_sr=sr_in, target_sr=sr_out)`` gives it."""
    import soxr

    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"resample wants a mono signal [samples], got shape {list(x.shape)}")
    if int(sr_in) != sr_in or int(sr_out) != sr_out or sr_in <= 0 or sr_out <= 0:
        raise InputError(f"sample rates must be positive integers, got {sr_in} -> {sr_out}")
    sr_in, sr_out = int(sr_in), int(sr_out)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if sr_in == sr_out:
        return x.copy()
    n_out = int(math.ceil(len(x) * (float(sr_out) / sr_in)))  # librosa's rounding, in float
    y = soxr.resample(x, sr_in, sr_out, quality=SOXR_QUALITY)
    if len(y) >= n_out:
        return np.ascontiguousarray(y[:n_out], dtype=np.float32)
    return np.concatenate([y, np.zeros(n_out - len(y), dtype=np.float32)])


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file with soundfile: (mono float32 samples, sample rate).

    Channels are averaged to mono. Errors (missing, unreadable, empty, non-finite) are InputError.
    """
    import soundfile as sf

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected an audio file")
    if not path.exists():
        raise InputError(f"{path}: audio file not found")
    try:
        if path.is_file():
            data, sr = sf.read(str(path), dtype="float32", always_2d=True)
        else:  # a pipe or process substitution, <(...): read once, whole (libsndfile may seek)
            import io

            data, sr = sf.read(io.BytesIO(path.read_bytes()), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, TypeError) as e:  # LibsndfileError is a RuntimeError
        why = getattr(e, "error_string", None) or str(e)  # libsndfile's own words, without its file object
        raise InputError(f"{path}: cannot read audio ({why})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path}: audio file has no samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)
