"""`qwen3tts stream`: speak while generating, to the sound device, a growing WAV, or stdout."""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..engine.request import DEFAULT_STREAM_SCHEDULE
from ..errors import InputError, TruncatedError
from . import output
from .app import err
from .options import with_groups
from .speech import (DEVICE, SPEECH, DeviceOptions, SpeechOptions, check_against_model, load_model, speech_request,
                     voice_source, with_voice)

_SCHEDULE = ",".join(map(str, DEFAULT_STREAM_SCHEDULE))


@with_groups
def stream(
    text: Optional[str] = typer.Argument(None, help="Text to speak; '-' speaks standard input line by line as "
                                                    "lines arrive."),
    output_: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE.wav",
        help="Write a 16-bit 24 kHz mono WAV as audio is produced, valid at every moment (also after "
             "Ctrl-C); '-' streams a WAV to stdout (its header says 'unknown length'). Default: play."),
    raw: bool = typer.Option(False, "--raw", help="Write raw s16le 24 kHz mono PCM to stdout as it is produced "
                                                  "(for aplay, ffplay, sox play)."),
    output_device: Optional[str] = typer.Option(None, "--output-device", metavar="DEVICE",
                                                help="Sound device to play on: index or name (default: the "
                                                     "system's default output)."),
    o: SpeechOptions = SPEECH,
    schedule: Optional[str] = typer.Option(None, "--schedule", metavar="N,N,…",
                                           help=f"Frames per audio chunk, the last repeating (default {_SCHEDULE}: "
                                                "first audio after one 80 ms frame)."),
    d: DeviceOptions = DEVICE,
    stats: bool = typer.Option(False, "--stats", help="Print time to first audio (TTFA) and speed on stderr."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors (and --stats)."),
) -> None:
    """Speak while generating: audio is played (or written) as soon as its frames exist.

    The samples are synth's for the same options and seed (fp32 rounding apart), delivered in chunks
    of 1, 2, 4, 8, 8, … frames. With '-' every line of standard input is spoken as it arrives, in the
    same voice (speaker, instruction, voice file, seed), while earlier lines play.

    -o FILE.wav is written progressively, not atomically: the file is a valid WAV of what was
    produced so far at every moment, including after Ctrl-C (exit 130).
    """
    from ..engine import parse_device
    from ..engine.results import silence
    from .models import resolve_model_with_progress

    if raw and output_ is not None:
        raise InputError("--raw writes to stdout; drop -o (or use -o FILE.wav without --raw)")
    if text is None:
        raise InputError("missing TEXT (or '-' to speak standard input line by line)")
    voice = voice_source(o)
    sizes = _parse_schedule(schedule)
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
    if text != "-":
        output.check_text(text)
    request = speech_request(o, text, voice, **({} if sizes is None else dict(schedule=sizes)))
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

    skipped: list[str] = []  # stdin lines not spoken: the stream goes on, the exit status says so

    def skip(note: str) -> None:
        skipped.append(note)
        say(f"[yellow]warning:[/] standard input {escape(note)}: skipped")

    lines = output.stdin_lines(skip) if text == "-" else iter([text])
    sink = output.StreamSink(sd, output_device, out_path, raw, to_stdout, tts.sample_rate)
    truncated = n_lines = frames = 0
    audio_s = busy_s = 0.0
    try:
        for line in lines:
            t1 = time.perf_counter()
            st = tts.stream(replace(request, text=line))
            if n_lines:
                sink.write(silence(request.pause))
            ttfa = None
            for chunk in st:
                sink.write(chunk)
                if ttfa is None:
                    ttfa = time.perf_counter() - t1
            dt = time.perf_counter() - t1
            result = st.result
            n_lines += 1
            frames += result.frames
            audio_s += result.seconds
            busy_s += dt
            for w in result.warnings:
                say(f"[yellow]warning:[/] {escape(w)}")
            if result.truncated:
                truncated += 1
                say(f"[yellow]warning:[/] {escape(result.truncated)}")
            if stats:
                first = "none" if ttfa is None else f"{ttfa * 1000:.0f} ms"
                err.print(f"stats: line {n_lines}: TTFA {first}, {result.seconds:.2f} s of audio in {dt:.2f} s "
                          f"({result.seconds / max(dt, 1e-9):.2f}x real time), {result.frames} frames, "
                          f"stop: {result.stop_reason}", soft_wrap=True, highlight=False)
        if n_lines == 0:
            raise InputError("standard input had no text (every line was empty)" if not skipped else
                             f"standard input had nothing to speak: {'; '.join(skipped)}")
        sink.finish()
    finally:
        sink.close()
    say(f"{'played on' if sink.mode == 'play' else 'wrote'} {escape(sink.where)}: {frames} frames ({audio_s:.2f} s of "
        f"audio{f', {n_lines} lines' if n_lines > 1 else ''}); load {t_load:.1f} s, synthesis {busy_s:.1f} s "
        f"({audio_s / max(busy_s, 1e-9):.2f}x real time)")
    if stats and n_lines > 1:
        err.print(f"stats: all: {audio_s:.2f} s of audio in {busy_s:.2f} s ({audio_s / max(busy_s, 1e-9):.2f}x "
                  "real time)", soft_wrap=True, highlight=False)
    if skipped:
        raise InputError(f"{len(skipped)} line{'s' if len(skipped) > 1 else ''} of standard input not spoken "
                         f"(the others were): {'; '.join(skipped)}")
    if truncated and not o.allow_truncation:
        what = "the utterance was" if n_lines == 1 else f"{truncated} of {n_lines} lines were"
        raise TruncatedError(f"{what} cut short by the runaway guard (--allow-truncation to accept this "
                             "with exit status 0)")


def _parse_schedule(value: str | None) -> list[int] | None:
    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise InputError(f"--schedule must be positive frame counts separated by commas (got {value!r})")
    return sizes
