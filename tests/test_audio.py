"""WAV writing (atomic, PCM16 or float32) and raw PCM16 conversion."""

from __future__ import annotations

import errno

import numpy as np
import pytest
import soundfile as sf

from qwen3tts_cli.io.audio import WavWriter, pcm16, write_wav
from qwen3tts_cli.errors import InputError


def test_pcm16_rounding_and_clipping():
    x = np.array([0.0, 1.0, -1.0, 1.5, -7.0, 1000.6 / 32767, 1000.4 / 32767, -1000.6 / 32767, 1e-6,
                  np.nan, np.inf, -np.inf], dtype=np.float32)
    got = np.frombuffer(pcm16(x), dtype="<i2")
    assert got.tolist() == [0, 32767, -32767, 32767, -32767, 1001, 1000, -1001, 0, 0, 32767, -32767]


def test_pcm16_is_little_endian_two_bytes_per_sample():
    b = pcm16(np.array([1.0, -1.0, 256 / 32767], dtype=np.float32))
    assert b == bytes([0xFF, 0x7F, 0x01, 0x80, 0x00, 0x01])
    assert pcm16(np.zeros(0, dtype=np.float32)) == b""
    with pytest.raises(ValueError):
        pcm16(np.zeros((2, 3), dtype=np.float32))


def test_write_wav_pcm16_matches_pcm16(tmp_path):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(-1.2, 1.2, 5000), [1.0, -1.0, 0.0]]).astype(np.float32)
    path = write_wav(tmp_path / "a.wav", x)
    info = sf.info(str(path))
    assert (info.samplerate, info.channels, info.subtype, info.format) == (24000, 1, "PCM_16", "WAV")
    assert info.frames == len(x)
    data, sr = sf.read(str(path), dtype="int16")
    assert sr == 24000
    assert data.tobytes() == pcm16(x)
    assert list(tmp_path.iterdir()) == [path]


def test_write_wav_float32_is_exact(tmp_path):
    x = np.random.default_rng(1).standard_normal(1000).astype(np.float32) * 0.3
    path = write_wav(tmp_path / "f.wav", x, sample_rate=16000, subtype="float32")
    data, sr = sf.read(str(path), dtype="float32")
    assert sr == 16000 and sf.info(str(path)).subtype == "FLOAT"
    assert np.array_equal(data, x)


def test_wav_writer_appends_chunks(tmp_path):
    chunks = [np.full(n, v, dtype=np.float32) for n, v in ((100, 0.5), (7, -0.25), (0, 0.0), (50, 0.1))]
    with WavWriter(tmp_path / "c.wav") as w:
        for c in chunks:
            w.write(c)
    assert w.frames == 157
    data, _ = sf.read(str(tmp_path / "c.wav"), dtype="int16")
    assert data.tobytes() == pcm16(np.concatenate(chunks))


def test_failure_leaves_no_file_and_keeps_old_one(tmp_path):
    target = tmp_path / "out.wav"
    with pytest.raises(RuntimeError):
        with WavWriter(target) as w:
            w.write(np.zeros(100, dtype=np.float32))
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []

    write_wav(target, np.full(10, 0.5, dtype=np.float32))
    before = target.read_bytes()
    with pytest.raises(KeyboardInterrupt):
        with WavWriter(target) as w:
            w.write(np.zeros(100, dtype=np.float32))
            raise KeyboardInterrupt
    assert target.read_bytes() == before
    assert list(tmp_path.iterdir()) == [target]


def test_write_error_cleans_up(tmp_path, monkeypatch):
    def broken(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(WavWriter, "_put", broken)
    with pytest.raises(OSError, match="No space left") as e:
        write_wav(tmp_path / "x.wav", np.zeros(10, dtype=np.float32))
    assert e.value.filename is None  # the writer's own naming is tested on a real full disk
    assert list(tmp_path.iterdir()) == []


def test_bad_destination(tmp_path):
    with pytest.raises(InputError, match="does not exist"):
        write_wav(tmp_path / "missing" / "x.wav", np.zeros(10, dtype=np.float32))
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", np.zeros(10, dtype=np.float32), subtype="mp3")
    with pytest.raises(ValueError):
        write_wav(tmp_path / "x.wav", np.zeros((10, 2), dtype=np.float32))
    assert list(tmp_path.iterdir()) == []


def test_output_file_permissions_follow_umask(tmp_path):
    import os

    path = write_wav(tmp_path / "p.wav", np.zeros(4, dtype=np.float32))
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_engine_and_wav_writing_need_no_soundfile(tmp_path):
    # GPU machines and servers may lack soundfile (gpu_check runs so): the engine, the sample
    # rate and every WAV we write (file or bytes) are ours; only reading audio needs it.
    import subprocess
    import sys

    code = ("import sys; sys.modules['soundfile'] = None\n"
            "from qwen3tts_cli import engine\nfrom qwen3tts_cli.bench import speed\nfrom qwen3tts_cli.io import audio\n"
            "print(audio.SAMPLE_RATE, audio.pcm16([0.5]).hex())\n"
            "print(audio.wav_bytes([0.5])[-2:].hex())\n"
            f"audio.write_wav({str(tmp_path / 'x.wav')!r}, [0.5, -0.5], subtype='float32')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["24000 0040", "0040"]
    data, rate = sf.read(tmp_path / "x.wav", dtype="float32")
    assert rate == 24000 and data.tolist() == [0.5, -0.5] and sf.info(tmp_path / "x.wav").subtype == "FLOAT"


def test_encoded_formats_round_trip():
    import io

    import soundfile as sf

    from qwen3tts_cli.io.audio import ENCODED, _to_int16
    from qwen3tts_cli.io.encode import encode_audio

    t = np.arange(24000) / 24000
    x = (0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1500 * t)).astype(np.float32)
    x[100] = 3.0  # clipped, as in a WAV
    for suffix, fmt in ENCODED.items():
        data = encode_audio(x, fmt)
        y, sr = sf.read(io.BytesIO(data), dtype="float32")
        assert sr == 24000 and y.ndim == 1, suffix
        if suffix == ".flac":
            # Lossless: exactly the 16-bit samples a WAV gets.
            stored, _ = sf.read(io.BytesIO(data), dtype="int16")
            assert np.array_equal(stored, _to_int16(x))
            continue
        # Lossy: the same length within a codec frame, and the same signal.
        assert abs(len(y) - len(x)) <= 2048, (suffix, len(y))
        n = min(len(x), len(y))
        a, b = np.clip(x[2000:n - 2000], -1, 1), y[2000:n - 2000]
        corr = max(np.corrcoef(a[:len(b) - d], b[d:])[0, 1] for d in range(0, 400, 1))
        assert corr > 0.9, (suffix, corr)


def test_write_audio_picks_the_format_by_name(tmp_path):
    import soundfile as sf

    from qwen3tts_cli.io.audio import write_audio

    x = (0.3 * np.sin(np.arange(4800) / 10)).astype(np.float32)
    for name, fmt in (("a.wav", "WAV"), ("a.flac", "FLAC"), ("a.MP3", "MP3"), ("a.ogg", "OGG"), ("a.opus", "OGG")):
        write_audio(tmp_path / name, x)
        assert sf.info(str(tmp_path / name)).format == fmt
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.MP3", "a.flac", "a.ogg", "a.opus", "a.wav"]
