"""The `synth` command: text -> WAV file, WAV or raw PCM on stdout, playback, numbered files, codes."""

import io
import os
import sys

import numpy as np
import pytest
from conftest import interrupt_generation
import soundfile as sf
import torch
from typer.testing import CliRunner

from qwen3tts_cli.cli import output
from qwen3tts_cli.io.audio import pcm16
from qwen3tts_cli.cli.main import app
from qwen3tts_cli.engine import load_tts

runner = CliRunner()
TEXT = "Hello there, world."


pytestmark = pytest.mark.usefixtures("reuse_loaded_models")


@pytest.fixture(scope="module")
def cv_path(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-CustomVoice"))


@pytest.fixture(scope="module")
def cv(cv_path):
    return load_tts(cv_path)


def synth(*args, input=None):
    return runner.invoke(app, ["synth", *args], input=input)


def expected_pcm(tts, text=TEXT, frames=8, **kw):
    return pcm16(tts.synthesize(text, greedy=True, max_frames=frames, **kw).audio)


def test_list_speakers_offline_from_known_repo_and_folder(tiny_checkpoint):
    r = runner.invoke(app, ["synth", "--list-speakers", "-m", "1.7B-CustomVoice"])
    assert r.exit_code == 0, r.output
    assert "speakers: aiden, dylan, eric, ono_anna, ryan, serena, sohee, uncle_fu, vivian" in r.stdout
    assert "languages: auto, chinese, english" in r.stdout and "dialect" not in r.stdout
    r = runner.invoke(app, ["synth", "--list-speakers", "-m", str(tiny_checkpoint("1.7B-VoiceDesign"))])
    assert r.exit_code == 0 and "(none" in r.stdout


def test_synth_writes_codes_equal_to_engine(tiny_checkpoint, tmp_path):
    ck = tiny_checkpoint("0.6B-CustomVoice")
    out = tmp_path / "codes.npy"
    r = runner.invoke(app, ["synth", "-", "-m", str(ck), "--speaker", "Ryan", "--language", "ENGLISH", "--greedy",
                            "--max-frames", "4", "--save-codes", str(out), "--device", "cpu"],
                      input="Hello there, world.")
    assert r.exit_code == 0, r.output
    codes = np.load(out)
    assert codes.dtype == np.int64 and codes.shape == (4, 16)
    want = load_tts(ck).generate_codes("Hello there, world.", speaker="ryan", language="english", greedy=True,
                                       max_frames=4).codes
    assert torch.equal(torch.from_numpy(codes), want)
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npy"]  # no temp file left


def test_synth_errors_leave_no_file(tiny_checkpoint, tmp_path):
    ck = str(tiny_checkpoint("0.6B-CustomVoice"))
    out = tmp_path / "codes.npy"
    r = runner.invoke(app, ["synth", "Hi.", "-m", ck, "--speaker", "bob", "--save-codes", str(out)])
    assert r.exit_code == 2 and "valid speakers" in r.output
    r = runner.invoke(app, ["synth", "Hi.", "-m", ck, "--speaker", "ryan", "--top-p", "2", "--save-codes", str(out)])
    assert r.exit_code == 2 and "--top-p must be in (0, 1]" in r.output
    r = runner.invoke(app, ["synth", "Hi.", "-m", ck, "--speaker", "ryan", "--save-codes", str(tmp_path / "no" / "x.npy")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["synth", "Hi.", "-m", str(tmp_path / "missing"), "--save-codes", str(out)])
    assert r.exit_code != 0
    assert not out.exists()


# -- audio to files and to stdout -------------------------------------------------------------------

def test_wav_file_with_default_speaker(cv_path, cv, tmp_path):
    out = tmp_path / "hello.wav"
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "8", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert r.stdout_bytes == b""
    assert "speaker: ryan (default" in r.stderr and f"wrote {out}" in r.stderr.replace("\n", "")
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.frames, info.subtype) == (24000, 1, 8 * 1920, "PCM_16")
    pcm, _ = sf.read(out, dtype="int16")
    assert pcm.tobytes() == expected_pcm(cv, speaker="ryan")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hello.wav"]


def test_wav_on_stdout_is_the_only_output(cv_path, cv):
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "8", "-o", "-")
    assert r.exit_code == 0, r.stderr
    data, sr = sf.read(io.BytesIO(r.stdout_bytes), dtype="int16")
    assert sr == 24000 and data.ndim == 1 and data.shape == (8 * 1920,)
    assert len(r.stdout_bytes) == 44 + 2 * 8 * 1920  # a plain WAV header and the samples, nothing else
    assert data.tobytes() == expected_pcm(cv)
    assert "wrote stdout" in r.stderr


