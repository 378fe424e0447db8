"""The `stream` command: raw/WAV stdout, progressive WAV files, live playback (with a stand-in for
sounddevice), standard input line by line, --stats and Ctrl-C."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from conftest import interrupt_generation
import soundfile as sf
from typer.testing import CliRunner

from qwen3tts_cli.io.audio import pcm16
from qwen3tts_cli.cli.main import app
from qwen3tts_cli.engine import load_tts

runner = CliRunner()
TEXT = "Hello there, world."
HOP = 1920


pytestmark = pytest.mark.usefixtures("reuse_loaded_models")


@pytest.fixture(scope="module")
def cv_path(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-CustomVoice"))


@pytest.fixture(scope="module")
def cv(cv_path):
    return load_tts(cv_path)


def stream(*args, input=None):
    return runner.invoke(app, ["stream", *args], input=input)


def pcm(data: bytes) -> np.ndarray:
    return np.frombuffer(data, "<i2").astype(int)


def assert_pcm_close(got: np.ndarray, want: np.ndarray) -> None:
    """Different chunk schedules give float samples within ~3e-6 of each other (fp32 kernels round
    differently for other input lengths): as 16-bit PCM about 1 % of the samples round one step
    apart, none more."""
    assert got.shape == want.shape
    diff = np.abs(got - want)
    assert diff.max() <= 1
    assert (diff != 0).mean() < 0.05


def test_raw_equals_synth_raw(cv_path):
    args = [TEXT, "-m", cv_path, "--greedy", "--max-frames", "12", "--raw"]
    s = stream(*args)
    assert s.exit_code == 0, s.output
    y = runner.invoke(app, ["synth", *args])
    assert y.exit_code == 0, y.output
    assert len(s.stdout_bytes) == 12 * HOP * 2
    # synth decodes with the stream's default schedule: byte for byte the same.
    assert s.stdout_bytes == y.stdout_bytes


def test_wav_on_stdout_has_an_open_ended_header(cv_path):
    r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "5", "-o", "-", "--schedule", "2")
    assert r.exit_code == 0, r.output
    data = r.stdout_bytes
    assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff" and data[36:44] == b"data\xff\xff\xff\xff"
    raw = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "5", "--raw", "--schedule", "2")
    assert data[44:] == raw.stdout_bytes and len(raw.stdout_bytes) == 5 * HOP * 2


def test_file_and_stats(cv_path, cv, tmp_path):
    out = tmp_path / "out.wav"
    r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "9", "-o", str(out), "--stats")
    assert r.exit_code == 0, r.output
    audio, sr = sf.read(out, dtype="int16")
    assert sr == 24000 and len(audio) == 9 * HOP
    assert audio.astype(int).tolist() == pcm(pcm16(cv.synthesize(TEXT, greedy=True, max_frames=9).audio)).tolist()
    assert "TTFA" in r.stderr and "x real time" in r.stderr


def test_schedules_give_the_same_audio(cv_path):
    outs = []
    for schedule in ("1", "2", "4", "8", "3,1,5"):
        r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "10", "--raw", "--schedule", schedule)
        assert r.exit_code == 0, r.output
        outs.append(pcm(r.stdout_bytes))
    for o in outs[1:]:
        assert_pcm_close(o, outs[0])
    assert stream(TEXT, "-m", cv_path, "--raw", "--schedule", "2,x").exit_code == 2


def test_stdin_lines_in_one_voice(cv_path, cv):
    lines = ["First line.", "", "Second line here."]
    r = stream("-", "-m", cv_path, "--seed", "3", "--max-frames", "6", "--raw", "--pause", "0.1",
               input="\n".join(lines) + "\n")
    assert r.exit_code == 0, r.output
    # Each line is its own utterance with the same speaker and seed, 0.1 s of silence between.
    want = np.concatenate([cv.synthesize("First line.", seed=3, max_frames=6).audio, np.zeros(2400, np.float32),
                           cv.synthesize("Second line here.", seed=3, max_frames=6).audio])
    assert pcm(r.stdout_bytes).tolist() == pcm(pcm16(want)).tolist()
    assert "2 lines" in r.stderr
    r = stream("-", "-m", cv_path, "--raw", input="\n  \n")
    assert r.exit_code == 2 and "no text" in r.stderr


def test_a_bad_stdin_line_is_skipped_and_the_stream_goes_on(cv_path, cv, tmp_path):
    out = tmp_path / "out.wav"
    r = runner.invoke(app, ["stream", "-", "-m", cv_path, "--seed", "3", "--max-frames", "4", "--pause", "0",
                            "-o", str(out), "--device", "cpu"], input=b"First line.\n\xff\xfe bad\nThird line.\n")
    # The good lines are spoken (the file is complete), the bad one is named as it passes and again
    # at the end, and the exit status says not everything was spoken.
    assert r.exit_code == 2, r.output
    assert "warning: standard input line 2 is not UTF-8 text (byte 0xff): skipped" in r.stderr
    assert r.stderr.strip().splitlines()[-1] == ("error: 1 line of standard input not spoken (the others were): "
                                                 "line 2 is not UTF-8 text (byte 0xff)")
    want = np.concatenate([cv.synthesize(t, seed=3, max_frames=4).audio for t in ("First line.", "Third line.")])
    got, _ = sf.read(out, dtype="int16")
    assert got.tolist() == pcm(pcm16(want)).tolist()
    r = runner.invoke(app, ["stream", "-", "-m", cv_path, "-o", str(tmp_path / "none.wav"), "-q"], input=b"\xc3(\n")
    assert r.exit_code == 2 and r.stderr == "error: standard input had nothing to speak: line 1 is not UTF-8 text (byte 0xc3)\n"
    assert not (tmp_path / "none.wav").exists()


class FakeOutputStream:
    """Stands in for sounddevice.OutputStream: records what is written, in order."""

    instances: list["FakeOutputStream"] = []

    def __init__(self, samplerate, channels, dtype, device=None):
        self.args = (samplerate, channels, dtype, device)
        self.written: list[np.ndarray] = []
        self.events: list[str] = []
        FakeOutputStream.instances.append(self)

    def start(self):
        self.events.append("start")

    def write(self, data):
        assert data.dtype == np.float32 and data.ndim == 2 and data.shape[1] == 1
        self.written.append(data[:, 0].copy())
        return False

    def stop(self):
        self.events.append("stop")

    def abort(self):
        self.events.append("abort")

    def close(self):
        self.events.append("close")


def fake_sounddevice(monkeypatch, devices_ok=True):
    def query_devices(device=None, kind=None):
        if not devices_ok:
            raise ValueError("No output device matching")
        return {"name": "fake", "max_output_channels": 2}

    FakeOutputStream.instances = []
    module = types.SimpleNamespace(OutputStream=FakeOutputStream, query_devices=query_devices)
    monkeypatch.setitem(sys.modules, "sounddevice", module)


def test_playback_gets_every_sample_in_order(cv_path, monkeypatch):
    fake_sounddevice(monkeypatch)
    r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "11", "--output-device", "3")
    assert r.exit_code == 0, r.output
    (dev,) = FakeOutputStream.instances
    assert dev.args == (24000, 1, "float32", 3)
    assert [len(w) // HOP for w in dev.written] == [1, 2, 4, 4]  # the default schedule 1, 2, 4, 8
    assert dev.events[0] == "start" and "stop" in dev.events and dev.events[-1] == "close"
    raw = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "11", "--raw")
    assert pcm(pcm16(np.concatenate(dev.written))).tolist() == pcm(raw.stdout_bytes).tolist()
    assert "played on the sound device" in r.stderr


def test_no_sound_device_is_one_clear_line(cv_path, monkeypatch):
    fake_sounddevice(monkeypatch, devices_ok=False)
    r = stream(TEXT, "-m", cv_path)
    assert r.exit_code == 1
    assert "no sound device" in r.stderr and "--raw | aplay" in r.stderr and "-o FILE.wav" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # not installed
    r = stream(TEXT, "-m", cv_path)
    assert r.exit_code == 1 and "sounddevice" in r.stderr and "--raw | aplay" in r.stderr
    assert FakeOutputStream.instances == []


def interrupt_at_frame(monkeypatch, n):
    interrupt_generation(monkeypatch, at_frame=n)


def test_ctrl_c_leaves_a_valid_wav_of_what_was_streamed(cv_path, tmp_path, monkeypatch):
    interrupt_at_frame(monkeypatch, 8)
    out = tmp_path / "out.wav"
    r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "20", "-o", str(out))
    assert r.exit_code == 130 and "interrupted" in r.stderr
    # Chunks of 1, 2 and 4 frames were out before frame 8: the file holds exactly them.
    info = sf.info(out)
    assert info.frames == 7 * HOP and info.samplerate == 24000
    assert out.stat().st_size == 44 + 7 * HOP * 2


def test_ctrl_c_closes_the_device(cv_path, monkeypatch):
    fake_sounddevice(monkeypatch)
    interrupt_at_frame(monkeypatch, 5)
    r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "20")
    assert r.exit_code == 130
    (dev,) = FakeOutputStream.instances
    assert dev.events[-2:] == ["abort", "close"] and "stop" not in dev.events


def test_option_errors(cv_path, tmp_path):
    assert stream(TEXT, "-m", cv_path, "--raw", "-o", "x.wav").exit_code == 2
    r = stream("  ", "-m", cv_path, "--raw")
    assert r.exit_code == 2 and "empty" in r.stderr
    r = stream(TEXT, "-m", cv_path, "-o", str(tmp_path / "nope" / "x.wav"))
    assert r.exit_code == 2 and "does not exist" in r.stderr
    r = stream(TEXT, "-m", cv_path, "--raw", "--output-device", "1")
    assert r.exit_code == 2 and "playback" in r.stderr


def test_split_text_equals_synth_byte_for_byte(cv_path):
    # Two chunks: each starts the stream schedule again, exactly as synth decodes them.
    args = ["First sentence is here. And a second one follows it.", "-m", cv_path, "--greedy",
            "--max-frames", "7", "--max-chars", "30", "--pause", "0.05", "--raw"]
    s = stream(*args)
    y = runner.invoke(app, ["synth", *args])
    assert s.exit_code == 0 and y.exit_code == 0, s.output + y.output
    assert len(s.stdout_bytes) == (2 * 7 * HOP + 1200) * 2
    assert s.stdout_bytes == y.stdout_bytes


def test_a_failing_stream_leaves_an_existing_file_as_it_was(cv_path, tmp_path, monkeypatch):
    out = tmp_path / "keep.wav"
    out.write_bytes(b"old content")
    r = stream("-", "-m", cv_path, "-o", str(out), "--device", "cpu", input="\n\n")  # no text at all
    assert r.exit_code == 2 and "no text" in r.stderr and out.read_bytes() == b"old content"
    interrupt_at_frame(monkeypatch, 1)  # Ctrl-C before the first audio
    r = stream(TEXT, "-m", cv_path, "-o", str(out), "--device", "cpu")
    assert r.exit_code == 130 and out.read_bytes() == b"old content"
    r = stream(TEXT, "-m", cv_path, "-o", str(tmp_path / "x.mp3"), "--device", "cpu")
    assert r.exit_code == 2 and "written as it is produced, as WAV" in r.stderr


def test_stream_into_a_fifo(cv_path, tmp_path):
    import os
    import threading

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()), daemon=True)
    reader.start()
    r = stream(TEXT, "-m", cv_path, "--greedy", "--max-frames", "3", "-o", str(fifo), "--device", "cpu")
    reader.join(20)
    assert r.exit_code == 0, r.output
    data = got[0]
    assert data[:4] == b"RIFF" and data[40:44] == b"\xff\xff\xff\xff" and len(data) == 44 + 3 * HOP * 2
    assert os.path.exists(fifo) and not os.path.isfile(fifo)


# -- standard input as one text streamed in (--incremental) --------------------------------------

INC_TEXT = "Hello there, this is the incremental mode. It speaks as the text comes in!"


def fed(tts, text: str, **options) -> np.ndarray:
    """The engine's audio for ``text`` through a text feed (the CLI's --incremental path)."""
    feed = tts.text_feed()
    st = tts.stream(feed, **options)
    feed.push(text)
    feed.close()
    return np.concatenate(list(st))


def test_incremental_equals_the_engine_feed(cv_path, cv, tmp_path):
    codes = tmp_path / "c.npy"
    r = stream("-", "--incremental", "-m", cv_path, "--greedy", "--max-frames", "30", "--raw", "--stats",
               "--save-codes", str(codes), input=INC_TEXT.encode())
    assert r.exit_code == 0, r.output
    want = fed(cv, INC_TEXT, greedy=True, max_frames=30)
    assert r.stdout_bytes == pcm16(want)
    saved = np.load(codes)
    assert saved.dtype == np.int64 and saved.shape == (30, 16)
    feed = cv.text_feed()
    st = cv.stream(feed, greedy=True, max_frames=30)
    feed.push(INC_TEXT)
    feed.close()
    list(st)
    assert saved.tolist() == st.result.codes.tolist()
    assert "stats: first text byte to first audio" in r.stderr and "last text byte to last audio" in r.stderr
    assert "text tokens" in r.stderr


def test_incremental_outputs_and_options(cv_path, cv, tmp_path, monkeypatch):
    # -o FILE, --schedule and seeded sampling, and playback: the same samples everywhere.
    want = pcm(pcm16(fed(cv, INC_TEXT, seed=5, max_frames=12, schedule=(3, 1))))
    out = tmp_path / "o.wav"
    r = stream("-", "--incremental", "-m", cv_path, "--seed", "5", "--max-frames", "12", "--schedule", "3,1",
               "-o", str(out), input=INC_TEXT.encode())
    assert r.exit_code == 0, r.output
    got, sr = sf.read(out, dtype="int16")
    assert sr == 24000 and got.tolist() == want.tolist()
    fake_sounddevice(monkeypatch)
    r = stream("-", "--incremental", "-m", cv_path, "--seed", "5", "--max-frames", "12", "--schedule", "3,1",
               input=INC_TEXT.encode())
    assert r.exit_code == 0, r.output
    played = np.concatenate(FakeOutputStream.instances[-1].written)
    assert pcm(pcm16(played)).tolist() == want.tolist()


def test_incremental_with_a_voice_file(base_path, tmp_path):
    from clone_goldens import load_goldens
    from qwen3tts_cli.voice import save_voice

    tts = load_tts(base_path)
    signals, _ = load_goldens()
    vf = tmp_path / "v.safetensors"
    save_voice(vf, tts.create_voice((signals["voice"], 24000), xvector_only=True))
    r = stream("-", "--incremental", "-m", base_path, "--voice", str(vf), "--greedy", "--max-frames", "8", "--raw",
               input=b"A cloned voice, fed as it comes.")
    assert r.exit_code == 0, r.output
    from qwen3tts_cli.voice import load_voice

    assert r.stdout_bytes == pcm16(fed(tts, "A cloned voice, fed as it comes.", voice=load_voice(vf), greedy=True,
                                       max_frames=8))


@pytest.fixture(scope="module")
def base_path(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-Base"))


def test_incremental_bad_input(cv_path, tmp_path):
    r = stream("-", "--incremental", "-m", cv_path, "--raw", input=b" \n\t ")
    assert r.exit_code == 2 and r.stderr.strip().splitlines()[-1] == "error: standard input had no text"
    out = tmp_path / "o.wav"
    r = stream("-", "--incremental", "-m", cv_path, "--greedy", "--max-frames", "4", "-o", str(out),
               input=b"Good \xff text.")
    assert r.exit_code == 2 and out.exists()
    assert r.stderr.strip().splitlines()[-1] == ("error: standard input held 1 byte that is not UTF-8 (first 0xff): "
                                                 "dropped, the rest was spoken")
    for args, msg in ((["Hello.", "--incremental"], "--incremental reads standard input: give '-' as TEXT"),
                      (["-", "--incremental", "--no-split"], "--no-split does not apply")):
        r = stream(*args, "-m", cv_path, "--raw", input=b"x")
        assert r.exit_code == 2 and msg in r.stderr, r.output


def test_incremental_ctrl_c_leaves_a_valid_wav(cv_path, tmp_path, monkeypatch):
    interrupt_at_frame(monkeypatch, 8)
    out = tmp_path / "out.wav"
    codes = tmp_path / "c.npy"
    r = stream("-", "--incremental", "-m", cv_path, "--greedy", "--max-frames", "20", "-o", str(out),
               "--save-codes", str(codes), input=INC_TEXT.encode())
    assert r.exit_code == 130 and "interrupted" in r.stderr
    assert sf.info(out).frames == 7 * HOP and not codes.exists()


def _cli(*args):
    import subprocess

    return subprocess.Popen([sys.executable, "-m", "qwen3tts_cli.cli", "stream", "-", "--incremental", *args],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _read_some(f, timeout: float) -> bytes:
    import os
    import select

    ready, _, _ = select.select([f], [], [], timeout)
    return os.read(f.fileno(), 1 << 16) if ready else b""


def test_incremental_audio_begins_before_the_input_ends(cv_path, cv):
    # A real pipe: the first third of the text, then wait for audio, then the rest.
    third = len(INC_TEXT) // 3
    p = _cli("-m", cv_path, "--device", "cpu", "--greedy", "--max-frames", "40", "--raw", "-q")
    p.stdin.write(INC_TEXT[:third].encode())
    p.stdin.flush()
    first = _read_some(p.stdout, 120)
    assert first, "no audio while standard input was still open"
    assert p.poll() is None
    p.stdin.write(INC_TEXT[third:].encode())
    p.stdin.close()
    rest = p.stdout.read()
    assert p.wait(120) == 0, p.stderr.read()
    assert first + rest == pcm16(fed(cv, INC_TEXT, greedy=True, max_frames=40))


def test_incremental_broken_pipe_mid_feed(cv_path):
    p = _cli("-m", cv_path, "--device", "cpu", "--greedy", "--max-frames", "400", "--raw", "-q")
    p.stdin.write(INC_TEXT.encode())
    p.stdin.flush()  # standard input stays open: the feed is still going
    assert _read_some(p.stdout, 120)
    p.stdout.close()  # the player goes away mid-stream
    assert p.wait(120) == 1
    err = p.stderr.read().decode()
    assert err.strip() == "error: standard output was closed before all audio was written", err
    p.stdin.close()


def test_save_codes_in_line_mode(cv_path, cv, tmp_path):
    codes = tmp_path / "c.npy"
    r = stream("-", "-m", cv_path, "--seed", "3", "--max-frames", "5", "--raw", "--save-codes", str(codes), "-q",
               input="First line.\nSecond line here.\n")
    assert r.exit_code == 0, r.output
    want = np.concatenate([cv.synthesize(t, seed=3, max_frames=5).codes.numpy()
                           for t in ("First line.", "Second line here.")])
    assert np.load(codes).tolist() == want.tolist()
    r = stream(TEXT, "-m", cv_path, "-o", "-", "--save-codes", "/dev/stdout")
    assert r.exit_code == 2 and "name the same file" in r.stderr


def test_incremental_ctrl_c_while_waiting_for_text(cv_path, tmp_path):
    # A real SIGINT while the stream waits for more text (standard input still open).
    import signal
    import time

    out = tmp_path / "o.wav"
    p = _cli("-m", cv_path, "--device", "cpu", "--greedy", "--max-frames", "40", "-o", str(out), "-q")
    p.stdin.write(b"Hello there, and ")
    p.stdin.flush()
    for _ in range(600):  # until the first audio is in the file
        if out.exists() and out.stat().st_size > 44:
            break
        time.sleep(0.1)
    p.send_signal(signal.SIGINT)
    assert p.wait(60) == 130
    assert p.stderr.read().decode().strip() == "interrupted"
    info = sf.info(out)
    assert info.samplerate == 24000 and info.frames > 0 and out.stat().st_size == 44 + info.frames * 2
    p.stdin.close()
