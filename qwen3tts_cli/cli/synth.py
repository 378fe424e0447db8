"""`qwen3tts synth`: text to a WAV (-o), to stdout (-o - or --raw), played live, or codes only."""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from ..errors import InputError, TruncatedError
from . import output
from .app import err
from .options import QUIET_OPTION, save_codes_option, with_groups
from .speech import (DEVICE, SPEECH, DeviceOptions, SpeechOptions, check_against_model, load_model, speech_request,
                     voice_source, with_voice)


@with_groups
def synth(
    text: Optional[str] = typer.Argument(None, help="Text to speak; '-' reads it from standard input."),
    input_file: Optional[str] = typer.Option(
        None, "--input", "-i", metavar="FILE",
        help="Speak every line of FILE ('-': standard input) into numbered WAVs in --dir, named by line "
             "number (0001.wav = line 1); empty lines are skipped and their numbers left unused."),
    out_dir: Optional[Path] = typer.Option(None, "--dir", "-d",
                                           help="Folder for --input's numbered files (created if "
                                                "missing; default: current folder)."),
    output_: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE",
        help="File to write, 24 kHz mono, in the format its name asks for: .wav (16-bit), .flac, .mp3, .ogg "
             "(Vorbis) or .opus (Ogg Opus); '-' writes a WAV to stdout. Without -o: play it when "
             "a sound device is available (pip install 'qwen3tts-cli\\[play]'), else write "
             "qwen3tts-output.wav (then -2, -3, …; never overwritten)."),
    raw: bool = typer.Option(False, "--raw", help="Write raw s16le 24 kHz mono PCM to stdout (for aplay, "
                                                  "ffplay, sox play)."),
    o: SpeechOptions = SPEECH,
    save_codes: Optional[Path] = save_codes_option("; alone (no -o/--raw), write only the codes"),
    d: DeviceOptions = DEVICE,
    quiet: bool = QUIET_OPTION,
    list_speakers: bool = typer.Option(False, "--list-speakers",
                                       help="List the model's speakers and languages (no weights loaded) and exit."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1,
                                   help="With --input: synthesize up to this many lines at once (dynamic "
                                        "batching: a line joins as soon as another ends; each file equals its "
                                        "batch-size-1 result)."),
    resume: bool = typer.Option(False, "--resume",
                                help="With --input: skip lines whose WAV in --dir already exists and is complete."),
) -> None:
    """Synthesize speech from text: to a WAV (-o), to stdout (-o - or --raw), or played live.

    Audio goes only to the chosen output; logs and progress go to stderr (--quiet: errors only).

    Binary audio is never written to a terminal. Files appear only when complete: Ctrl-C exits 130 and leaves no partial file.

    --input FILE: one utterance per line, written as DIR/0001.wav, 0002.wav, … numbered by line number, so that a file always names its line; empty lines are skipped and their numbers stay unused.
    """
    from ..engine import parse_device
    from .models import list_speakers as print_speakers, resolve_model_with_progress

    if list_speakers:
        print_speakers(o.model)
        return
    # -- what to read, where to write: checked before any weights are loaded ----------------------
    if text is not None and input_file is not None:
        raise InputError("give either TEXT or --input FILE, not both")
    if text is None and input_file is None:
        raise InputError("missing TEXT (or '-' to read standard input, or --input FILE)")
    if input_file is not None and (output_ is not None or raw or save_codes is not None):
        raise InputError("--input writes numbered WAVs into --dir; -o, --raw and --save-codes take a single TEXT")
    if out_dir is not None and input_file is None:
        raise InputError("--dir is for --input FILE; use -o FILE.wav for a single text")
    if (batch_size > 1 or resume) and input_file is None:
        raise InputError("--batch-size and --resume are for --input FILE")
    if raw and output_ is not None:
        raise InputError("--raw writes to stdout; drop -o (or use -o FILE.wav without --raw)")
    voice = voice_source(o)
    output_ = output.output_name(output_)
    to_stdout = raw or output_ == "-"
    if to_stdout:
        output.check_stdout()
    out_path = Path(output_) if output_ not in (None, "-") else None
    output.check_output(out_path, encoded=True)
    output.check_output(save_codes, audio=False)
    if save_codes is not None and output.same_file(save_codes, "-" if to_stdout else out_path):
        raise InputError(f"-o and --save-codes name the same file ({save_codes}): give each its own")

    if input_file is not None:
        jobs = _line_jobs(input_file, out_dir, resume, quiet)
        if not jobs:
            return
        kind = "files"
    else:
        if text == "-":
            text = output.read_stdin()
        output.check_text(text)
        jobs = [(text, out_path)]
        kind = ("raw" if raw else "stdout-wav") if to_stdout else (
            "files" if out_path is not None else "codes-only" if save_codes is not None else "play")
    requests = [speech_request(o, t, voice) for t, _ in jobs]

    say = output.say_to_stderr(quiet)
    live = not quiet and err.is_terminal
    dev = parse_device(d.device)
    folder = resolve_model_with_progress(o.model, live, say)
    plan = check_against_model(folder, requests[0])
    tts, t_load = load_model(folder, dev, d.dtype, status=live)
    if plan.speaker_defaulted:
        say(f"speaker: {plan.speaker} (default; --speaker to choose, --list-speakers to list)")
    voiced = with_voice(tts, requests[0], say, source=o.ref_audio)
    requests = [replace(r, voice=voiced.voice) for r in requests]

    out = output.UtteranceOutput(kind, say)
    if batch_size > 1:
        truncated = _synth_batches(tts, requests, [p for _, p in jobs], batch_size, live, say, t_load, plan.max_frames)
    else:
        truncated = _synth_each(tts, requests, jobs, out, save_codes, live, say, t_load, plan.max_frames)
    if truncated and not o.allow_truncation:
        what = "the utterance was" if len(jobs) == 1 else f"{truncated} of {len(jobs)} utterances were"
        raise TruncatedError(f"{what} cut short by the runaway guard; the audio so far was kept "
                             "(--allow-truncation to accept this with exit status 0)")