def test_raw_is_pcm16_of_the_wav(cv_path):
    wav = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "8", "-o", "-")
    raw = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "8", "--raw")
    assert wav.exit_code == 0 and raw.exit_code == 0, raw.output
    assert len(raw.stdout_bytes) == 2 * 8 * 1920
    samples, _ = sf.read(io.BytesIO(wav.stdout_bytes), dtype="float32")
    # soundfile reads int16 / 32768; pcm16 scales by 32767: go back to the integers first.
    assert raw.stdout_bytes == np.rint(samples * 32768).astype("<i2").tobytes()
    assert raw.stdout_bytes == pcm16(np.rint(samples * 32768) / 32767)


def test_stdin_text_and_quiet(cv_path, cv):
    r = synth("-", "-m", cv_path, "--greedy", "--max-frames", "6", "--raw", "-q", "-s", "serena",
              input=TEXT + "\n")
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    assert r.stdout_bytes == expected_pcm(cv, TEXT + "\n", frames=6, speaker="serena")


def test_audio_and_codes_together(cv_path, cv, tmp_path):
    out, codes = tmp_path / "a.wav", tmp_path / "a.npy"
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "5", "-o", str(out), "--save-codes", str(codes))
    assert r.exit_code == 0, r.output
    got = np.load(codes)
    assert got.shape == (5, 16)
    assert torch.equal(torch.from_numpy(got), cv.generate_codes(TEXT, speaker="ryan", greedy=True, max_frames=5).codes)
    assert sf.info(out).frames == 5 * 1920


def test_input_file_numbered_by_line(cv_path, cv, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("Hello.\n\n  \nSecond line here.\n", encoding="utf-8")
    out = tmp_path / "new" / "dir"
    r = synth("-i", str(lines), "-d", str(out), "-m", cv_path, "--greedy", "--max-frames", "4")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.iterdir()) == ["0001.wav", "0004.wav"]
    pcm, _ = sf.read(out / "0004.wav", dtype="int16")
    assert pcm.tobytes() == expected_pcm(cv, "Second line here.", frames=4)
    r = synth("-i", "-", "-d", str(tmp_path / "stdin"), "-m", cv_path, "--greedy", "--max-frames", "2", "-q",
              input="One.\nTwo.\n")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "stdin").iterdir()) == ["0001.wav", "0002.wav"]


def test_voice_design_instruct(tiny_checkpoint, tmp_path):
    vd = str(tiny_checkpoint("1.7B-VoiceDesign"))
    r = synth(TEXT, "-m", vd, "--max-frames", "3", "-o", str(tmp_path / "v.wav"))
    assert r.exit_code == 2 and "instruction" in r.stderr and not (tmp_path / "v.wav").exists()
    r = synth(TEXT, "-m", vd, "--max-frames", "3", "--seed", "1", "--instruct", "A calm voice.",
              "-o", str(tmp_path / "v.wav"))
    assert r.exit_code == 0, r.output
    assert sf.info(tmp_path / "v.wav").frames == 3 * 1920


# -- no -o: playback or a default file ---------------------------------------------------------------

class FakeDevice:
    def __init__(self, fail=False):
        self.played, self.fail = [], fail

    def play(self, audio, sr):
        if self.fail:
            raise RuntimeError("device vanished")
        self.played.append((np.asarray(audio).copy(), sr))

    def wait(self):
        pass

    def stop(self):
        pass


def test_plays_when_a_device_exists(cv_path, cv, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dev = FakeDevice()
    monkeypatch.setattr(output, "output_device", lambda: dev)
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "4")
    assert r.exit_code == 0, r.output
    assert list(tmp_path.iterdir()) == []
    (audio, sr), = dev.played
    assert sr == 24000
    np.testing.assert_array_equal(audio, cv.synthesize(TEXT, greedy=True, max_frames=4).audio)


def test_default_file_when_no_playback(cv_path, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(output, "output_device", lambda: None)
    (tmp_path / "qwen3tts-output.wav").write_bytes(b"keep me")
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "3")
    assert r.exit_code == 0, r.output
    assert "qwen3tts-output-2.wav" in r.stderr and "no sound device" in r.stderr
    assert (tmp_path / "qwen3tts-output.wav").read_bytes() == b"keep me"
    assert sf.info(tmp_path / "qwen3tts-output-2.wav").frames == 3 * 1920
    # A failing device falls back to the next free name.
    monkeypatch.setattr(output, "output_device", lambda: FakeDevice(fail=True))
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "3")
    assert r.exit_code == 0 and "playback failed" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["qwen3tts-output-2.wav", "qwen3tts-output-3.wav",
                                                          "qwen3tts-output.wav"]


