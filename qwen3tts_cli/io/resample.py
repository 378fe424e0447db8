"""Reading reference audio, and band-limited resampling to the model rate.

The resampler is a windowed-sinc interpolator evaluated exactly at each output instant
(polyphase: with sr_out/sr_in = L/M in lowest terms there are only L distinct sub-sample phases,
whose taps are tabulated once). The kernel is a Kaiser-windowed sinc whose cutoff sits just below
the lower of the two Nyquist frequencies, so nothing above the output Nyquist folds back.

Quality: stopband attenuation ~100 dB (Kaiser beta 10), passband flat to ~0.91 of the lower
Nyquist, transition ending at that Nyquist. The official pipeline uses soxr-HQ through librosa;
this is a different filter of similar quality, so resampled audio is close to but not
bit-identical with the official one.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..errors import InputError

# Cutoff (-6 dB point) as a fraction of the lower Nyquist frequency.
ROLLOFF = 0.955
# Zero crossings of the sinc on each side, counted at the lower of the two rates.
ZERO_CROSSINGS = 64
KAISER_BETA = 10.0
# Above this many phases the taps are evaluated per output sample instead of tabulated.
MAX_PHASES = 4096
_CHUNK = 8192


def _kernel(t: np.ndarray, cutoff: float, half_width: float) -> np.ndarray:
    """Kaiser-windowed sinc at offsets ``t`` (input samples); cutoff in cycles per input sample x 2."""
    u = np.clip(t / half_width, -1.0, 1.0)
    window = np.i0(KAISER_BETA * np.sqrt(1.0 - u * u)) / np.i0(KAISER_BETA)
    window[np.abs(t) >= half_width] = 0.0
    return cutoff * np.sinc(cutoff * t) * window


def _taps(frac: np.ndarray, offsets: np.ndarray, cutoff: float, half_width: float) -> np.ndarray:
    """[len(frac), len(offsets)] taps, each row normalised to unit DC gain so that every
    sub-sample phase passes a constant unchanged."""
    h = _kernel(offsets[None, :] - frac[:, None], cutoff, half_width)
    return h / h.sum(axis=1, keepdims=True)


def resample(x: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """Resample a mono signal from ``sr_in`` to ``sr_out`` Hz: float32 of length ceil(N*sr_out/sr_in).

    Samples outside the signal count as zeros (no edge reflection).
    """
    x = np.asarray(x)
    if x.ndim != 1:
        raise InputError(f"resample wants a mono signal [samples], got shape {list(x.shape)}")
    if int(sr_in) != sr_in or int(sr_out) != sr_out or sr_in <= 0 or sr_out <= 0:
        raise InputError(f"sample rates must be positive integers, got {sr_in} -> {sr_out}")
    sr_in, sr_out = int(sr_in), int(sr_out)
    if sr_in == sr_out:
        return x.astype(np.float32, copy=True)
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    n_out = -(-len(x) * up // down)
    # In input-sample units: the cutoff scales with the lower rate, the support with its inverse.
    ratio = min(1.0, up / down)
    cutoff = ROLLOFF * ratio
    half_width = ZERO_CROSSINGS / ratio
    W = int(math.ceil(half_width))
    offsets = np.arange(-W + 1, W + 1, dtype=np.float64)
    xp = np.concatenate([np.zeros(W, np.float64), x.astype(np.float64), np.zeros(W + 1, np.float64)])
    table = None
    if up <= MAX_PHASES:
        table = _taps(np.arange(up, dtype=np.float64) / up, offsets, cutoff, half_width)
    out = np.empty(n_out, dtype=np.float32)
    idx = np.arange(2 * W)
    for start in range(0, n_out, _CHUNK):
        n = np.arange(start, min(start + _CHUNK, n_out), dtype=np.int64)
        # Output n sits at input position n*down/up = i0 + phase/up.
        i0, phase = np.divmod(n * down, up)
        taps = table[phase] if table is not None else _taps(phase / up, offsets, cutoff, half_width)
        # xp is shifted by W, so input index i0 + offsets[0] = i0 - W + 1 is xp[i0 + 1].
        frames = xp[(i0 + 1)[:, None] + idx[None, :]]
        out[start:start + len(n)] = np.einsum("ij,ij->i", frames, taps)
    return out


def load_audio(path: str | Path) -> tuple[np.ndarray, int]:
    """Read an audio file with soundfile: (mono float32 samples, sample rate).

    Channels are averaged to mono. Errors (missing, unreadable, empty, non-finite) are InputError.
    """
    import soundfile as sf

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: audio file not found")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (RuntimeError, OSError, TypeError) as e:  # LibsndfileError is a RuntimeError
        raise InputError(f"{path}: cannot read audio ({e})") from None
    if data.shape[0] == 0:
        raise InputError(f"{path}: audio file has no samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    if not np.isfinite(mono).all():
        raise InputError(f"{path}: audio contains NaN or infinite samples")
    return np.ascontiguousarray(mono, dtype=np.float32), int(sr)
