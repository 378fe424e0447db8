"""The `decode` command: codes.npy -> WAV, one-line errors with exit 2, no partial output."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from qwen3tts_cli.io.audio import pcm16
from qwen3tts_cli.cli.main import app
from qwen3tts_cli.codec import CodecDecoder

runner = CliRunner()


@pytest.fixture(scope="module")
def codec_dir(tiny_checkpoint):
    return tiny_checkpoint("Tokenizer-12Hz")


def _save(path, arr):
    np.save(path, arr)
    return str(path)


def test_decode_writes_the_decoder_output(codec_dir, tmp_path):
    codes = np.random.default_rng(0).integers(0, 2048, size=(9, 16)).astype(np.int32)
    out = tmp_path / "out.wav"
    r = runner.invoke(app, ["decode", _save(tmp_path / "c.npy", codes), "-m", str(codec_dir), "-o", str(out),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert "9 frames, 0.72 s" in r.output
    info = sf.info(str(out))
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (24000, 1, "PCM_16", 9 * 1920)
    data, _ = sf.read(str(out), dtype="int16")
    expect = CodecDecoder.from_folder(codec_dir).decode(codes).numpy()
    assert data.tobytes() == pcm16(expect)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy", "out.wav"]
    quiet = tmp_path / "quiet.wav"
    r = runner.invoke(app, ["decode", str(tmp_path / "c.npy"), "-m", str(codec_dir), "-o", str(quiet), "-q"])
    assert r.exit_code == 0 and r.output == "" and quiet.read_bytes() == out.read_bytes()


def test_decode_accepts_a_model_folder(tiny_checkpoint, tmp_path):
    codes = np.zeros((2, 16), dtype=np.int64)
    out = tmp_path / "m.wav"
    r = runner.invoke(app, ["decode", _save(tmp_path / "c.npy", codes), "-m", str(tiny_checkpoint("0.6B-CustomVoice")),
                            "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert sf.info(str(out)).frames == 2 * 1920


def _npy_bytes(array) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, array)
    return buf.getvalue()


@pytest.mark.parametrize("make,message", [
    (lambda p: _save(p, np.zeros((4, 15), dtype=np.int64)), "shape (frames, 16), got (4, 15)"),
    (lambda p: _save(p, np.full((4, 16), 2048)), "found 2048"),
    (lambda p: _save(p, np.zeros((4, 16), dtype=np.float32)), "integers"),
    (lambda p: _save(p, np.zeros((0, 16), dtype=np.int64)), "no frames"),
    (lambda p: _save(p, np.array([{"a": 1}], dtype=object)), "holds Python objects, not an integer array"),
    (lambda p: (p.write_bytes(b"not numpy at all"), str(p))[1], "not a .npy file (codes come from `qwen3tts encode`"),
    (lambda p: (np.savez(p.with_suffix(".npz"), a=np.zeros((2, 16))), p.with_suffix(".npz").rename(p), str(p))[2],
     "an .npz archive; expected a single .npy array"),
    (lambda p: (p.write_bytes(_npy_bytes(np.zeros((4, 16), dtype=np.int64))[:200]), str(p))[1],
     "damaged .npy file"),
    (lambda p: str(p.with_name("missing.npy")), "file not found"),
    (lambda p: (p.mkdir(), str(p))[1], "is a directory, expected a .npy file of codes"),
])
def test_bad_input_exits_2_without_output(codec_dir, tmp_path, make, message):
    src = make(tmp_path / "c.npy")
    out = tmp_path / "out.wav"
    r = runner.invoke(app, ["decode", src, "-m", str(codec_dir), "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 2, r.output
    assert message in r.output and "allow_pickle" not in r.output
    assert len(r.output.strip().splitlines()) == 1
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_model_or_destination(codec_dir, tmp_path):
    src = _save(tmp_path / "c.npy", np.zeros((2, 16), dtype=np.int64))
    r = runner.invoke(app, ["decode", src, "-m", str(codec_dir), "-o", str(tmp_path / "no" / "x.wav")])
    assert r.exit_code == 2 and "does not exist" in r.output
    r = runner.invoke(app, ["decode", src, "-m", str(tmp_path), "-o", str(tmp_path / "x.wav")])
    assert r.exit_code == 1 and "config.json" in r.output
    assert not (tmp_path / "x.wav").exists()


def test_failure_mid_decode_leaves_old_output(codec_dir, tmp_path, monkeypatch):
    out = tmp_path / "out.wav"
    out.write_bytes(b"previous")

    def failing(self, codes, whole_sequence=False):
        yield torch.zeros(1920)
        raise RuntimeError("out of memory")

    monkeypatch.setattr(CodecDecoder, "iter_decode", failing)
    src = _save(tmp_path / "c.npy", np.zeros((2, 16), dtype=np.int64))
    r = runner.invoke(app, ["decode", src, "-m", str(codec_dir), "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 1 and "out of memory" in r.output
    assert out.read_bytes() == b"previous"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.npy", "out.wav"]