def test_output_device_probe_without_sounddevice(monkeypatch):
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # import raises ImportError
    assert output.output_device() is None


# -- refusals, failures, interruption ----------------------------------------------------------------

def test_refuses_binary_audio_on_a_terminal(cv_path, monkeypatch):
    import pty

    master, slave = pty.openpty()
    try:
        with os.fdopen(os.dup(slave), "w") as tty:
            monkeypatch.setattr(sys, "stdout", tty)
            assert output.stdout_is_terminal()
            monkeypatch.undo()
    finally:
        os.close(master)
        os.close(slave)
    monkeypatch.setattr(output, "stdout_is_terminal", lambda: True)
    for args in (["--raw"], ["-o", "-"]):
        r = synth(TEXT, "-m", cv_path, "--max-frames", "2", *args)
        assert r.exit_code == 2 and r.stdout_bytes == b""
        assert "terminal" in r.stderr and "-o FILE.wav" in r.stderr and len(r.stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("args, message", [
    (["-s", "bob"], "valid speakers"),
    (["--raw", "-o", "x.wav"], "--raw"),
    (["-d", "somewhere"], "--dir"),
    (["-i", "lines.txt"], "either TEXT or --input"),
])
def test_failures_leave_no_file(cv_path, tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out.wav"
    extra = [] if "--raw" in args else ["-o", str(out)]
    r = synth(TEXT, "-m", cv_path, "--max-frames", "2", *extra, *args)
    assert r.exit_code == 2 and message in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and r.stdout_bytes == b""
    assert list(tmp_path.iterdir()) == []


def test_unwritable_destinations(cv_path, tmp_path):
    blocker = tmp_path / "file.txt"
    blocker.write_text("x")
    r = synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(tmp_path / "no" / "x.wav"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    lines = tmp_path / "lines.txt"
    lines.write_text("Hi.\n")
    r = synth("-i", str(lines), "-d", str(blocker / "sub"), "-m", cv_path, "--max-frames", "2")
    assert r.exit_code == 2 and "cannot create folder" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt", "lines.txt"]


def test_ctrl_c_during_generation_exits_130(cv_path, tmp_path, monkeypatch):
    interrupt_generation(monkeypatch, at_frame=3)
    out = tmp_path / "out.wav"
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "8", "-o", str(out), "--save-codes", str(tmp_path / "c.npy"))
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_while_writing_keeps_the_old_file(cv_path, tmp_path, monkeypatch):
    from qwen3tts_cli.io.audio import WavWriter

    real = WavWriter.write

    def write_then_interrupt(self, samples):
        real(self, samples)
        raise KeyboardInterrupt

    monkeypatch.setattr(WavWriter, "write", write_then_interrupt)
    out = tmp_path / "out.wav"
    out.write_bytes(b"old")
    r = synth(TEXT, "-m", cv_path, "--greedy", "--max-frames", "4", "-o", str(out))
    assert r.exit_code == 130
    assert out.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.wav"]


def test_output_format_follows_the_name(cv_path, tmp_path):
    import soundfile as sf

    wav = tmp_path / "a.wav"
    r = runner.invoke(app, ["synth", "Hello there.", "-m", cv_path, "--greedy", "--max-frames", "6", "-o", str(wav),
                            "-q"])
    assert r.exit_code == 0, r.output
    want, _ = sf.read(wav, dtype="int16")
    for name, fmt in (("a.flac", "FLAC"), ("a.mp3", "MP3"), ("a.ogg", "OGG"), ("a.opus", "OGG")):
        out = tmp_path / name
        r = runner.invoke(app, ["synth", "Hello there.", "-m", cv_path, "--greedy", "--max-frames", "6", "-o",
                                str(out), "-q"])
        assert r.exit_code == 0, r.output
        info = sf.info(str(out))
        assert info.format == fmt and info.samplerate == 24000 and info.channels == 1
        if fmt == "FLAC":  # lossless: the WAV's samples
            got, _ = sf.read(out, dtype="int16")
            assert got.tolist() == want.tolist()
    r = runner.invoke(app, ["synth", "Hello.", "-m", cv_path, "-o", str(tmp_path / "a.aac")])
    assert r.exit_code == 2 and "unsupported output format '.aac'" in r.stderr
    assert not (tmp_path / "a.aac").exists()
