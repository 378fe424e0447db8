"""The `encode` command: audio file -> codes.npy that `decode` reads back; one-line errors, no partial file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from qwen3tts_cli.cli.main import app
from qwen3tts_cli.codec.encoder import CodecEncoder
from qwen3tts_cli.io.resample import resample

runner = CliRunner()


@pytest.fixture(scope="module")
def codec_dir(tiny_checkpoint):
    return tiny_checkpoint("Tokenizer-12Hz")


def signal(seconds: float, sr: int, channels: int = 1, seed: int = 0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    rng = np.random.default_rng(seed)
    chans = [0.3 * np.sin(2 * np.pi * (180 + 90 * c) * t) + 0.02 * rng.standard_normal(len(t)) for c in range(channels)]
    return np.stack(chans, 1).astype(np.float32) if channels > 1 else chans[0].astype(np.float32)


@pytest.mark.parametrize("fmt,sr,channels", [("wav", 24000, 1), ("flac", 44100, 2), ("ogg", 16000, 1)])
def test_encode_then_decode(codec_dir, tmp_path, fmt, sr, channels):
    x = signal(1.3, sr, channels)
    src = tmp_path / f"in.{fmt}"
    sf.write(src, x, sr, **({"subtype": "FLOAT"} if fmt == "wav" else {}))
    out = tmp_path / "codes.npy"
    r = runner.invoke(app, ["encode", str(src), "-m", str(codec_dir), "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    codes = np.load(out)
    frames = -(-int(np.ceil(len(x) * 24000 / sr)) // 1920)
    assert codes.dtype == np.int64 and codes.shape == (frames, 16)
    assert codes.min() >= 0 and codes.max() < 2048
    # The same as the engine on the file's samples, mixed to mono and resampled to 24 kHz.
    read, _ = sf.read(src, dtype="float32", always_2d=True)
    expect = CodecEncoder.from_folder(codec_dir).encode(resample(read.mean(1, dtype=np.float32), sr, 24000))
    assert torch.equal(torch.from_numpy(codes), expect)
    wav = tmp_path / "back.wav"
    r = runner.invoke(app, ["decode", str(out), "-m", str(codec_dir), "-o", str(wav), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert sf.info(wav).frames == frames * 1920
    r = runner.invoke(app, ["encode", str(src), "-m", str(codec_dir), "-o", str(tmp_path / "codes.npy"), "-q"])
    assert r.exit_code == 0 and r.output == "" and np.array_equal(np.load(tmp_path / "codes.npy"), codes)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([src.name, "codes.npy", "back.wav"])


def test_encode_accepts_a_model_folder(tiny_checkpoint, tmp_path):
    sf.write(tmp_path / "a.wav", signal(0.5, 24000), 24000)
    r = runner.invoke(app, ["encode", str(tmp_path / "a.wav"), "-m", str(tiny_checkpoint("0.6B-Base")),
                            "-o", str(tmp_path / "c.npy"), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert np.load(tmp_path / "c.npy").shape == (7, 16)


def test_encode_errors(codec_dir, tmp_path):
    good = tmp_path / "a.wav"
    sf.write(good, signal(0.3, 24000), 24000)
    (tmp_path / "junk.wav").write_bytes(b"not audio at all")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 24000)
    cases = [
        (["encode", str(tmp_path / "missing.wav"), "-m", str(codec_dir), "-o", str(tmp_path / "o.npy")],
         2, "audio file not found"),
        (["encode", str(tmp_path / "junk.wav"), "-m", str(codec_dir), "-o", str(tmp_path / "o.npy")],
         2, "cannot read audio"),
        (["encode", str(tmp_path / "empty.wav"), "-m", str(codec_dir), "-o", str(tmp_path / "o.npy")],
         2, "no samples"),
        (["encode", str(good), "-m", str(codec_dir), "-o", str(tmp_path / "nope" / "o.npy")],
         2, "folder does not exist"),
        (["encode", str(good), "-m", str(tmp_path / "no-model"), "-o", str(tmp_path / "o.npy")],
         1, None),
        (["encode", str(good), "-m", str(codec_dir), "-o", str(tmp_path)], 2, "is a folder"),
        (["encode", str(tmp_path), "-m", str(codec_dir), "-o", str(tmp_path / "o.npy")],
         2, "is a folder, expected an audio file"),
    ]
    for args, code, words in cases:
        r = runner.invoke(app, args + ["--device", "cpu"])
        assert r.exit_code == code, (args, r.output)
        assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
        assert "Traceback" not in r.output
        if words:
            assert words in r.output, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav", "empty.wav", "junk.wav"]


def test_encode_failure_leaves_no_partial_file(codec_dir, tmp_path, monkeypatch):
    sf.write(tmp_path / "a.wav", signal(0.3, 24000), 24000)

    def boom(*_a, **_k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "save", boom)
    r = runner.invoke(app, ["encode", str(tmp_path / "a.wav"), "-m", str(codec_dir), "-o", str(tmp_path / "c.npy")])
    assert r.exit_code == 1 and "error:" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.wav"]
