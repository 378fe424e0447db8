"""Resampling (soxr "HQ", as librosa.resample does it for the official package) and audio reading.
That our output equals the reference's is checked end to end by tests/test_parity_rates.py."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from qwen3tts_cli.errors import InputError
from qwen3tts_cli.io.resample import load_audio, resample

ROOT = Path(__file__).resolve().parents[1]
GOLDENS = ROOT / "tests" / "fixtures" / "goldens" / "clone"


def tone(freq: float, sr: int, seconds: float = 1.0) -> np.ndarray:
    return np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr).astype(np.float32)


def inner(x: np.ndarray) -> np.ndarray:
    """Drop 10 % at each end, where the zero padding outside the signal shows."""
    k = len(x) // 10
    return x[k:-k]


def snr_db(y: np.ndarray, freq: float, sr: int) -> float:
    ref = np.sin(2 * np.pi * freq * np.arange(len(y)) / sr)
    err = inner(y.astype(np.float64)) - inner(ref)
    return 10 * np.log10(np.mean(inner(ref) ** 2) / np.mean(err ** 2))


def level_db(y: np.ndarray) -> float:
    """Level relative to a full-scale sine."""
    return 10 * np.log10(np.mean(inner(y.astype(np.float64)) ** 2) / 0.5)


def official_length(n: int, sr_in: int, sr_out: int) -> int:
    """librosa.resample's output length: ceil(n * ratio) with the ratio in floating point."""
    return int(np.ceil(n * (float(sr_out) / sr_in)))


def test_1khz_44k1_to_24k_is_clean():
    y = resample(tone(1000, 44100), 44100, 24000)
    # One second gives 24001 samples: 44100 * (24000 / 44100) rounds just above 24000 in floats.
    assert y.dtype == np.float32 and len(y) == official_length(44100, 44100, 24000) == 24001
    assert snr_db(y, 1000, 24000) > 60


def test_15khz_is_rejected_going_to_24k():
    # 15 kHz is above the 12 kHz output Nyquist: it must not fold back to 9 kHz.
    y = resample(tone(15000, 44100), 44100, 24000)
    assert level_db(y) < -60


@pytest.mark.parametrize("freq", [100.0, 4000.0, 10000.0])
def test_passband_is_flat(freq):
    y = resample(tone(freq, 44100), 44100, 24000)
    assert abs(level_db(y)) < 0.01
    assert snr_db(y, freq, 24000) > 60


@pytest.mark.parametrize("sr_in,sr_out,freq", [(16000, 24000, 1000.0), (22050, 24000, 5000.0),
                                               (48000, 24000, 3000.0), (8000, 24000, 440.0)])
def test_other_ratios(sr_in, sr_out, freq):
    x = tone(freq, sr_in)
    y = resample(x, sr_in, sr_out)
    assert len(y) == official_length(len(x), sr_in, sr_out)
    assert snr_db(y, freq, sr_out) > 60


def test_length_is_the_official_one_and_dc_passes():
    for n in (1, 2, 3, 147, 1001):
        assert len(resample(np.ones(n, np.float32), 44100, 24000)) == official_length(n, 44100, 24000)
    assert len(resample(np.ones(147, np.float32), 44100, 24000)) == 81  # not the exact 80: as librosa
    y = resample(np.full(20000, 0.5, np.float32), 44100, 24000)
    assert np.abs(inner(y) - 0.5).max() < 1e-4


def test_same_rate_is_a_copy():
    x = np.random.default_rng(0).standard_normal(1000).astype(np.float32)
    y = resample(x, 24000, 24000)
    assert np.array_equal(x, y) and y is not x


def test_bad_arguments():
    with pytest.raises(InputError):
        resample(np.zeros((2, 100), np.float32), 44100, 24000)
    with pytest.raises(InputError):
        resample(np.zeros(100, np.float32), 0, 24000)
    with pytest.raises(InputError):
        resample(np.zeros(100, np.float32), 44100.5, 24000)


# -- reading ------------------------------------------------------------------------------------

def test_load_audio_mixes_channels(tmp_path):
    left = tone(300, 22050, 0.5)
    right = 0.25 * tone(700, 22050, 0.5)
    path = tmp_path / "st.wav"
    sf.write(str(path), np.stack([left, right], 1), 22050, subtype="FLOAT")
    mono, sr = load_audio(path)
    assert sr == 22050 and mono.dtype == np.float32 and mono.shape == left.shape
    np.testing.assert_allclose(mono, (left + right) / 2, atol=1e-7)
    pcm = tmp_path / "m.flac"
    sf.write(str(pcm), left, 16000, subtype="PCM_16")
    mono, sr = load_audio(pcm)
    assert sr == 16000 and np.abs(mono - left).max() < 1e-4


def test_load_audio_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_audio(tmp_path / "missing.wav")
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio")
    with pytest.raises(InputError, match="cannot read"):
        load_audio(junk)
    empty = tmp_path / "empty.wav"
    sf.write(str(empty), np.zeros(0, np.float32), 24000)
    with pytest.raises(InputError, match="no samples"):
        load_audio(empty)


def test_stereo_golden_signal_is_reproduced(tmp_path):
    # The 24 kHz signal the reference encoded in the clone goldens came from this path.
    spec = importlib.util.spec_from_file_location("goldens_clone", ROOT / "scripts" / "goldens_clone.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    ours = mod.stereo44k_to_24k(tmp_path)
    with np.load(GOLDENS / "signals.npz") as z:
        stored = z["stereo44k"]
    assert ours.shape == stored.shape == (72000,)
    assert np.abs(ours - stored).max() < 1e-5
