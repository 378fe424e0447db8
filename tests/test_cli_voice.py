"""`voice create` / `voice info`, and synth's clone options (--ref-audio, --ref-text, --xvector-only,
--voice): a saved voice gives the same audio as cloning on the fly; bad input is one line, exit 2,
no file."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from clone_goldens import golden_checkpoint, load_goldens
from typer.testing import CliRunner

from qwen3tts_cli.cli.main import app
from qwen3tts_cli.voice.clone import load_voice

runner = CliRunner()
REF_TEXT = "This is a short sample of my own voice."


@pytest.fixture(scope="module")
def base06(tiny_checkpoint):
    return golden_checkpoint(tiny_checkpoint, "0.6B-Base", "model.safetensors")


@pytest.fixture(scope="module")
def ref_wav(tmp_path_factory):
    """The golden "voice" signal as a 48 kHz stereo file (so the CLI resamples and mixes it)."""
    from qwen3tts_cli.io.resample import resample

    x = resample(load_goldens()[0]["voice"], 24000, 48000)
    path = tmp_path_factory.mktemp("ref") / "ref.wav"
    sf.write(path, np.stack([x, x], 1), 48000, subtype="FLOAT")
    return path


def one_line_error(r, code, words):
    assert r.exit_code == code, r.output
    assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1, r.output
    assert words in r.output, r.output


@pytest.mark.parametrize("mode", ["icl", "xvector"])
def test_voice_create_info_and_synth_reuse(base06, ref_wav, tmp_path, mode):
    clone = ["--ref-text", REF_TEXT] if mode == "icl" else ["--xvector-only"]
    vfile = tmp_path / "v.safetensors"
    r = runner.invoke(app, ["voice", "create", "--ref-audio", str(ref_wav), *clone, "-m", str(base06),
                            "-o", str(vfile), "--device", "cpu", *(["-q"] if mode == "xvector" else [])])
    assert r.exit_code == 0, r.output
    assert (r.stderr == "") == (mode == "xvector") and (mode == "xvector" or "wrote" in r.stderr)
    v = load_voice(vfile)
    assert v.mode == mode and v.model_size == "0b6" and v.hidden_size == 64
    assert v.frames == (51 if mode == "icl" else 0)  # 4.005 s of audio -> ceil(96123 / 1920)

    r = runner.invoke(app, ["voice", "info", str(vfile)])
    assert r.exit_code == 0, r.output
    assert "model: 0.6B-Base (hidden size 64)" in r.output
    assert (f"transcript: {REF_TEXT}" if mode == "icl" else "transcript: (none)") in r.output

    common = ["Nice to meet you.", "-m", str(base06), "--greedy", "--max-frames", "3", "--device", "cpu",
              "--dtype", "float32", "-q"]
    r = runner.invoke(app, ["synth", *common, "--voice", str(vfile), "-o", str(tmp_path / "a.wav")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["synth", *common, "--ref-audio", str(ref_wav), *clone, "-o", str(tmp_path / "b.wav")])
    assert r.exit_code == 0, r.output
    a, b = (tmp_path / "a.wav").read_bytes(), (tmp_path / "b.wav").read_bytes()
    assert a == b and sf.info(tmp_path / "a.wav").frames == 3 * 1920
    assert np.abs(sf.read(tmp_path / "a.wav")[0]).max() > 0.01


def test_voice_errors(base06, ref_wav, tiny_checkpoint, tmp_path):
    short = tmp_path / "short.wav"
    sf.write(short, 0.3 * np.sin(np.arange(12000) / 10), 24000)
    silent = tmp_path / "silent.wav"
    sf.write(silent, np.zeros(48000), 24000)
    out = str(tmp_path / "v.safetensors")
    create = ["voice", "create", "-o", out, "--device", "cpu"]
    cases = [
        ([*create, "--ref-audio", str(ref_wav), "-m", str(base06)], "--ref-text"),
        ([*create, "--ref-audio", str(ref_wav), "--ref-text", "x", "--xvector-only", "-m", str(base06)], "not both"),
        ([*create, "--ref-audio", str(short), "--xvector-only", "-m", str(base06)], "too short"),
        ([*create, "--ref-audio", str(silent), "--xvector-only", "-m", str(base06)], "silent"),
        ([*create, "--ref-audio", str(tmp_path / "none.wav"), "--xvector-only", "-m", str(base06)], "not found"),
        ([*create, "--ref-audio", str(ref_wav), "--xvector-only", "-m", str(tiny_checkpoint("0.6B-CustomVoice"))],
         "needs a Base model"),
        (["voice", "create", "--ref-audio", str(ref_wav), "--xvector-only", "-m", str(base06), "-o",
          str(tmp_path / "no" / "v.safetensors")], "folder does not exist"),
        (["voice", "info", str(ref_wav)], "not a voice file"),
        (["voice", "info", str(tmp_path)], "is a folder, expected a voice file"),
        ([*create, "--ref-audio", str(tmp_path), "--xvector-only", "-m", str(base06)],
         "is a folder, expected an audio file"),
        ([*create, "--ref-audio", str(ref_wav), "--ref-text", "x\udcff", "-m", str(base06)],
         "--ref-text is not UTF-8 text (byte 0xff at character 2)"),
    ]
    for args, words in cases:
        one_line_error(runner.invoke(app, args), 2, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["short.wav", "silent.wav"]


def test_synth_clone_errors(base06, ref_wav, tiny_checkpoint, tmp_path):
    b17 = golden_checkpoint(tiny_checkpoint, "1.7B-Base", "model.safetensors")
    cv = tiny_checkpoint("0.6B-CustomVoice")
    v17 = tmp_path / "v17.safetensors"
    r = runner.invoke(app, ["voice", "create", "--ref-audio", str(ref_wav), "--xvector-only", "-m", str(b17),
                            "-o", str(v17), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    foreign = tmp_path / "foreign.safetensors"
    foreign.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}              ")
    out = tmp_path / "o.wav"
    synth = ["synth", "Hello.", "-o", str(out), "--device", "cpu", "--max-frames", "2"]
    cases = [
        ([*synth, "-m", str(base06)], "Base model speaks in a cloned voice"),
        ([*synth, "-m", str(base06), "--voice", str(v17)], "made for 1.7B-Base"),
        ([*synth, "-m", str(base06), "--voice", str(foreign)], "not a qwen3tts voice file"),
        ([*synth, "-m", str(base06), "--ref-audio", str(ref_wav)], "--ref-text"),
        ([*synth, "-m", str(base06), "--ref-text", "hi"], "go with --ref-audio"),
        ([*synth, "-m", str(base06), "--xvector-only"], "go with --ref-audio"),
        ([*synth, "-m", str(base06), "--ref-audio", str(ref_wav), "--voice", str(v17), "--xvector-only"], "not both"),
        ([*synth, "-m", str(base06), "--ref-audio", str(ref_wav), "--ref-text", "hi", "--xvector-only"], "not both"),
        ([*synth, "-m", str(base06), "--speaker", "ryan"], "no built-in speakers"),
        ([*synth, "-m", str(base06), "--speaker", "ryan", "--voice", str(v17)], "--speaker"),
        ([*synth, "-m", str(cv), "--ref-audio", str(ref_wav), "--xvector-only"], "need a Base model"),
        ([*synth, "-m", str(cv), "--voice", str(v17)], "need a Base model"),
        ([*synth, "-m", str(base06), "--ref-audio", str(tmp_path / "nope.flac"), "--xvector-only"], "not found"),
    ]
    for args, words in cases:
        one_line_error(runner.invoke(app, args), 2, words)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["foreign.safetensors", "v17.safetensors"]
