"""The bad-input matrix of `synth`: each case gives one clear line on stderr, the right exit code,
no partial output file and no traceback. Also the runaway guard's exit status 3."""

import errno
import os
import shutil

import numpy as np
import pytest
from conftest import interrupt_generation
import soundfile as sf
from typer.testing import CliRunner

from qwen3tts_cli.engine import guard
from qwen3tts_cli.io.audio import WavWriter
from qwen3tts_cli.io.files import naming
from qwen3tts_cli.cli.main import app
from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.text.segment import split_text

runner = CliRunner()
TEXT = "Hello there, world."


_loaded_models = {}  # shared by this module's tests (see conftest.reuse_loaded_models)


pytestmark = pytest.mark.usefixtures("reuse_loaded_models")


@pytest.fixture(scope="module")
def cv_path(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-CustomVoice"))


def synth(*args, input=None):
    return runner.invoke(app, ["synth", *args, "--device", "cpu", "-q"], input=input)


def one_error(r, code: int, *needles: str) -> str:
    """Exit ``code``, stderr exactly one 'error:' line naming every needle, no traceback."""
    assert r.exit_code == code, (r.exit_code, r.output, r.exception)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr
    assert "Traceback" not in r.output and "internal error" not in lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("text", ["", "   \n\t  ", "\x00\x07 \x1b"])
def test_empty_or_blank_text(cv_path, tmp_path, text):
    r = synth(text, "-m", cv_path, "-o", str(tmp_path / "out.wav"))
    one_error(r, 2, "text")
    assert files(tmp_path) == []
    r = synth("-", "-m", cv_path, "-o", str(tmp_path / "out.wav"), input=text)
    one_error(r, 2, "text")
    assert files(tmp_path) == []


def test_invalid_utf8_on_stdin(cv_path, tmp_path):
    r = synth("-", "-m", cv_path, "-o", str(tmp_path / "out.wav"), input=b"Hello \xff\xfe world")
    one_error(r, 2, "standard input is not UTF-8", "0xff", "offset 6")
    lines = tmp_path / "lines.txt"
    r = runner.invoke(app, ["synth", "-i", "-", "-d", str(tmp_path / "d"), "-m", cv_path, "-q"], input=b"ok\n\xc3(\n")
    one_error(r, 2, "not UTF-8")
    assert not lines.exists() and not (tmp_path / "d").exists() or files(tmp_path / "d") == []


def test_100k_characters_are_split_and_spoken(cv_path, tmp_path):
    text = "Hello there, this is a rather long sentence. " * 2223  # 100,035 characters
    assert len(text) > 100_000
    chunks = split_text(text, max_chars=20000)
    out = tmp_path / "long.wav"
    r = synth("-", "-m", cv_path, "--max-chars", "20000", "--max-frames", "1", "--greedy", "--pause", "0.1",
              "-o", str(out), input=text)
    assert r.exit_code == 0, r.output
    assert r.stderr == ""
    n = len(chunks)
    assert 5 <= n <= 7
    assert sf.info(out).frames == n * 1920 + (n - 1) * 2400


def test_unknown_speaker_and_language(cv_path, tmp_path):
    out = str(tmp_path / "out.wav")
    one_error(synth(TEXT, "-m", cv_path, "--speaker", "nobody", "-o", out), 2, "unknown speaker 'nobody'", "ryan")
    one_error(synth(TEXT, "-m", cv_path, "--language", "klingon", "-o", out), 2, "unknown language 'klingon'",
              "english")
    assert files(tmp_path) == []


def test_instruct_on_a_model_that_ignores_it_warns(cv_path, tmp_path):
    out = tmp_path / "out.wav"
    r = runner.invoke(app, ["synth", TEXT, "-m", cv_path, "--instruct", "Whisper.", "--max-frames", "2", "-o", str(out),
                            "--device", "cpu"])
    assert r.exit_code == 0, r.output
    warnings = [line for line in r.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ignores instructions" in warnings[0]
    assert sf.info(out).frames == 2 * 1920


def test_voice_design_without_instruct(tiny_checkpoint, tmp_path):
    r = synth(TEXT, "-m", str(tiny_checkpoint("1.7B-VoiceDesign")), "-o", str(tmp_path / "out.wav"))
    one_error(r, 2, "VoiceDesign", "instruction")
    assert files(tmp_path) == []


def test_invalid_utf8_in_arguments(cv_path, base_path, tmp_path):
    # Python keeps an argument's undecodable bytes as U+DC80..U+DCFF: refused as stdin is.
    out = str(tmp_path / "out.wav")
    one_error(synth("Hello \udcff world.", "-m", cv_path, "-o", out), 2,
              "TEXT is not UTF-8 text (byte 0xff at character 7)")
    one_error(synth(TEXT, "-m", cv_path, "--instruct", "Soft \udcc3(", "-o", out), 2,
              "--instruct is not UTF-8 text (byte 0xc3 at character 6)")
    ref = tmp_path / "ref.wav"
    sf.write(ref, tone(2, 24000), 24000)
    one_error(synth(TEXT, "-m", base_path, "--ref-audio", str(ref), "--ref-text", "x\udcfe", "-o", out), 2,
              "--ref-text is not UTF-8 text (byte 0xfe at character 2)")
    assert files(tmp_path) == ["ref.wav"]


def test_model_paths_that_are_not_model_folders(cv_path, tmp_path):
    (tmp_path / "f.wav").write_bytes(b"x")
    one_error(synth(TEXT, "-m", str(tmp_path / "f.wav"), "-o", str(tmp_path / "o.wav")), 1,
              "f.wav: is a file, expected a model folder")
    one_error(synth(TEXT, "-m", os.path.join(cv_path, "speech_tokenizer"), "-o", str(tmp_path / "o.wav")), 1,
              "the speech tokenizer's folder: give the model folder above it")


def test_missing_model_folder(tmp_path):
    r = synth(TEXT, "-m", str(tmp_path / "no-such-model"), "-o", str(tmp_path / "out.wav"))
    assert r.exit_code in (1, 2)
    one_error(r, r.exit_code, "no-such-model")
    assert files(tmp_path) == []


def broken_copy(cv_path, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(cv_path, folder)
    out = tmp_path / "out"
    out.mkdir()
    return folder, out


@pytest.mark.parametrize("missing", ["model.safetensors", "config.json", "vocab.json",
                                     "speech_tokenizer/model.safetensors"])
def test_a_missing_file_in_the_model_folder(cv_path, tmp_path, missing):
    folder, out = broken_copy(cv_path, tmp_path)
    (folder / missing).unlink()
    r = synth(TEXT, "-m", str(folder), "--max-frames", "2", "-o", str(out / "out.wav"))
    one_error(r, 1, missing.split("/")[-1])
    assert files(out) == []


def test_a_model_folder_without_its_codec(cv_path, tmp_path, monkeypatch):
    folder, out = broken_copy(cv_path, tmp_path)
    shutil.rmtree(folder / "speech_tokenizer")
    generated = interrupt_generation(monkeypatch, at_frame=10**9)  # records any generation
    one_error(synth(TEXT, "-m", str(folder), "--max-frames", "2", "-o", str(out / "out.wav")), 1,
              f"{folder}: speech_tokenizer/ is missing")
    assert generated == [] and files(out) == []  # said before any generation


def test_truncated_safetensors(cv_path, tmp_path):
    folder, out = broken_copy(cv_path, tmp_path)
    weights = folder / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[:len(data) // 2])
    r = synth(TEXT, "-m", str(folder), "--max-frames", "2", "-o", str(out / "out.wav"))
    one_error(r, 1, "model.safetensors")
    assert files(out) == []


@pytest.mark.parametrize("content", ["{not json", "[]", '{"talker_config": 3}'])
def test_malformed_config_json(cv_path, tmp_path, content):
    folder, out = broken_copy(cv_path, tmp_path)
    (folder / "config.json").write_text(content)
    r = synth(TEXT, "-m", str(folder), "--max-frames", "2", "-o", str(out / "out.wav"))
    one_error(r, 1, "config.json")
    assert files(out) == []


def test_output_folder_not_writable(cv_path, tmp_path, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: False if str(p) == str(locked) else real(p, mode))
    one_error(synth(TEXT, "-m", cv_path, "-o", str(locked / "out.wav")), 2, "not writable")
    monkeypatch.undo()

    # Found only when writing (e.g. a permission change meanwhile): still one line, no file.
    import tempfile

    def refuse(*a, **k):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    one_error(synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(locked / "out.wav")), 2,
              "out.wav", "Permission denied")
    assert files(locked) == []


def test_disk_full_leaves_no_file(cv_path, tmp_path, monkeypatch):
    def full(self, data):
        with naming(self.path):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(WavWriter, "_put", full)
    out = tmp_path / "out.wav"
    one_error(synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(out)), 1,
              str(out), "No space left on device")
    assert files(tmp_path) == []
    old = b"old content"
    out.write_bytes(old)
    one_error(synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(out)), 1, "No space left")
    assert files(tmp_path) == ["out.wav"] and out.read_bytes() == old


def test_ctrl_c_during_a_split_synthesis(cv_path, tmp_path, monkeypatch):
    calls = interrupt_generation(monkeypatch, at_frame=2, in_call=2)  # inside the second chunk
    out = tmp_path / "out.wav"
    r = synth("First sentence is here. Second sentence is here.", "-m", cv_path, "--max-chars", "25",
              "--max-frames", "3", "-o", str(out), "--save-codes", str(tmp_path / "c.npy"))
    assert r.exit_code == 130 and r.stderr.strip() == "interrupted" and len(calls) == 2
    assert files(tmp_path) == []


# -- the runaway guard -------------------------------------------------------------------------

def test_guard_trip_keeps_audio_warns_and_exits_3(cv_path, tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "DEFAULT_SETTINGS", guard.GuardSettings(floor_frames=3, frames_per_unit=0.0))
    out = tmp_path / "out.wav"
    codes = tmp_path / "codes.npy"
    args = ["synth", TEXT, "-m", cv_path, "--max-frames", "6", "--greedy", "-o", str(out), "--save-codes",
            str(codes), "--device", "cpu"]
    r = runner.invoke(app, args)
    assert r.exit_code == 3, r.output
    lines = r.stderr.splitlines()
    assert any(line.startswith("warning: generation ran past its frame budget") for line in lines)
    assert lines[-1].startswith("error: the utterance was cut short by the runaway guard")
    assert "--allow-truncation" in lines[-1]
    # The audio so far is written: 3 frames, the same as an unguarded 3-frame run.
    assert sf.info(out).frames == 3 * 1920
    assert np.load(codes).shape == (3, 16)
    want = load_tts(cv_path).synthesize(TEXT, greedy=True, max_frames=3, guard=False)
    pcm, _ = sf.read(out, dtype="int16")
    assert np.array_equal(np.load(codes), want.codes.numpy())
    assert np.abs(pcm.astype(np.float32) / 32767 - want.audio).max() <= 1 / 32767

    r = runner.invoke(app, args + ["--allow-truncation"])
    assert r.exit_code == 0, r.output
    assert "warning: generation ran past its frame budget" in r.stderr and "error" not in r.stderr


def test_guard_exit_3_for_numbered_files_counts_them(cv_path, tmp_path, monkeypatch):
    monkeypatch.setattr(guard, "DEFAULT_SETTINGS", guard.GuardSettings(floor_frames=3, frames_per_unit=0.0))
    lines = tmp_path / "lines.txt"
    lines.write_text("Hi.\nHello there.\n")
    r = runner.invoke(app, ["synth", "-i", str(lines), "-d", str(tmp_path / "out"), "-m", cv_path,
                            "--greedy", "--max-frames", "3", "--device", "cpu"])
    assert r.exit_code == 0, r.output  # 3 frames fit the budget of 3: no trip
    r = runner.invoke(app, ["synth", "-i", str(lines), "-d", str(tmp_path / "out"), "-m", cv_path,
                            "--greedy", "--max-frames", "5", "--device", "cpu"])
    assert r.exit_code == 3
    assert "0001.wav: generation ran past" in r.stderr and "0002.wav: generation ran past" in r.stderr
    assert "2 of 2 utterances were cut short" in r.stderr.splitlines()[-1]
    assert files(tmp_path / "out") == ["0001.wav", "0002.wav"]
    assert sf.info(tmp_path / "out" / "0001.wav").frames == 3 * 1920


def test_split_options(cv_path, tmp_path):
    """--max-chars/--pause shape the output; --no-split speaks the text in one pass."""
    text = "First sentence is here. Second sentence is here."
    out = tmp_path / "out.wav"
    r = synth(text, "-m", cv_path, "--max-chars", "25", "--pause", "0.5", "--max-frames", "2", "--greedy",
              "-o", str(out))
    assert r.exit_code == 0, r.output
    assert sf.info(out).frames == 2 * 2 * 1920 + 12000
    r = synth(text, "-m", cv_path, "--max-chars", "25", "--no-split", "--max-frames", "2", "--greedy", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert sf.info(out).frames == 2 * 1920
    r = synth(text, "-m", cv_path, "--max-chars", "5", "-o", str(out))
    assert r.exit_code == 2 and "--max-chars" in r.stderr
    r = synth(text, "-m", cv_path, "--pause", "-1", "-o", str(out))
    assert r.exit_code == 2 and "--pause" in r.stderr


# -- voice-clone inputs (Base models) -----------------------------------------------------------------

@pytest.fixture(scope="module")
def base_path(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-Base"))


def tone(seconds, rate, channels=1):
    t = np.arange(int(seconds * rate)) / rate
    x = 0.3 * np.sin(2 * np.pi * 220 * t) * (1 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return np.stack([x] * channels, axis=1) if channels > 1 else x


def test_clone_options_on_a_model_without_cloning(cv_path, tmp_path):
    ref = tmp_path / "ref.wav"
    sf.write(ref, tone(2, 24000), 24000)
    r = synth(TEXT, "-m", cv_path, "--ref-audio", str(ref), "--xvector-only", "-o", str(tmp_path / "out.wav"))
    one_error(r, 2, "Base model")
    assert files(tmp_path) == ["ref.wav"]


@pytest.mark.parametrize("kind", ["unreadable", "empty", "silent", "missing", "folder"])
def test_unusable_reference_audio(base_path, tmp_path, kind):
    ref = tmp_path / "ref.wav"
    if kind == "folder":
        ref.mkdir()
        one_error(synth(TEXT, "-m", base_path, "--ref-audio", str(ref), "--xvector-only", "-o",
                        str(tmp_path / "out.wav")), 2, f"{ref}: is a folder, expected an audio file")
        return
    if kind == "unreadable":
        ref.write_bytes(b"RIFF\x00\x00garbage, not audio at all")
    elif kind == "empty":
        sf.write(ref, np.zeros(0), 24000)
    elif kind == "silent":
        sf.write(ref, np.zeros(48000), 24000)
    r = synth(TEXT, "-m", base_path, "--ref-audio", str(ref), "--xvector-only", "-o", str(tmp_path / "out.wav"))
    one_error(r, 2, "ref.wav")
    assert files(tmp_path) == ([] if kind == "missing" else ["ref.wav"])


@pytest.mark.parametrize("rate, channels", [(24000, 2), (8000, 1), (96000, 1)])
def test_stereo_and_unusual_rates_work(base_path, tmp_path, rate, channels):
    ref = tmp_path / "ref.wav"
    sf.write(ref, tone(2, rate, channels), rate)
    out = tmp_path / "out.wav"
    r = synth(TEXT, "-m", base_path, "--ref-audio", str(ref), "--xvector-only", "--max-frames", "2", "-o", str(out))
    assert r.exit_code == 0, r.output
    assert sf.info(out).frames == 2 * 1920


# -- output paths ------------------------------------------------------------------------------------

def test_output_names_and_folders_are_checked_first(cv_path, tmp_path):
    one_error(synth(TEXT, "-m", cv_path, "-o", str(tmp_path / "x.aac")), 2, "unsupported output format '.aac'")
    one_error(synth(TEXT, "-m", cv_path, "-o", str(tmp_path)), 2, "is a folder")
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_and_a_fifo_are_written_into(cv_path, tmp_path):
    import threading

    target = tmp_path / "real.wav"
    target.write_bytes(b"old")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    assert synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(link)).exit_code == 0
    assert link.is_symlink() and sf.info(str(target)).frames == 2 * 1920
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    assert synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(fifo)).exit_code == 0
    reader.join(20)
    assert got[0][:4] == b"RIFF" and len(got[0]) == 44 + 2 * 1920 * 2 and not fifo.is_file()


@pytest.mark.skipif(os.geteuid() != 0, reason="making a device node needs root")
def test_a_device_stays_a_device(cv_path, tmp_path):
    import stat

    null = tmp_path / "mynull"
    os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # the safe stand-in for /dev/null
    for args in (["synth", TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(null), "--save-codes", str(null)],
                 ["stream", TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(null)]):
        r = runner.invoke(app, [*args, "--device", "cpu", "-q"])
        assert r.exit_code == 0, r.output
        assert stat.S_ISCHR(os.stat(null).st_mode)


# -- standard output that cannot take the audio: the real binary, real file descriptors ----------

def real_cli(shell_args: str):
    """``python -m qwen3tts_cli.cli`` under bash, so redirections (``>&-``, ``<(...)``) are real."""
    import shlex
    import subprocess
    import sys

    cmd = f"{shlex.quote(sys.executable)} -m qwen3tts_cli.cli {shell_args}"
    return subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, timeout=300)


def one_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


@pytest.mark.parametrize("command", ["synth", "stream"])
def test_closed_stdout_is_refused_before_loading(cv_path, command):
    # No model folder exists here: the refusal must come before anything loads.
    r = real_cli(f"{command} 'Hello.' -m /nonexistent --raw -q >&-")
    assert r.returncode == 1 and "standard output is closed" in one_line(r.stderr)


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("args", ["synth 'Hello.' --raw", "synth 'Hello.' -o -", "stream 'Hello.' --raw"])
def test_stdout_on_a_full_disk(cv_path, args):
    r = real_cli(f"{args} -m {cv_path} --device cpu --max-frames 2 -q > /dev/full")
    assert r.returncode == 1 and one_line(r.stderr) == "error: standard output: No space left on device"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_files_on_a_full_disk(cv_path, base_path, tmp_path):
    # /dev/full is a device: written through (never replaced), and every write fails with ENOSPC.
    ref = tmp_path / "ref.wav"
    sf.write(ref, tone(2, 44100), 44100)
    codes = tmp_path / "c.npy"
    np.save(codes, np.zeros((3, 16), dtype=np.int64))
    for args in (f"synth 'Hello.' -m {cv_path} -o /dev/full", f"stream 'Hello.' -m {cv_path} -o /dev/full",
                 f"synth 'Hello.' -m {cv_path} -o /dev/null --save-codes /dev/full",
                 f"encode {ref} -m {cv_path} -o /dev/full", f"decode {codes} -m {cv_path} -o /dev/full",
                 f"voice create --ref-audio {ref} --xvector-only -m {base_path} -o /dev/full"):
        r = real_cli(f"{args} --device cpu -q" + (" --max-frames 2" if "Hello" in args else ""))
        assert r.returncode == 1 and one_line(r.stderr) == "error: /dev/full: No space left on device", args
    r = real_cli("--help > /dev/full")
    assert r.returncode == 1 and "standard output failed (No space left on device)" in one_line(r.stderr)


def test_reader_leaving_early(cv_path):
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-m", "qwen3tts_cli.cli", "stream", "Hello there, world.", "-m", cv_path,
                          "--device", "cpu", "--max-frames", "4", "--raw", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    p.stdout.close()  # the reader is gone before the first byte
    assert p.wait(300) == 1
    assert one_line(p.stderr.read()) == "error: standard output was closed before all audio was written"




@pytest.fixture
def full_disk(tmp_path):
    """A real full filesystem (a 64 KiB tmpfs) holding old.wav and 4 KiB of room: enough for a
    header, not for audio. Needs root and the right to mount."""
    import subprocess

    where = tmp_path / "full"
    where.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(where)],
                                           capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root and mount rights")
    try:
        (where / "old.wav").write_bytes(b"old")
        with open(where / "filler", "wb", buffering=0) as f:
            try:
                while True:
                    f.write(b"\0" * 4096)
            except OSError:
                pass
        os.truncate(where / "filler", os.path.getsize(where / "filler") - 4096)
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


