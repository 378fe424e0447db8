"""Where audio goes and where text comes from: files (atomic or progressive WAV, .npy codes),
stdout (WAV or raw PCM), the sound device, standard input; and the live progress line.

Only audio goes to stdout; everything a person reads goes to stderr (``app.err``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

import typer
from rich.markup import escape

from ..errors import InputError, Qwen3TTSError, reading
from .app import err, fail, stdout_to_devnull

RAW_FORMAT = "stdout (raw s16le, 24000 Hz, mono)"
SOUND_DEVICE = "the sound device"
PLAY_HINT = ("use -o FILE.wav, or pipe raw audio to a player: "
             "qwen3tts stream \"...\" --raw | aplay -r 24000 -f S16_LE -c 1 -t raw")


def say_to_stderr(quiet: bool):
    """The function commands print their notes with: nothing when ``quiet``."""
    return (lambda *a, **k: None) if quiet else (lambda msg: err.print(msg, soft_wrap=True))


# -- text in -----------------------------------------------------------------------------------

def check_stdin() -> None:
    """Standard input is open (``<&-`` leaves none): said before any work, not when it is read."""
    if sys.stdin is None:
        raise InputError("standard input is closed: give the text as an argument, or pipe it in")


def read_stdin() -> str:
    check_stdin()
    # Bytes, decoded strictly: a text stream may be set to replace or smuggle invalid bytes
    # (surrogateescape under a C locale) instead of saying the input is not text.
    stream = getattr(sys.stdin, "buffer", None)
    data = stream.read() if stream is not None else sys.stdin.read()
    if isinstance(data, str):
        return data
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"standard input is not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start})") from None


def stdin_lines(skip):
    """Each line of standard input with something to speak, as soon as it arrives. A line that is
    not UTF-8 is not spoken: ``skip(note)`` is told, and the next line is read."""
    from ..text.segment import normalize_text

    check_stdin()
    source = getattr(sys.stdin, "buffer", sys.stdin)
    for n, line in enumerate(iter(source.readline, b"" if source is not sys.stdin else ""), 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                skip(f"line {n} is not UTF-8 text (byte 0x{line[e.start]:02x})")
                continue
        if normalize_text(line):
            yield line.strip()


def read_lines(source: str) -> list[tuple[int, str]]:
    """(line number, text) of every non-empty line of FILE or '-' (stdin)."""
    if source == "-":
        content = read_stdin()
    else:
        try:
            with reading(source, InputError):
                content = Path(source).read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{source}: not UTF-8 text") from None
    from ..text.segment import normalize_text

    # A line with nothing to speak (blank, or control characters only) is skipped like an empty one.
    lines = [(n, line.strip()) for n, line in enumerate(content.splitlines(), 1) if normalize_text(line)]
    if not lines:
        raise InputError(f"{source}: no text (every line is empty)")
    return lines


def check_text(text: str) -> None:
    """A text with something to speak (before any weights load)."""
    from ..text.segment import check_unicode, normalize_text

    check_unicode(text, "text")  # bytes that are not UTF-8 are said as such, even when nothing else is there
    if not normalize_text(text):
        raise InputError("text is empty" if not text.strip() else "text has nothing to speak (only control characters)")


# -- files and stdout --------------------------------------------------------------------------

def stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def check_stdout() -> None:
    """Standard output can take binary audio: open (``>&-`` leaves none) and not a terminal."""
    if sys.stdout is None:
        raise Qwen3TTSError("standard output is closed: use -o FILE.wav, or give the command somewhere to write")
    if stdout_is_terminal():
        raise InputError("refusing to write binary audio to a terminal: use -o FILE.wav, or pipe it "
                         "(e.g. --raw | aplay -r 24000 -f S16_LE -c 1 -t raw)")


def print_stdout(text: str) -> None:
    """A command's result as text on stdout (a report, a list, a folder): the failures of
    ``write_stdout``, and a closed stdout said as such."""
    if sys.stdout is None:
        raise Qwen3TTSError("standard output is closed: nowhere to print the result")
    write_stdout(text.encode("utf-8", "surrogateescape"), what="the output")


def write_stdout(data: bytes, what: str = "all audio") -> None:
    sys.stdout.flush()
    out = typer.get_binary_stream("stdout")
    view = memoryview(data)
    try:
        while view:  # an unbuffered stream may take only part of it (a pipe whose reader left)
            view = view[out.write(view) or 0:]
        out.flush()
    except BrokenPipeError:  # the reader went away
        stdout_to_devnull()
        fail(f"standard output was closed before {what} was written", 1)
    except OSError as e:  # stdout redirected to a file on a full disk, an I/O error
        stdout_to_devnull()
        raise OSError(e.errno, e.strerror or str(e), "standard output") from None


def check_output(path: Path | None, audio: bool = True, encoded: bool = False) -> None:
    """An output checked before any work: its folder exists and is writable, it is not a folder,
    and (``audio``) its name asks for a format we write there (``encoded``: FLAC, MP3, Ogg too)."""
    from ..io.audio import check_audio_name
    from ..io.files import check_output as check_file

    if path is None:
        return
    if str(path) == "-":
        raise InputError("this output cannot go to standard output ('-'): give it a file name")
    if audio:
        check_audio_name(path, encoded)
    check_file(path)


def save_npy(path: Path, codes, pending: contextlib.ExitStack | None = None) -> None:
    """Codec codes as int64 .npy, written atomically (io/files.py), named after its file on failure.
    With ``pending``, the file is written now and renamed into place when that stack closes."""
    import io

    import numpy as np

    from ..io.files import atomic_file

    buf = io.BytesIO()  # numpy writes a real file with tofile(), whose short write has no errno
    np.save(buf, codes.numpy().astype(np.int64))
    with contextlib.ExitStack() as own:
        f = (pending or own).enter_context(atomic_file(path))
        f.write(buf.getbuffer())
        f.flush()  # a full disk is found now, before anything else is moved into place


# What `-o` treats as standard output itself: written through the descriptor we hold (as `-o -`),
# not reopened, which would truncate a file opened for appending (`>> log`) or miss a closed one.
_STDOUT_NAMES = ("/dev/stdout", "/dev/fd/1", "/proc/self/fd/1")


def output_name(name: str | None) -> str | None:
    """``-o`` as given: standard output's own names become '-', an empty name is refused."""
    if name == "":
        raise InputError("-o was given an empty name")
    return "-" if name in _STDOUT_NAMES else name


