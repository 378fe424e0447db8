"""`qwen3tts stream`: speak while generating, to the sound device, a growing WAV, or stdout."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..engine.request import DEFAULT_STREAM_SCHEDULE
from ..errors import InputError, TruncatedError
from . import output
from .app import err
from .options import comma_counts, save_codes_option, with_groups
from .speech import (DEVICE, SPEECH, DeviceOptions, SpeechOptions, check_against_model, load_model, speech_request,
                     voice_source, with_voice)

_SCHEDULE = ",".join(map(str, DEFAULT_STREAM_SCHEDULE))
_READ_SIZE = 4096  # bytes per read of standard input in --incremental (os.read returns what is there)


@with_groups
def stream(
    text: Optional[str] = typer.Argument(None, help="Text to speak; '-' speaks standard input line by line as "
                                                    "lines arrive (--incremental: as one text, as it arrives)."),
    output_: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE.wav",
        help="Write a 16-bit 24 kHz mono WAV as audio is produced, valid at every moment (also after "
             "Ctrl-C); '-' streams a WAV to stdout (its header says 'unknown length'). Default: play."),
    raw: bool = typer.Option(False, "--raw", help="Write raw s16le 24 kHz mono PCM to stdout as it is produced "
                                                  "(for aplay, ffplay, sox play)."),
    output_device: Optional[str] = typer.Option(None, "--output-device", metavar="DEVICE",
                                                help="Sound device to play on: index or name (default: the "
                                                     "system's default output)."),
    incremental: bool = typer.Option(False, "--incremental",
                                     help="With '-': read standard input as one continuous text, bytes as they "
                                          "arrive (an LLM piped in): speech starts after the first words; EOF "
                                          "ends it."),
    o: SpeechOptions = SPEECH,
    schedule: Optional[str] = typer.Option(None, "--schedule", metavar="N,N,…",
                                           help=f"Frames per audio chunk, the last repeating (default {_SCHEDULE}: "
                                                "first audio after one 80 ms frame)."),
    save_codes: Optional[Path] = save_codes_option(" when the stream ends (every line's or utterance's codes "
                                                   "back to back)"),
    d: DeviceOptions = DEVICE,
    stats: bool = typer.Option(False, "--stats", help="Print time to first audio (TTFA) and speed on stderr "
                                                      "(--incremental: also from the first and last text byte)."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (and --stats)."),
) -> None:
    """Speak while generating: audio is played (or written) as soon as its frames exist.

    The samples are synth's for the same options and seed (fp32 rounding apart), delivered in chunks
    of 1, 2, 4, 8, 8, … frames. With '-' every line of standard input is spoken as it arrives, in the
    same voice (speaker, instruction, voice file, seed), while earlier lines play.

    With '-' --incremental standard input is one text streamed in (my-llm | qwen3tts stream -
    --incremental): it is tokenized as it comes and fed to the model's streaming text layout, one
    token per 80 ms frame, so speech starts after the first words and never waits for a line end.
    Long input is cut into utterances at sentence ends past --max-chars; if the model ends an
    utterance before it has read its text, the rest is spoken as a new one, in the same voice.

    -o FILE.wav is written progressively, not atomically: the file is a valid WAV of what was
    produced so far at every moment, including after Ctrl-C (exit 130). --save-codes is written
    once the stream has ended (not after Ctrl-C).
    """
    from ..engine import parse_device
    from .models import resolve_model_with_progress

    if raw and output_ is not None:
        raise InputError("--raw writes to stdout; drop -o (or use -o FILE.wav without --raw)")
    if text is None:
        raise InputError("missing TEXT (or '-' to speak standard input line by line)")
    if incremental and text != "-":
        raise InputError("--incremental reads standard input: give '-' as TEXT")
    if incremental and o.no_split:
        raise InputError("--incremental cuts long input at sentence ends past --max-chars; --no-split does not "
                         "apply to it")
    voice = voice_source(o)
    sizes = comma_counts(schedule, "--schedule", "frame counts")
    output_ = output.output_name(output_)
    to_stdout = raw or output_ == "-"
    if to_stdout:
        output.check_stdout()
    if text == "-":
        output.check_stdin()
    if output_device is not None and (to_stdout or output_ is not None):
        raise InputError("--output-device is for playback; drop it with -o/--raw")
    out_path = Path(output_) if output_ not in (None, "-") else None
    output.check_output(out_path)
    output.check_output(save_codes, audio=False)
    if save_codes is not None and output.same_file(save_codes, "-" if to_stdout else out_path):
        raise InputError(f"-o and --save-codes name the same file ({save_codes}): give each its own")
    if text != "-":
        output.check_text(text)
    # A feed's text is not here yet: the request is checked with a stand-in, then given the feed.
    request = speech_request(o, "feed" if incremental else text, voice,
                             **({} if sizes is None else dict(schedule=sizes)))
    sd = None if to_stdout or out_path is not None else output.stream_device(output_device)

    say = output.say_to_stderr(quiet)
    dev = parse_device(d.device)
    folder = resolve_model_with_progress(o.model, not quiet and err.is_terminal, say)
    plan = check_against_model(folder, request)
    t0 = time.perf_counter()
    tts, _ = load_model(folder, dev, d.dtype)
    tts.decoder  # noqa: B018 (loaded now, outside the time to first audio)
    if plan.speaker_defaulted:
        say(f"speaker: {plan.speaker} (default; --speaker to choose)")
    tts.warm_up(request)  # CUDA: graphs captured now, not inside the first line's time to first audio
    t_load = time.perf_counter() - t0
    request = with_voice(tts, request)  # pinned: every line speaks with this one voice

    sink = output.StreamSink(sd, output_device, out_path, raw, to_stdout, tts.sample_rate)
    run = _Run(say, stats)
    try:
        if incremental:
            _speak_feed(tts, request, sink, run)
        else:
            _speak_lines(tts, request, text, sink, run)
        with contextlib.ExitStack() as pending:
            if save_codes is not None:
                import torch

                output.save_npy(save_codes, torch.cat(run.codes) if run.codes else
                                torch.empty(0, tts.cfg.talker.num_code_groups, dtype=torch.long), pending)
            sink.finish()
    finally:
        sink.close()
    where = escape(sink.where) + ("" if save_codes is None else f" and {escape(str(save_codes))}")
    parts = f", {run.parts} {run.unit}s" if run.parts > 1 else ""
    say(f"{'played on' if sink.mode == 'play' else 'wrote'} {where}: {run.frames} frames ({run.audio_s:.2f} s of "
        f"audio{parts}); load {t_load:.1f} s, synthesis {run.busy_s:.1f} s "
        f"({run.audio_s / max(run.busy_s, 1e-9):.2f}x real time)")
    if stats and run.parts > 1 and not incremental:
        err.print(f"stats: all: {run.audio_s:.2f} s of audio in {run.busy_s:.2f} s "
                  f"({run.audio_s / max(run.busy_s, 1e-9):.2f}x real time)", soft_wrap=True, highlight=False)
    if run.skipped:
        raise InputError(run.skipped)
    if run.truncated and not o.allow_truncation:
        what = "the utterance was" if run.parts == 1 else f"{run.truncated} of {run.parts} {run.unit}s were"
        raise TruncatedError(f"{what} cut short by the runaway guard (--allow-truncation to accept this "
                             "with exit status 0)")


@dataclass
class _Run:
    """What a stream made, for the closing note, --stats and --save-codes."""

    say: object
    stats: bool
    unit: str = "line"
    parts: int = 0  # lines, or a feed's utterances
    frames: int = 0
    audio_s: float = 0.0
    busy_s: float = 0.0
    truncated: int = 0
    codes: list = field(default_factory=list)
    skipped: str = ""  # input not spoken: the stream went on, the exit status says so

    def report(self, result) -> None:
        self.frames += result.frames
        self.audio_s += result.seconds
        self.codes.append(result.codes)
        for w in result.warnings:
            self.say(f"[yellow]warning:[/] {escape(w)}")
        if result.truncated:
            self.truncated += 1
            self.say(f"[yellow]warning:[/] {escape(result.truncated)}")


def _speak_lines(tts, request, text: str, sink, run: _Run) -> None:
    """TEXT, or every line of standard input as it arrives, one stream each."""
    from ..engine.results import silence

    skipped: list[str] = []

    def skip(note: str) -> None:
        skipped.append(note)
        run.say(f"[yellow]warning:[/] standard input {escape(note)}: skipped")

    lines = output.stdin_lines(skip) if text == "-" else iter([text])
    for line in lines:
        t1 = time.perf_counter()
        st = tts.stream(replace(request, text=line))
        if run.parts:
            sink.write(silence(request.pause))
        ttfa = None
        for chunk in st:
            sink.write(chunk)
            if ttfa is None:
                ttfa = time.perf_counter() - t1
        dt = time.perf_counter() - t1
        result = st.result
        run.parts += 1
        run.busy_s += dt
        run.report(result)
        if run.stats:
            first = "none" if ttfa is None else f"{ttfa * 1000:.0f} ms"
            err.print(f"stats: line {run.parts}: TTFA {first}, {result.seconds:.2f} s of audio in {dt:.2f} s "
                      f"({result.seconds / max(dt, 1e-9):.2f}x real time), {result.frames} frames, "
                      f"stop: {result.stop_reason}", soft_wrap=True, highlight=False)
    if run.parts == 0:
        raise InputError("standard input had no text (every line was empty)" if not skipped else
                         f"standard input had nothing to speak: {'; '.join(skipped)}")
    if skipped:
        run.skipped = (f"{len(skipped)} line{'s' if len(skipped) > 1 else ''} of standard input not spoken "
                       f"(the others were): {'; '.join(skipped)}")


def _speak_feed(tts, request, sink, run: _Run) -> None:
    """Standard input as one text feed: a reader thread pushes bytes as they arrive, EOF closes it."""
    from ..engine.feed import FeedCancelled

    feed = tts.text_feed()
    run.unit = "utterance"
    reader = _StdinReader(feed)
    st = tts.stream(replace(request, text=feed))
    t1 = time.perf_counter()
    first_audio = last_audio = None
    reader.start()
    try:
        for chunk in st:
            sink.write(chunk)
            last_audio = time.perf_counter()
            first_audio = first_audio or last_audio
    except FeedCancelled:
        if reader.error is not None:
            raise reader.error from None
        raise
    finally:
        feed.cancel()  # stops the reader's pushes and any wait (Ctrl-C, a broken pipe)
    result = st.result
    run.parts, run.busy_s = result.chunks, time.perf_counter() - t1
    run.report(result)
    if feed.undecodable_bytes:
        n = feed.undecodable_bytes
        run.skipped = (f"standard input held {n} byte{'s' if n > 1 else ''} that {'are' if n > 1 else 'is'} not "
                       f"UTF-8 (first 0x{feed.first_undecodable:02x}): dropped")
        if result.chunks == 0:
            raise InputError(f"standard input had no text ({run.skipped})")
        run.skipped += ", the rest was spoken"
        run.say(f"[yellow]warning:[/] {escape(run.skipped)}")
    if result.chunks == 0:
        raise InputError("standard input had no text")
    if run.stats:
        def ms(a, b):
            return "none" if a is None or b is None else f"{(a - b) * 1000:.0f} ms"

        err.print(f"stats: first text byte to first audio {ms(first_audio, feed.first_text_at)}, last text byte "
                  f"to last audio {ms(last_audio, feed.last_text_at)}; {result.seconds:.2f} s of audio, "
                  f"{result.frames} frames in {result.chunks} utterance{'s' if result.chunks > 1 else ''}, "
                  f"{len(feed.ids)} text tokens, stop: {result.stop_reason}", soft_wrap=True, highlight=False)


class _StdinReader(threading.Thread):
    """Standard input's bytes into the feed as they arrive (os.read returns what a pipe holds,
    without waiting for a line or a full buffer); EOF closes the feed."""

    def __init__(self, feed):
        super().__init__(name="qwen3tts-stdin", daemon=True)
        self.feed, self.error = feed, None

    def run(self) -> None:
        from ..engine.feed import FeedCancelled

        source = getattr(sys.stdin, "buffer", sys.stdin)
        try:
            fd = source.fileno()
        except (AttributeError, OSError, ValueError):
            fd = None
        try:
            while not self.feed.cancelled:
                data = os.read(fd, _READ_SIZE) if fd is not None else source.read(_READ_SIZE)
                if not data:
                    break
                self.feed.push(data)
            self.feed.close()
        except FeedCancelled:
            pass  # the consumer stopped first
        except OSError as e:
            self.error = InputError(f"cannot read standard input: {e.strerror or e}")
            self.feed.cancel()
        except BaseException as e:  # noqa: BLE001 (anything else: the consumer must not wait forever)
            if not self.feed.cancelled:
                self.error = e
                self.feed.cancel()

