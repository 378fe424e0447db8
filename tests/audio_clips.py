"""Test recordings at any sample rate, made with integer arithmetic only (phase accumulators and a
seeded PCG64 stream), so every machine writes the same 16-bit samples: the goldens of
tests/test_parity_rates.py were made from these very files (scripts/goldens_rates.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

RATES = (8000, 16000, 22050, 44100, 48000, 96000)
SECONDS = 1.1  # above the 1 s a cloning reference needs


def _triangle(n: int, sr: int, hz: int) -> np.ndarray:
    """A triangle wave in [-16384, 16384] from an integer phase accumulator."""
    phase = (np.arange(n, dtype=np.int64) * hz * 65536 // sr) % 65536
    return np.abs(phase - 32768) - 16384


def clip(sr: int, channels: int = 1, seconds: float = SECONDS, seed: int = 1) -> np.ndarray:
    """int16 [samples, channels]: voiced-sounding triangles with a syllable envelope, and noise."""
    n = int(sr * seconds)
    rng = np.random.Generator(np.random.PCG64(seed + sr))
    envelope = (_triangle(n, sr, 4) + 16384) // 2  # 4 Hz syllables, 0..16384
    out = []
    for c in range(channels):
        base = 110 + 37 * c
        tone = (_triangle(n, sr, base) // 2 + _triangle(n, sr, 2 * base + 3) // 4
                + _triangle(n, sr, 5 * base + 11) // 8)
        noise = rng.integers(-1200, 1200, n)
        out.append((tone * envelope // 16384 + noise) // 2)
    return np.clip(np.stack(out, axis=1), -32768, 32767).astype(np.int16)


def write_clips(folder: Path) -> dict[str, Path]:
    """Every rate, mono and stereo, as 16-bit WAV files: name -> path (e.g. "44100_stereo")."""
    import soundfile as sf

    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for sr in RATES:
        for channels, tag in ((1, "mono"), (2, "stereo")):
            path = folder / f"{sr}_{tag}.wav"
            sf.write(str(path), clip(sr, channels), sr, subtype="PCM_16")
            paths[f"{sr}_{tag}"] = path
    return paths
