"""`synth -i lines.txt -d DIR --batch-size B [--resume]`: batched files equal batch-size-1 files."""

import pytest
import soundfile as sf
from typer.testing import CliRunner

from qwen3tts_cli.cli.main import app
from qwen3tts_cli.cli.output import complete_wav as _complete_wav

runner = CliRunner()
LINES = "Hello there, world.\n\nA second, rather longer line of text to speak.\nThird one.\nFour.\n"
NAMES = ["0001.wav", "0003.wav", "0004.wav", "0005.wav"]


pytestmark = pytest.mark.usefixtures("reuse_loaded_models")


@pytest.fixture(scope="module")
def lines(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "lines.txt"
    path.write_text(LINES, encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def ck(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-CustomVoice"))


def run(ck, lines, out, *extra):
    return runner.invoke(app, ["synth", "-i", lines, "-d", str(out), "-m", ck, "--greedy", "--max-frames", "5",
                               "--device", "cpu", "--language", "english", *extra])


@pytest.fixture(scope="module")
def reference(ck, lines, tmp_path_factory):
    """Files written one line at a time (batch size 1)."""
    out = tmp_path_factory.mktemp("b1")
    r = run(ck, lines, out)
    assert r.exit_code == 0, r.output
    return {p.name: p.read_bytes() for p in out.iterdir()}


def test_batched_files_equal_batch_size_1(ck, lines, reference, tmp_path):
    assert sorted(reference) == NAMES
    r = run(ck, lines, tmp_path, "--batch-size", "3")
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == NAMES  # no temp files left
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == reference[name], name
        assert sf.info(str(tmp_path / name)).frames == 5 * 1920
    assert "4 files" in r.stderr and "up to 3 at once" in r.stderr


def test_resume_skips_complete_files_and_redoes_broken_ones(ck, lines, reference, tmp_path, monkeypatch):
    (tmp_path / "0001.wav").write_bytes(reference["0001.wav"])
    (tmp_path / "0003.wav").write_bytes(reference["0003.wav"][:-100])  # truncated: redone
    (tmp_path / "0004.wav").write_bytes(b"not a wav")  # garbage: redone
    assert _complete_wav(tmp_path / "0001.wav")
    assert not _complete_wav(tmp_path / "0003.wav") and not _complete_wav(tmp_path / "0004.wav")
    from qwen3tts_cli.engine.scheduler import Scheduler

    seen = []
    real = Scheduler.submit
    monkeypatch.setattr(Scheduler, "submit", lambda self, request, **kw: seen.append(request.text) or real(self, request, **kw))
    r = run(ck, lines, tmp_path, "--batch-size", "2", "--resume")
    assert r.exit_code == 0, r.output
    assert sorted(seen) == sorted(["A second, rather longer line of text to speak.", "Third one.", "Four."])
    assert "1 of 4 files already complete" in r.stderr
    for name in NAMES:
        assert (tmp_path / name).read_bytes() == reference[name], name
    # Everything done: nothing is synthesized.
    seen.clear()
    r = run(ck, lines, tmp_path, "--batch-size", "2", "--resume")
    assert r.exit_code == 0 and seen == []


def test_ctrl_c_keeps_finished_files_only(ck, lines, reference, tmp_path, monkeypatch):
    # Ctrl-C (SIGINT to the process) once the first file is written: the command exits 130 and
    # every file there is complete and right; no temporary file is left.
    import os
    import signal

    import qwen3tts_cli.io.audio as audio

    real = audio.write_wav
    sent = []

    def write_then_interrupt(path, samples, *a, **k):
        real(path, samples, *a, **k)
        if not sent:  # one Ctrl-C
            sent.append(path)
            os.kill(os.getpid(), signal.SIGINT)

    monkeypatch.setattr(audio, "write_wav", write_then_interrupt)
    r = run(ck, lines, tmp_path, "--batch-size", "2", "--max-frames", "40")
    assert r.exit_code == 130
    files = list(tmp_path.iterdir())
    assert 1 <= len(files) < len(NAMES) and all(f.name in NAMES for f in files)


def test_batch_options_need_input(ck):
    r = runner.invoke(app, ["synth", "Hello.", "-m", ck, "--batch-size", "2", "-o", "x.wav"])
    assert r.exit_code == 2 and "--input" in r.stderr
    r = runner.invoke(app, ["synth", "Hello.", "-m", ck, "--resume", "-o", "x.wav"])
    assert r.exit_code == 2