@pytest.mark.parametrize("args, target", [
    (["synth", TEXT, "-o", "out.wav"], "out.wav"),
    (["synth", TEXT, "-o", "old.wav"], "old.wav"),
    (["synth", TEXT, "-o", "/dev/null", "--save-codes", "c.npy"], "c.npy"),
    (["stream", TEXT, "-o", "s.wav"], "s.wav"),
])
def test_a_real_full_disk(cv_path, full_disk, args, target):
    args = [str(full_disk / a) if a.endswith((".wav", ".npy")) and "/" not in a else a for a in args]
    r = runner.invoke(app, [*args, "-m", cv_path, "--max-frames", "40", "--device", "cpu", "-q"])
    one_error(r, 1, str(full_disk / target), "No space left on device")
    assert (full_disk / "old.wav").read_bytes() == b"old"
    left = files(full_disk)
    if target == "s.wav":  # progressive by design: what fit, as a valid WAV (header sizes patched)
        left.remove("s.wav")
        assert sf.info(full_disk / "s.wav").frames % 1920 == 0
    assert left == ["filler", "old.wav"]


# -- found by review: each of these was a traceback, a clobbered file or a framed box -------------

def test_parser_errors_are_one_line(cv_path, tmp_path):
    out = str(tmp_path / "out.wav")
    one_error(synth(TEXT, "-m", cv_path, "--max-frames", "0", "-o", out), 2, "'--max-frames'", "synth --help")
    one_error(synth(TEXT, "-m", cv_path, "--bogus", "-o", out), 2, "No such option: --bogus")
    one_error(synth(TEXT, "-m", cv_path, "--seed", "abc", "-o", out), 2, "'--seed'")
    one_error(runner.invoke(app, ["nosuch"]), 2, "No such command 'nosuch'")
    one_error(synth(TEXT, "-m", cv_path, "--pause", "inf", "-o", out), 2, "--pause must be from 0 to 60 seconds")
    assert files(tmp_path) == []