def _line_jobs(input_file: str, out_dir: Path | None, resume: bool, quiet: bool) -> list[tuple[str, Path]]:
    """(text, DIR/NNNN.wav) for every non-empty line; with ``resume``, only those not yet complete."""
    utterances = output.read_lines(input_file)
    folder = Path(out_dir) if out_dir is not None else Path(".")
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{folder}: is a file; --dir names a folder for the numbered WAVs")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{folder}: cannot create folder ({e.strerror})") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"{folder}: folder is not writable")
    width = max(4, len(str(utterances[-1][0])))
    jobs = [(t, folder / f"{n:0{width}d}.wav") for n, t in utterances]
    for _, path in jobs:
        output.check_output(path)  # e.g. a folder where a numbered file goes: now, not mid-run
    if resume:
        todo = [(t, p) for t, p in jobs if not output.complete_wav(p)]
        if len(todo) < len(jobs) and not quiet:
            err.print(f"--resume: {len(jobs) - len(todo)} of {len(jobs)} files already complete, skipped")
        jobs = todo
    return jobs


def _report(result, say, name: str = "") -> bool:
    """Warnings and truncation of one result on stderr; True when it was cut short."""
    for w in result.warnings:
        say(f"[yellow]warning:[/] {escape(w)}")
    if result.truncated:
        say(f"[yellow]warning:[/] {escape(name + result.truncated)}")
    return bool(result.truncated)


def _synth_each(tts, requests, jobs, out, save_codes, live: bool, say, t_load: float, cap: int) -> int:
    """One utterance after another, each put where it goes as soon as it is done. Returns how many
    the runaway guard cut short."""
    truncated = 0
    with output.SynthProgress(live, cap, len(jobs)) as bar:
        for i, (request, (_, path)) in enumerate(zip(requests, jobs)):
            t1 = time.perf_counter()
            result = tts.synthesize(request, progress=bar.callback(i, path), decode=out.decodes)
            dt = time.perf_counter() - t1
            bar.done()
            truncated += _report(result, say, f"{path.name}: " if len(jobs) > 1 else "")
            with contextlib.ExitStack() as pending:
                # The codes go to a temporary file first and are renamed into place after the
                # audio: a failure in either leaves both old files as they were.
                if save_codes is not None:
                    output.save_npy(save_codes, result.codes, pending)
                where = out.put(result.audio, path)
            if save_codes is not None:
                where = f"{where} and {save_codes}" if where else str(save_codes)
            audio_s = result.seconds if out.decodes else result.frames * 0.08
            chunks = f" in {result.chunks} chunks" if result.chunks > 1 else ""
            say(f"{'played on' if where == output.SOUND_DEVICE else 'wrote'} {escape(str(where))}: {result.frames} "
                f"frames ({audio_s:.2f} s of audio{chunks}), stop: {result.stop_reason}; load {t_load:.1f} s, "
                f"synthesis {dt:.1f} s ({audio_s / max(dt, 1e-9):.2f}x real time)")
    return truncated


def _synth_batches(tts, requests, paths, batch_size: int, live: bool, say, t_load: float, cap: int) -> int:
    """--input with --batch-size: the lines through one scheduler (engine/scheduler.py), up to
    ``batch_size`` at once; a line joins the running batch as soon as another ends. Each WAV is
    written (atomically) as soon as its line ends, so an interruption keeps every finished file and
    no partial one. Returns how many lines the runaway guard cut short."""
    from ..engine.scheduler import Scheduler
    from ..io.audio import write_wav

    truncated, seconds = 0, 0.0
    t1 = time.perf_counter()
    with output.SynthProgress(live, cap, len(requests)) as bar, \
            Scheduler(tts, max_batch=batch_size, max_queue=batch_size) as sched:
        sched.warm_up(requests[0])  # CUDA: the batch's graphs for the lines' sampling settings
        callbacks = {}

        def on_frame(i):
            callbacks[i] = bar.callback(i, paths[i])
            return callbacks[i]

        # Ctrl-C or a failed line closes the iteration, which stops the other lines first.
        for i, result in sched.synthesize_all(requests, progress=on_frame):
            bar.done(callbacks.pop(i, None))
            if isinstance(result, BaseException):
                raise result
            write_wav(paths[i], result.audio)
            truncated += _report(result, say, paths[i].name + ": ")
            seconds += result.seconds
            chunks = f" in {result.chunks} chunks" if result.chunks > 1 else ""
            say(f"wrote {escape(str(paths[i]))}: {result.frames} frames ({result.seconds:.2f} s "
                f"of audio{chunks}), stop: {result.stop_reason}")
    dt = time.perf_counter() - t1
    say(f"{len(requests)} files, {seconds:.2f} s of audio, up to {batch_size} at once; load {t_load:.1f} s, "
        f"synthesis {dt:.1f} s ({seconds / max(dt, 1e-9):.2f}x real time)")
    return truncated