def same_file(a: Path | str, b: Path | str | None) -> bool:
    """Whether two outputs would overwrite each other: one regular file, or standard output ('-')
    for both. A device such as /dev/null may take both."""
    if b is None:
        return False
    stdout = "-" in (str(a), str(b))
    real = [os.path.realpath("/dev/stdout" if str(p) == "-" else str(p)) for p in (a, b)]
    if real[0] != real[1]:
        return False
    return stdout or not os.path.exists(real[0]) or os.path.isfile(real[0])


def default_output(folder: Path) -> Path:
    """qwen3tts-output.wav, or the first free qwen3tts-output-N.wav: never an existing file."""
    path, n = folder / "qwen3tts-output.wav", 2
    while path.exists():
        path, n = folder / f"qwen3tts-output-{n}.wav", n + 1
    return path


def complete_wav(path: Path) -> bool:
    """True for a readable WAV whose RIFF header accounts for the whole file (not a truncated one)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(12)
        import soundfile as sf

        info = sf.info(str(path))
    except Exception:
        return False
    return (head[:4] == b"RIFF" and head[8:12] == b"WAVE" and int.from_bytes(head[4:8], "little") + 8 == size
            and info.format == "WAV")


# -- whole utterances (synth) --------------------------------------------------------------------

class UtteranceOutput:
    """Where synth puts each finished utterance; ``put`` says where it went (for the summary line).

    kind: "files" (the job's own path), "stdout-wav", "raw", "codes-only", or "play" (falls back to
    a new default file when there is no sound device, or when playback fails)."""

    def __init__(self, kind: str, say):
        self.kind, self.say = kind, say
        self.sd = output_device() if kind == "play" else None
        if kind == "play" and self.sd is None:
            self.kind = "default-file"

    @property
    def decodes(self) -> bool:
        return self.kind != "codes-only"

    def put(self, audio, path: Path | None) -> str | None:
        from ..io.audio import pcm16, wav_bytes, write_audio, write_wav

        if self.kind == "files":
            return str(write_audio(path, audio))  # the format the name asks for
        if self.kind == "stdout-wav":
            write_stdout(wav_bytes(audio))
            return "stdout (WAV)"
        if self.kind == "raw":
            write_stdout(pcm16(audio))
            return RAW_FORMAT
        if self.kind == "play":
            if play(self.sd, audio, self.say):
                return SOUND_DEVICE
            self.kind = "default-file"
        if self.kind == "default-file":
            where = write_wav(default_output(Path(".")), audio)
            reason = "playback failed" if self.sd is not None else "no sound device to play on"
            self.say(f"no -o given and {reason}: writing {escape(str(where))} (use -o FILE.wav to choose the name)")
            return str(where)
        return None


def output_device():
    """The sounddevice module when it can play here; None when it is not installed, PortAudio is
    missing, or there is no output device."""
    try:
        import sounddevice as sd
    except (ImportError, OSError):  # OSError: the PortAudio library itself is missing
        return None
    try:
        sd.query_devices(kind="output")
    except Exception:
        return None
    return sd


def play(sd, audio, say) -> bool:
    """Play and wait; False (after one line) when the device fails, so that the caller saves a file."""
    from ..io.audio import SAMPLE_RATE

    if len(audio) == 0:
        return True
    try:
        sd.play(audio, SAMPLE_RATE)
        sd.wait()
    except KeyboardInterrupt:
        sd.stop()
        raise
    except Exception as e:
        say(f"[yellow]warning:[/] playback failed ({escape(str(e))})")
        return False
    return True


# -- audio as it is made (stream) ----------------------------------------------------------------

def stream_device(device: str | None):
    """sounddevice, checked to have an output device, before any weights load; else one line, exit 1."""
    try:
        import sounddevice as sd
    except ImportError:
        fail(f"live playback needs sounddevice (pip install 'qwen3tts-cli[play]'); or {PLAY_HINT}", 1)
    except OSError:  # the PortAudio library itself is missing
        fail(f"live playback needs the PortAudio library (e.g. apt install libportaudio2); or {PLAY_HINT}", 1)
    try:
        sd.query_devices(int(device) if device is not None and device.isdigit() else device, kind="output")
    except Exception as e:
        what = f"output device {device!r}" if device is not None else "a default output device"
        fail(f"no sound device to play on ({what}: {e}); {PLAY_HINT}", 1)
    return sd


class StreamSink:
    """Where stream's chunks go, as they come: the sound device (through a writer thread, so that
    generation runs ahead of playback), a progressively written WAV, or stdout. A file is opened
    at the first audio (or at the end of a run that made none): a command that fails before then
    leaves an existing file as it was."""

    def __init__(self, sd, device, out_path, raw: bool, to_stdout: bool, rate: int):
        from ..io.audio import wav_header

        self.player = self.file = None
        self.out_path, self.rate = out_path, rate
        if raw:
            self.mode = "raw"
        elif to_stdout:
            self.mode = "stdout-wav"
            write_stdout(wav_header(None, rate))
        elif out_path is not None:
            self.mode = "file"
        else:
            self.mode = "play"
            self.player = Player(sd, device, rate)

    @property
    def where(self) -> str:
        return {"raw": RAW_FORMAT, "stdout-wav": "stdout (WAV)", "play": SOUND_DEVICE}.get(self.mode, str(self.out_path))

    def _open_file(self) -> None:
        from ..io.audio import ProgressiveWavWriter

        if self.file is None:
            self.file = ProgressiveWavWriter(self.out_path, self.rate)

    def write(self, chunk) -> None:
        if len(chunk) == 0:
            return
        if self.player is not None:
            self.player.write(chunk)
        elif self.mode == "file":
            self._open_file()
            self.file.write(chunk)
        else:
            from ..io.audio import pcm16

            write_stdout(pcm16(chunk))

    def finish(self) -> None:
        """Wait until everything was played; a file that got no audio is still written (empty)."""
        if self.player is not None:
            self.player.finish()
        if self.mode == "file":
            self._open_file()

    def close(self) -> None:
        """Stop now (after finish: just release); a file keeps what it has, with a valid header."""
        if self.player is not None:
            self.player.abort()
        if self.file is not None:
            self.file.close()


class Player:
    """A sounddevice OutputStream fed by a thread with blocking writes of queued chunks."""

    def __init__(self, sd, device, rate: int):
        import queue
        import threading

        dev = int(device) if device is not None and device.isdigit() else device
        self.stream = sd.OutputStream(samplerate=rate, channels=1, dtype="float32", device=dev)
        self.queue: queue.Queue = queue.Queue()
        self.error: Exception | None = None
        self.closed = False
        self.stream.start()
        self.thread = threading.Thread(target=self._run, name="qwen3tts-playback", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        import numpy as np

        while True:
            chunk = self.queue.get()
            if chunk is None:
                return
            try:
                self.stream.write(np.ascontiguousarray(chunk, dtype=np.float32).reshape(-1, 1))
            except Exception as e:  # the device went away: reported by the next write/finish
                self.error = e
                return

    def _check(self) -> None:
        if self.error is not None:
            fail(f"playback failed ({self.error})", 1)

    def write(self, chunk) -> None:
        self._check()
        self.queue.put(chunk)

    def finish(self) -> None:
        self.queue.put(None)
        while self.thread.is_alive():  # a short timeout keeps Ctrl-C responsive
            self.thread.join(0.1)
        self._check()
        self.stream.stop()  # returns once the device has played what it holds

    def abort(self) -> None:
        if self.closed:
            return
        self.closed = True
        while True:  # drop what is not yet playing
            try:
                self.queue.get_nowait()
            except Exception:
                break
        self.queue.put(None)
        try:
            self.stream.abort()
        finally:
            self.stream.close()
        self.thread.join(1.0)


# -- progress --------------------------------------------------------------------------------------

class SynthProgress:
    """A live line on stderr while frames are generated: frames, seconds of audio, speed."""

    def __init__(self, live: bool, cap: int, count: int):
        self.live, self.cap, self.count = live, cap, count
        self.progress = None
        self.task = None

    def __enter__(self) -> "SynthProgress":
        if self.live:
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.progress = Progress(
                TextColumn("{task.description}"), BarColumn(),
                TextColumn("{task.completed} frames, {task.fields[audio]:.1f} s audio, {task.fields[speed]}"),
                TimeElapsedColumn(), console=err, transient=True)
            self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.progress is not None:
            self.progress.stop()

    def callback(self, index: int, path):
        if self.progress is None:
            return None
        import time

        label = f"{index + 1}/{self.count} {path.name}" if self.count > 1 and path is not None else "generating"
        self.task = self.progress.add_task(escape(label), total=self.cap, audio=0.0, speed="")
        start = time.perf_counter()

        task = self.task

        def on_frame(n: int) -> None:
            audio = n * 0.08
            speed = f"{audio / max(time.perf_counter() - start, 1e-9):.2f}× RT"
            self.progress.update(task, completed=n, audio=audio, speed=speed)

        on_frame.task = task
        return on_frame

    def done(self, on_frame=None) -> None:
        """Remove the line of ``on_frame`` (a callback of this bar; default: the latest)."""
        task = getattr(on_frame, "task", None) if on_frame is not None else self.task
        if self.progress is not None and task is not None:
            self.progress.remove_task(task)
            if task == self.task:
                self.task = None