def test_codes_and_audio_never_share_a_file_and_fail_together(cv_path, tmp_path):
    old = tmp_path / "old.wav"
    old.write_bytes(b"old")
    one_error(synth(TEXT, "-m", cv_path, "-o", str(old), "--save-codes", str(old)), 2, "name the same file")
    one_error(synth(TEXT, "-m", cv_path, "--save-codes", "-"), 2, "cannot go to standard output")
    if os.path.exists("/dev/full"):  # the codes fail: the audio is not moved into place either
        one_error(synth(TEXT, "-m", cv_path, "--max-frames", "2", "-o", str(old), "--save-codes", "/dev/full"),
                  1, "/dev/full: No space left on device")
    assert files(tmp_path) == ["old.wav"] and old.read_bytes() == b"old"


@pytest.mark.parametrize("args", ["voice info {voice}", "synth --list-speakers -m {cv}", "verify {cv} --json"])
def test_closed_stdout_for_text_results(cv_path, tmp_path, args):
    r = real_cli(args.format(cv=cv_path, voice=tmp_path / "v.safetensors") + " >&-")
    assert r.returncode in (1, 2) and "Traceback" not in r.stderr and "internal error" not in r.stderr
    if "voice" not in args:  # (voice info first says the file is missing)
        assert r.returncode == 1 and "standard output is closed" in one_line(r.stderr)


@pytest.mark.parametrize("args", ["synth - -o {out}", "synth -i - -d {dir}", "stream - -o {out}"])
def test_closed_stdin_is_refused_before_loading(tmp_path, args):
    r = real_cli(args.format(out=tmp_path / "o.wav", dir=tmp_path / "d") + " -m /nonexistent -q <&-")
    assert r.returncode == 2 and "standard input is closed" in one_line(r.stderr)


def test_dev_stdout_is_standard_output(cv_path, tmp_path):
    log = tmp_path / "log.bin"
    log.write_bytes(b"PREFIX")
    r = real_cli(f"synth 'Hello.' -m {cv_path} --device cpu --max-frames 2 -q -o /dev/stdout >> {log}")
    assert r.returncode == 0, r.stderr
    data = log.read_bytes()  # appended through the descriptor, not a new file over the old one
    assert data[:10] == b"PREFIXRIFF" and len(data) == 6 + 44 + 2 * 2 * 1920
    r = real_cli(f"synth 'Hello.' -m {cv_path} -o /dev/stdout -q >&-")
    assert r.returncode == 1 and "standard output is closed" in one_line(r.stderr)


def test_text_of_bad_bytes_only_and_lines_of_control_characters(cv_path, tmp_path):
    one_error(synth("\udcff\udcfe", "-m", cv_path, "-o", str(tmp_path / "u.wav")), 2,
              "TEXT is not UTF-8 text (byte 0xff at character 1)")
    lines = tmp_path / "lines.txt"
    lines.write_text("\x01\nSecond line.\n", encoding="utf-8")  # line 1 has nothing to speak: skipped
    r = runner.invoke(app, ["synth", "-i", str(lines), "-d", str(tmp_path / "out"), "-m", cv_path,
                            "--max-frames", "2", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert files(tmp_path / "out") == ["0002.wav"]


def test_numbered_outputs_are_checked_before_loading(cv_path, tmp_path):
    lines = tmp_path / "lines.txt"
    lines.write_text("One.\nTwo.\n", encoding="utf-8")
    (tmp_path / "out" / "0002.wav").mkdir(parents=True)
    args = ["synth", "-i", str(lines), "-m", cv_path, "--max-frames", "2", "--device", "cpu", "-q"]
    one_error(runner.invoke(app, [*args, "-d", str(tmp_path / "out")]), 2, "0002.wav: is a folder")
    assert files(tmp_path / "out") == ["0002.wav"]  # 0001.wav was not written first
    one_error(runner.invoke(app, [*args, "-d", str(lines)]), 2, "is a file; --dir names a folder")


def test_pipes_as_inputs(cv_path, base_path, tmp_path):
    # Process substitution gives a pipe: read once, whole, as a file would be.
    ref = tmp_path / "ref.wav"
    sf.write(ref, tone(2, 44100), 44100)
    r = real_cli(f"encode <(cat {ref}) -m {base_path} --device cpu -q -o {tmp_path / 'c.npy'}")
    assert r.returncode == 0, r.stderr
    r = real_cli(f"decode <(cat {tmp_path / 'c.npy'}) -m {base_path} --device cpu -q -o {tmp_path / 'd.wav'}")
    assert r.returncode == 0, r.stderr
    assert sf.info(tmp_path / "d.wav").frames == np.load(tmp_path / "c.npy").shape[0] * 1920
    r = real_cli(f"voice info <(cat {ref})")
    assert r.returncode == 2 and "not a regular file" in one_line(r.stderr)
    one_error(synth(TEXT, "-m", base_path, "--ref-audio", "/dev/null", "--xvector-only", "-o",
                    str(tmp_path / "o.wav")), 2, "/dev/null: cannot read audio (Format not recognised.)")

