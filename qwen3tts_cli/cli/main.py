"""The `qwen3tts` command: parse arguments, print to stderr, map errors to exit codes.

Nothing else imports this module; the engine below it knows nothing of typer, rich or exit codes.
Exit codes: 0 success, 1 runtime/model failure, 2 bad usage or input, 3 audio cut short by the
runaway guard (synth; the audio is still written; --allow-truncation makes it 0), 130 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from ..errors import Qwen3TTSError

app = typer.Typer(
    name="qwen3tts",
    help="Qwen3-TTS 12 Hz text-to-speech: download, verify, synthesize, stream, encode, decode, bench.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)


def fail(message: str, code: int) -> None:
    """One clear line on stderr, then exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


def guarded(fn):
    """Run a command body so that no failure escapes as a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except Qwen3TTSError as e:
            fail(str(e), e.exit_code)
        except KeyboardInterrupt:
            err.print("interrupted")
            raise typer.Exit(130)
        except OSError as e:  # disk full, permissions, I/O: the system's own words, with the file
            fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else f"{e.strerror or e}", 1)
        except Exception as e:
            if os.environ.get("QWEN3TTS_DEBUG"):
                raise
            fail(f"internal error: {type(e).__name__}: {e} (set QWEN3TTS_DEBUG=1 for a traceback)", 1)

    return wrapper


# ---------------------------------------------------------------------------------------------
# download / verify
# ---------------------------------------------------------------------------------------------

@app.command()
@guarded
def download(
    repo_id: Optional[str] = typer.Argument(None, help="Repo id, e.g. Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice. "
                                                  "Without it, list the official repos."),
    revision: Optional[str] = typer.Option(None, "--revision", "-r", help="Branch, tag or commit."),
    dir: Optional[Path] = typer.Option(None, "--dir", "-d", help="Download into this folder instead of the "
                                                           "Hugging Face cache."),
) -> None:
    """Download a model (resumable, SHA-256 checked) and save a manifest for offline `verify`."""
    from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn,
                               TransferSpeedColumn)
    from rich.table import Table

    from ..io import hub
    from ..io.repos import CODEC_WEIGHTS_SIZE, KNOWN_REPOS

    if repo_id is None:
        what = {
            "Base": "voice clone",
            "CustomVoice": "preset speakers",
            "VoiceDesign": "voice from a description",
            "Tokenizer-12Hz": "speech codec only",
        }
        table = Table(title="Official Qwen3-TTS 12 Hz repos", title_justify="left")
        table.add_column("repo id", no_wrap=True)
        table.add_column("download", justify="right", no_wrap=True)
        table.add_column("what it is")
        for r in KNOWN_REPOS:
            size = r.weights.size + (CODEC_WEIGHTS_SIZE if r.kind == "model" else 0)
            kind = r.short if r.kind == "tokenizer" else r.short.split("-", 1)[1]
            table.add_row(r.repo_id, f"{size / 1e9:.1f} GB", what[kind])
        out = Console(highlight=False)
        out.print(table)
        out.print("Download one with: qwen3tts download <repo id>  (short names such as 0.6B-Base work too)")
        return

    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=err, transient=True) as bar:
        task = bar.add_task(repo_id, total=None)
        skipped = 0
        per_file: dict[str, int] = {}

        def on_progress(event: str, path: str, done: int, total: int) -> None:
            nonlocal skipped
            if event == "plan":
                bar.update(task, total=total)
                return
            if event == "skip":
                skipped += total
            else:
                per_file[path] = done
                bar.update(task, description=f"{'checking' if event == 'verify' else 'downloading'} {path}")
            bar.update(task, completed=skipped + sum(per_file.values()))

        folder = hub.download(repo_id, revision=revision, local_dir=dir, progress=on_progress)
    err.print(f"downloaded {repo_id} into {folder}")
    print(folder)


@app.command()
@guarded
def verify(
    path: Path = typer.Argument(..., help="A model folder (or a Qwen3-TTS-Tokenizer-12Hz folder)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON report on stdout."),
) -> None:
    """Check a model folder: files, configs, every tensor, sizes and SHA-256."""
    import json

    from rich.table import Table
    from rich.text import Text

    from ..io.verify import verify_folder

    if err.is_terminal and not json_out:
        with err.status("checking…") as status:
            report = verify_folder(path, progress=lambda msg: status.update(msg + "…"))
    else:
        report = verify_folder(path)
    failed = [c.name for c in report.failures]
    if json_out:
        sys.stdout.write(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
        sys.stdout.flush()
    else:
        table = Table(title=Text(f"{path} ({report.kind})"), title_justify="left")
        table.add_column("check", no_wrap=True)
        table.add_column("status", no_wrap=True)
        table.add_column("detail", overflow="fold")
        style = {"ok": "green", "fail": "bold red", "skip": "yellow"}
        for c in report:
            # Details hold tensor shapes like [1024, 2048]: plain Text, never markup.
            table.add_row(Text(c.name), Text(c.status, style=style[c.status]), Text(c.detail),
                          style="red" if c.status == "fail" else None)
        # Piped stderr would get rich's default 80 columns, too narrow for the details.
        out = err if err.is_terminal else Console(stderr=True, highlight=False, width=max(err.width, 120))
        out.print(table)
    if failed:
        fail(f"{path}: {len(failed)} check(s) failed: " + ", ".join(failed), 1)
    if not json_out:
        err.print(f"[bold green]ok:[/] {path}: all {len(report)} checks hold "
                  f"({sum(c.status == 'skip' for c in report)} skipped)", soft_wrap=True)


# ---------------------------------------------------------------------------------------------
# synthesis
# ---------------------------------------------------------------------------------------------

# Options that synth and stream share: defined once so that their names, defaults and help stay
# in step.
MODEL_OPTION = typer.Option("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice", "--model", "-m",  # repos.DEFAULT_MODEL
                            help="Model folder, official repo id or short name (e.g. 1.7B-CustomVoice); "
                                 "downloaded on first use.")
SPEAKER_OPTION = typer.Option(None, "--speaker", "-s", help="Built-in voice (CustomVoice models; default: ryan).")
LANGUAGE_OPTION = typer.Option("auto", "--language", "-l", help="Language, or 'auto'.")
INSTRUCT_OPTION = typer.Option(None, "--instruct",
                               help="Style instruction (1.7B CustomVoice); voice description (VoiceDesign, required).")
REF_AUDIO_OPTION = typer.Option(None, "--ref-audio", metavar="AUDIO",
                                help="Base models: clone the voice of this recording (wav/flac/ogg, at least 1 s; "
                                     "3-10 s of clear speech work best).")
REF_TEXT_OPTION = typer.Option(None, "--ref-text", help="Transcript of --ref-audio (in-context cloning, the default).")
XVECTOR_ONLY_OPTION = typer.Option(False, "--xvector-only",
                                   help="Clone from --ref-audio's speaker embedding alone (no transcript).")
VOICE_OPTION = typer.Option(None, "--voice", metavar="VOICE.safetensors",
                            help="Base models: a voice made by `qwen3tts voice create`.")
GREEDY_OPTION = typer.Option(False, "--greedy", help="Deterministic argmax decoding (no sampling).")
SEED_OPTION = typer.Option(None, "--seed", help="Random seed for sampling (chunk i of a split text uses seed + i; "
                                                "stream uses the same seed for every line).")
MAX_FRAMES_OPTION = typer.Option(None, "--max-frames", min=1,
                                 help="Stop after this many 80 ms frames (default: max_new_tokens of "
                                      "generation_config.json); per chunk when the text is split.")
NO_SPLIT_OPTION = typer.Option(False, "--no-split", help="Speak the text in one pass, exactly as given (default: "
                                                         "split long text at sentence, then clause ends).")
MAX_CHARS_OPTION = typer.Option(300, "--max-chars", min=10, metavar="N",  # segment.DEFAULT_MAX_CHARS
                                help="Longest chunk of a split text, in characters (a CJK character counts 3).")
PAUSE_OPTION = typer.Option(0.25, "--pause", min=0.0, metavar="SECONDS",  # engine.DEFAULT_PAUSE
                            help="Silence between the chunks of a split text (stream: also between lines).")
ALLOW_TRUNCATION_OPTION = typer.Option(False, "--allow-truncation",
                                       help="Exit 0 when the runaway guard cuts an utterance short (default: "
                                            "keep the audio, warn, exit 3).")
TEMPERATURE_OPTION = typer.Option(None, "--temperature", help="Sampling temperature (first code).")
TOP_K_OPTION = typer.Option(None, "--top-k", help="Top-k (first code); 0 disables.")
TOP_P_OPTION = typer.Option(None, "--top-p", help="Top-p (first code).")
REPETITION_PENALTY_OPTION = typer.Option(None, "--repetition-penalty", help="Penalty on first codes already used.")
DEVICE_OPTION = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available).")
DTYPE_OPTION = typer.Option(None, "--dtype",
                            help="float32 or bfloat16; on CPU also w8a8 (int8 weights and activations: fastest) "
                                 "or int8 (int8 weights, bf16 activations) (default: float32 on CPU, bfloat16 "
                                 "on CUDA).")


@app.command()
@guarded
def synth(
    text: Optional[str] = typer.Argument(None, help="Text to speak; '-' reads it from standard input."),
    input_file: Optional[str] = typer.Option(
        None, "--input", "-i", metavar="FILE",
        help="Speak every line of FILE ('-': standard input) into numbered WAVs in --dir, named by line "
             "number (0001.wav = line 1); empty lines are skipped and their numbers left unused."),
    out_dir: Optional[Path] = typer.Option(None, "--dir", "-d",
                                           help="Folder for --input's numbered files (created if "
                                                "missing; default: current folder)."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE.wav",
        help="WAV to write (16-bit, 24 kHz mono); '-' writes the WAV to stdout. Without -o: play it when "
             "a sound device is available (pip install 'qwen3tts-cli\\[play]'), else write "
             "qwen3tts-output.wav (then -2, -3, …; never overwritten)."),
    raw: bool = typer.Option(False, "--raw", help="Write raw s16le 24 kHz mono PCM to stdout (for aplay, "
                                                  "ffplay, sox play)."),
    model: str = MODEL_OPTION,
    speaker: Optional[str] = SPEAKER_OPTION,
    language: str = LANGUAGE_OPTION,
    instruct: Optional[str] = INSTRUCT_OPTION,
    ref_audio: Optional[Path] = REF_AUDIO_OPTION,
    ref_text: Optional[str] = REF_TEXT_OPTION,
    xvector_only: bool = XVECTOR_ONLY_OPTION,
    voice_file: Optional[Path] = VOICE_OPTION,
    greedy: bool = GREEDY_OPTION,
    seed: Optional[int] = SEED_OPTION,
    max_frames: Optional[int] = MAX_FRAMES_OPTION,
    no_split: bool = NO_SPLIT_OPTION,
    max_chars: int = MAX_CHARS_OPTION,
    pause: float = PAUSE_OPTION,
    allow_truncation: bool = ALLOW_TRUNCATION_OPTION,
    temperature: Optional[float] = TEMPERATURE_OPTION,
    top_k: Optional[int] = TOP_K_OPTION,
    top_p: Optional[float] = TOP_P_OPTION,
    repetition_penalty: Optional[float] = REPETITION_PENALTY_OPTION,
    save_codes: Optional[Path] = typer.Option(None, "--save-codes",
                                              help="Also write the codec codes as int64 .npy \\[frames, 16]; "
                                                   "alone (no -o/--raw), write only the codes."),
    device: Optional[str] = DEVICE_OPTION,
    dtype: Optional[str] = DTYPE_OPTION,
    quiet: bool = typer.Option(False, "--quiet", "-q", help="Print nothing but errors."),
    list_speakers: bool = typer.Option(False, "--list-speakers",
                                       help="List the model's speakers and languages (no weights loaded) and exit."),
    batch_size: int = typer.Option(1, "--batch-size", "-b", min=1,
                                   help="With --input: synthesize this many lines at once (batched generation; "
                                        "each file equals its batch-size-1 result)."),
    resume: bool = typer.Option(False, "--resume",
                                help="With --input: skip lines whose WAV in --dir already exists and is complete."),
) -> None:
    """Synthesize speech from text: to a WAV (-o), to stdout (-o - or --raw), or played live.

    Audio goes only to the chosen output; logs and progress go to stderr (--quiet: errors only).

    Binary audio is never written to a terminal. Files appear only when complete: Ctrl-C exits 130 and leaves no partial file.

    --input FILE: one utterance per line, written as DIR/0001.wav, 0002.wav, … numbered by line number, so that a file always names its line; empty lines are skipped and their numbers stay unused.
    """
    import time

    from ..errors import InputError

    if list_speakers:
        _list_speakers(model)
        return
    # -- what to read, where to write: checked before any weights are loaded ----------------------
    if text is not None and input_file is not None:
        raise InputError("give either TEXT or --input FILE, not both")
    if text is None and input_file is None:
        raise InputError("missing TEXT (or '-' to read standard input, or --input FILE)")
    if input_file is not None and (output is not None or raw or save_codes is not None):
        raise InputError("--input writes numbered WAVs into --dir; -o, --raw and --save-codes take a single TEXT")
    if out_dir is not None and input_file is None:
        raise InputError("--dir is for --input FILE; use -o FILE.wav for a single text")
    if (batch_size > 1 or resume) and input_file is None:
        raise InputError("--batch-size and --resume are for --input FILE")
    if raw and output is not None:
        raise InputError("--raw writes to stdout; drop -o (or use -o FILE.wav without --raw)")
    clone_ref, loaded_voice = _clone_options(ref_audio, ref_text, xvector_only, voice_file, speaker)
    to_stdout = raw or output == "-"
    if to_stdout and _stdout_is_terminal():
        raise InputError("refusing to write binary audio to a terminal: use -o FILE.wav, or pipe it "
                         "(e.g. --raw | aplay -r 24000 -f S16_LE -c 1 -t raw)")
    out_path = Path(output) if output not in (None, "-") else None
    for p in (out_path, save_codes):
        if p is not None and not p.parent.is_dir():
            raise InputError(f"{p.parent}: folder does not exist")
        if p is not None and not os.access(p.parent, os.W_OK | os.X_OK):
            raise InputError(f"{p.parent}: folder is not writable")

    if input_file is not None:
        utterances = _read_lines(input_file)
        folder = Path(out_dir) if out_dir is not None else Path(".")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{folder}: cannot create folder ({e.strerror})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise InputError(f"{folder}: folder is not writable")
        width = max(4, len(str(utterances[-1][0])))
        jobs = [(t, folder / f"{n:0{width}d}.wav") for n, t in utterances]
        mode = "files"
        if resume:
            todo = [(t, p) for t, p in jobs if not _complete_wav(p)]
            if len(todo) < len(jobs) and not quiet:
                err.print(f"--resume: {len(jobs) - len(todo)} of {len(jobs)} files already complete, skipped")
            if not todo:
                return
            jobs = todo
    else:
        if text == "-":
            text = _read_stdin()
        from ..text.segment import normalize_text

        if not normalize_text(text):
            raise InputError("text is empty" if not text.strip() else "text has nothing to speak (only control characters)")
        jobs = [(text, out_path)]
        if to_stdout:
            mode = "raw" if raw else "stdout-wav"
        elif out_path is not None:
            mode = "files"
        elif save_codes is not None:
            mode = "codes-only"
        else:
            mode = "play"

    say = (lambda *a, **k: None) if quiet else (lambda msg: err.print(msg, soft_wrap=True))
    live = not quiet and err.is_terminal

    import torch

    from ..engine.tts import load_tts, parse_device

    dev = parse_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = _resolve_model_with_progress(model, live, say)
    _check_clone_fits(folder, speaker, clone_ref is not None or loaded_voice is not None, loaded_voice)
    t0 = time.perf_counter()
    if live:
        with err.status("loading the model…"):
            tts = load_tts(folder, device=dev, dtype=dtype)
    else:
        tts = load_tts(folder, device=dev, dtype=dtype)
    t_load = time.perf_counter() - t0
    if speaker in (None, "") and tts.model_type == "custom_voice":
        speaker = tts.default_speaker
        say(f"speaker: {speaker} (default; --speaker to choose, --list-speakers to list)")
    cap = max_frames or tts.generation_config.max_new_tokens
    kw = dict(speaker=speaker, language=language, instruct=instruct, greedy=greedy, seed=seed,
              max_frames=max_frames, temperature=temperature, top_k=top_k, top_p=top_p,
              repetition_penalty=repetition_penalty)
    if clone_ref is not None:
        t1 = time.perf_counter()
        loaded_voice = tts.create_voice(clone_ref, ref_text=ref_text, xvector_only=xvector_only)
        say(f"voice: {'in-context' if loaded_voice.mode == 'icl' else 'x-vector only'} clone of "
            f"{escape(str(ref_audio))} ({time.perf_counter() - t1:.1f} s)")
    if loaded_voice is not None:
        kw["voice"] = loaded_voice

    sd = _output_device() if mode == "play" else None
    if mode == "play" and sd is None:
        mode = "default-file"
    long_text = dict(split=not no_split, max_chars=max_chars, pause=pause)
    truncated = 0
    if batch_size > 1:
        truncated = _synth_batches(tts, jobs, {**kw, **long_text}, batch_size, live, say, t_load)
    with _SynthProgress(live, cap, len(jobs)) as bar:
        for i, (utterance, path) in enumerate(jobs if batch_size == 1 else []):
            t1 = time.perf_counter()
            result = tts.synthesize(utterance, progress=bar.callback(i, path), decode=mode != "codes-only",
                                    **long_text, **kw)
            audio = result.audio
            dt = time.perf_counter() - t1
            bar.done()
            for w in result.warnings:
                say(f"[yellow]warning:[/] {escape(w)}")
            if result.truncated:
                truncated += 1
                name = f"{path.name}: " if len(jobs) > 1 else ""
                say(f"[yellow]warning:[/] {escape(name + result.truncated)}")
            frames = int(result.codes.shape[0])
            where = None
            if mode == "files":
                where = _write_wav(path, audio)
            elif mode == "stdout-wav":
                from ..io.audio import wav_bytes

                _write_stdout(wav_bytes(audio))
                where = "stdout (WAV)"
            elif mode == "raw":
                from ..io.audio import pcm16

                _write_stdout(pcm16(audio))
                where = "stdout (raw s16le, 24000 Hz, mono)"
            elif mode == "play":
                if _play(sd, audio, say):
                    where = "the sound device"
                else:
                    mode = "default-file"
            if mode == "default-file":
                where = _write_wav(_default_output(Path(".")), audio)
                reason = "playback failed" if sd is not None else "no sound device to play on"
                say(f"no -o given and {reason}: writing {escape(str(where))} (use -o FILE.wav to choose the name)")
            if save_codes is not None:
                _save_npy(save_codes, result.codes)
                where = f"{where} and {save_codes}" if where else str(save_codes)
            audio_s = len(audio) / tts.sample_rate if mode != "codes-only" else frames * 0.08
            chunks = f" in {result.chunks} chunks" if result.chunks > 1 else ""
            say(f"{'played on' if where == 'the sound device' else 'wrote'} {escape(str(where))}: {frames} frames "
                f"({audio_s:.2f} s of audio{chunks}), stop: {result.stop_reason}; load {t_load:.1f} s, synthesis "
                f"{dt:.1f} s ({audio_s / max(dt, 1e-9):.2f}x real time)")
    if truncated and not allow_truncation:
        from ..errors import TruncatedError

        what = "the utterance was" if len(jobs) == 1 else f"{truncated} of {len(jobs)} utterances were"
        raise TruncatedError(f"{what} cut short by the runaway guard; the audio so far was kept "
                             "(--allow-truncation to accept this with exit status 0)")


def _synth_batches(tts, jobs, kw: dict, batch_size: int, live: bool, say, t_load: float) -> int:
    """--input with --batch-size: lines in groups of ``batch_size``; each WAV is written (atomically)
    as soon as its line ends, so an interruption keeps every finished file and no partial one.
    Returns how many lines the runaway guard cut short."""
    import time

    # Rows decode in lock-step until the longest ends: grouping lines of similar length wastes
    # least. Longest first, so a batch that does not fit in memory fails at once.
    order = sorted(range(len(jobs)), key=lambda i: len(jobs[i][0]), reverse=True)
    groups = [[jobs[i] for i in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
    cap = kw.get("max_frames") or tts.generation_config.max_new_tokens
    truncated = 0
    with _SynthProgress(live, cap, 1) as bar:
        for k, group in enumerate(groups):
            t1 = time.perf_counter()
            seconds = 0.0

            def write(i: int, result) -> None:
                nonlocal seconds, truncated
                for w in result.warnings:
                    say(f"[yellow]warning:[/] {escape(w)}")
                path = group[i][1]
                if result.truncated:
                    truncated += 1
                    say(f"[yellow]warning:[/] {escape(path.name + ': ' + result.truncated)}")
                _write_wav(path, result.audio)
                seconds += len(result.audio) / tts.sample_rate
                chunks = f" in {result.chunks} chunks" if result.chunks > 1 else ""
                say(f"wrote {escape(str(path))}: {result.frames} frames ({len(result.audio) / tts.sample_rate:.2f} s "
                    f"of audio{chunks}), stop: {result.stop_reason}")

            tts.synthesize_batch([t for t, _ in group], on_result=write, progress=bar.callback(k, None), **kw)
            bar.done()
            dt = time.perf_counter() - t1
            audio_s = seconds
            say(f"batch {k + 1}/{len(groups)}: {len(group)} files, {audio_s:.2f} s of audio; load {t_load:.1f} s, "
                f"synthesis {dt:.1f} s ({audio_s / max(dt, 1e-9):.2f}x real time)")
    return truncated


def _complete_wav(path: Path) -> bool:
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


def _clone_options(ref_audio, ref_text, xvector_only, voice_file, speaker):
    """synth's voice-clone options, checked before any weights load: (reference audio as
    (samples, rate) or None, loaded voice file or None)."""
    from ..errors import InputError

    if ref_audio is not None and voice_file is not None:
        raise InputError("give either --ref-audio (clone now) or --voice (a saved voice), not both")
    if ref_audio is None and (ref_text is not None or xvector_only):
        raise InputError("--ref-text and --xvector-only go with --ref-audio" +
                         (" (a --voice file already holds its transcript)" if voice_file is not None else ""))
    if ref_text is not None and xvector_only:
        raise InputError("--ref-text is for in-context cloning: give --ref-text or --xvector-only, not both")
    if (ref_audio is not None or voice_file is not None) and speaker not in (None, ""):
        raise InputError("--speaker picks a built-in voice of a CustomVoice model; --ref-audio/--voice clone a "
                         "voice with a Base model: use one or the other")
    if ref_audio is not None:
        from ..voice.clone import reference_waveform

        if ref_text is None and not xvector_only:
            raise InputError("in-context cloning needs the transcript of the reference audio: add --ref-text "
                             "\"...\", or use --xvector-only to clone from the speaker embedding alone")
        return reference_waveform(str(ref_audio)), None
    if voice_file is not None:
        from ..voice.clone import load_voice

        return None, load_voice(voice_file)
    return None, None


def _check_clone_fits(folder: Path, speaker, cloning: bool, voice) -> None:
    """Model type against the voice options, from config.json alone (before loading weights)."""
    from ..io.config import ModelConfig
    from ..errors import InputError

    cfg = ModelConfig.from_file(folder / "config.json")
    if cfg.tts_model_type != "base":
        if cloning:
            raise InputError(f"--ref-audio/--voice clone a voice and need a Base model; this model is "
                             f"{cfg.tts_model_type} (use --speaker or --instruct instead)")
        return
    if speaker not in (None, ""):
        raise InputError("a Base model has no built-in speakers: clone a voice with --ref-audio (and --ref-text "
                         "or --xvector-only) or --voice FILE instead of --speaker")
    if not cloning:
        raise InputError("a Base model speaks in a cloned voice: give --ref-audio AUDIO with --ref-text \"...\" "
                         "(or --xvector-only), or --voice FILE from `qwen3tts voice create`")
    if voice is not None:
        voice.check_model(cfg)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):
        return False


def _write_stdout(data: bytes) -> None:
    sys.stdout.flush()
    out = typer.get_binary_stream("stdout")
    view = memoryview(data)
    try:
        while view:  # an unbuffered stream may take only part of it (a pipe whose reader left)
            view = view[out.write(view) or 0:]
        out.flush()
    except BrokenPipeError:
        # The reader went away: keep Python's exit-time flush of stdout from failing again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        fail("standard output was closed before all audio was written", 1)


def _read_stdin() -> str:
    from ..errors import InputError

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


def _write_wav(path: Path, audio) -> Path:
    """write_wav, with a failed write (disk full, I/O error) named after its file."""
    from ..io.audio import write_wav

    try:
        return write_wav(path, audio)
    except OSError as e:
        raise OSError(e.errno, e.strerror or str(e), str(path)) from None


def _read_lines(source: str) -> list[tuple[int, str]]:
    """(line number, text) of every non-empty line of FILE or '-' (stdin)."""
    from ..errors import InputError

    if source == "-":
        content = _read_stdin()
    else:
        try:
            content = Path(source).read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputError(f"{source}: file not found") from None
        except UnicodeDecodeError:
            raise InputError(f"{source}: not UTF-8 text") from None
        except OSError as e:
            raise InputError(f"{source}: cannot read ({e.strerror})") from None
    lines = [(n, line.strip()) for n, line in enumerate(content.splitlines(), 1) if line.strip()]
    if not lines:
        raise InputError(f"{source}: no text (every line is empty)")
    return lines


def _default_output(folder: Path) -> Path:
    """qwen3tts-output.wav, or the first free qwen3tts-output-N.wav: never an existing file."""
    path, n = folder / "qwen3tts-output.wav", 2
    while path.exists():
        path, n = folder / f"qwen3tts-output-{n}.wav", n + 1
    return path


def _output_device():
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


def _play(sd, audio, say) -> bool:
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


def _save_npy(path: Path, codes) -> None:
    import numpy as np

    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, codes.numpy().astype(np.int64))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _resolve_model_with_progress(model: str, live: bool, say) -> Path:
    """A local folder as is; an official model from the cache, downloading it on first use."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    from ..io import hub

    bar = None
    task = None
    per_file: dict[str, int] = {}
    skipped = 0

    def on_progress(event: str, path: str, done: int, total: int) -> None:
        nonlocal bar, task, skipped
        if event == "plan":
            say(f"downloading {escape(model)} (first use; resumable, SHA-256 checked)")
            if live:
                from rich.progress import (BarColumn, DownloadColumn, Progress, TextColumn,
                                           TransferSpeedColumn)

                bar = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                               TransferSpeedColumn(), console=err, transient=True)
                bar.start()
                task = bar.add_task("downloading", total=total)
            return
        if bar is None:
            return
        if event == "skip":
            skipped += total
        else:
            per_file[path] = done
        bar.update(task, completed=skipped + sum(per_file.values()))

    try:
        return hub.resolve_model(model, progress=on_progress)
    finally:
        if bar is not None:
            bar.stop()


class _SynthProgress:
    """A live line on stderr while frames are generated: frames, seconds of audio, speed."""

    def __init__(self, live: bool, cap: int, count: int):
        self.live, self.cap, self.count = live, cap, count
        self.progress = None
        self.task = None

    def __enter__(self) -> "_SynthProgress":
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

        def on_frame(n: int) -> None:
            audio = n * 0.08
            speed = f"{audio / max(time.perf_counter() - start, 1e-9):.2f}× RT"
            self.progress.update(self.task, completed=n, audio=audio, speed=speed)

        return on_frame

    def done(self) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.remove_task(self.task)
            self.task = None


def _list_speakers(model: str) -> None:
    """Speakers and languages from config.json alone: a local folder or a known repo's shipped copy."""
    from ..io.config import ModelConfig
    from ..io.repos import find_repo, repo_metadata_files

    local = Path(model).expanduser()
    if local.is_dir():
        config = local / "config.json"
    else:
        repo = find_repo(model)
        if repo is not None and repo.kind == "model":
            config = repo_metadata_files(repo)["config.json"]
        else:
            from ..io.hub import resolve_model

            config = resolve_model(model, download_missing=False) / "config.json"
    cfg = ModelConfig.from_file(config)
    speakers = ", ".join(cfg.speakers) if cfg.speakers else "(none: this is a " + cfg.tts_model_type + " model)"
    sys.stdout.write(f"speakers: {speakers}\nlanguages: {', '.join(cfg.languages)}\n")


@app.command()
@guarded
def stream(
    text: Optional[str] = typer.Argument(None, help="Text to speak; '-' speaks standard input line by line as "
                                                    "lines arrive."),
    output: Optional[str] = typer.Option(
        None, "--output", "-o", metavar="FILE.wav",
        help="Write a 16-bit 24 kHz mono WAV as audio is produced, valid at every moment (also after "
             "Ctrl-C); '-' streams a WAV to stdout (its header says 'unknown length'). Default: play."),
    raw: bool = typer.Option(False, "--raw", help="Write raw s16le 24 kHz mono PCM to stdout as it is produced "
                                                  "(for aplay, ffplay, sox play)."),
    output_device: Optional[str] = typer.Option(None, "--output-device", metavar="DEVICE",
                                                help="Sound device to play on: index or name (default: the "
                                                     "system's default output)."),
    model: str = MODEL_OPTION,
    speaker: Optional[str] = SPEAKER_OPTION,
    language: str = LANGUAGE_OPTION,
    instruct: Optional[str] = INSTRUCT_OPTION,
    ref_audio: Optional[Path] = REF_AUDIO_OPTION,
    ref_text: Optional[str] = REF_TEXT_OPTION,
    xvector_only: bool = XVECTOR_ONLY_OPTION,
    voice_file: Optional[Path] = VOICE_OPTION,
    greedy: bool = GREEDY_OPTION,
    seed: Optional[int] = SEED_OPTION,
    max_frames: Optional[int] = MAX_FRAMES_OPTION,
    no_split: bool = NO_SPLIT_OPTION,
    max_chars: int = MAX_CHARS_OPTION,
    pause: float = PAUSE_OPTION,
    allow_truncation: bool = ALLOW_TRUNCATION_OPTION,
    temperature: Optional[float] = TEMPERATURE_OPTION,
    top_k: Optional[int] = TOP_K_OPTION,
    top_p: Optional[float] = TOP_P_OPTION,
    repetition_penalty: Optional[float] = REPETITION_PENALTY_OPTION,
    schedule: Optional[str] = typer.Option(None, "--schedule", metavar="N,N,…",
                                           help="Frames per audio chunk, the last repeating (default 1,2,4,8: "
                                                "first audio after one 80 ms frame)."),
    device: Optional[str] = DEVICE_OPTION,
    dtype: Optional[str] = DTYPE_OPTION,
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
    import time

    import numpy as np

    from ..errors import InputError

    if raw and output is not None:
        raise InputError("--raw writes to stdout; drop -o (or use -o FILE.wav without --raw)")
    if text is None:
        raise InputError("missing TEXT (or '-' to speak standard input line by line)")
    clone_ref, loaded_voice = _clone_options(ref_audio, ref_text, xvector_only, voice_file, speaker)
    sizes = _parse_schedule(schedule)
    to_stdout = raw or output == "-"
    if to_stdout and _stdout_is_terminal():
        raise InputError("refusing to write binary audio to a terminal: use -o FILE.wav, or pipe it "
                         "(e.g. --raw | aplay -r 24000 -f S16_LE -c 1 -t raw)")
    if output_device is not None and (to_stdout or output is not None):
        raise InputError("--output-device is for playback; drop it with -o/--raw")
    out_path = Path(output) if output not in (None, "-") else None
    if out_path is not None and not out_path.parent.is_dir():
        raise InputError(f"{out_path.parent}: folder does not exist")
    if text != "-":
        from ..text.segment import normalize_text

        if not normalize_text(text):
            raise InputError("text is empty" if not text.strip() else "text has nothing to speak (only control characters)")
    sd = None if to_stdout or out_path is not None else _stream_device(output_device)

    say = (lambda *a, **k: None) if quiet else (lambda msg: err.print(msg, soft_wrap=True))
    import torch

    from ..engine.tts import load_tts, parse_device

    dev = parse_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = _resolve_model_with_progress(model, not quiet and err.is_terminal, say)
    _check_clone_fits(folder, speaker, clone_ref is not None or loaded_voice is not None, loaded_voice)
    t0 = time.perf_counter()
    tts = load_tts(folder, device=dev, dtype=dtype)
    tts.decoder  # noqa: B018 (loaded now, outside the time to first audio)
    if speaker in (None, "") and tts.model_type == "custom_voice":
        speaker = tts.default_speaker
        say(f"speaker: {speaker} (default; --speaker to choose)")
    kw = dict(speaker=speaker, language=language, instruct=instruct, greedy=greedy, seed=seed,
              max_frames=max_frames, temperature=temperature, top_k=top_k, top_p=top_p,
              repetition_penalty=repetition_penalty, split=not no_split, max_chars=max_chars, pause=pause,
              schedule=sizes)
    tts.warm_up(**kw)  # CUDA: graphs captured now, not inside the first line's time to first audio
    t_load = time.perf_counter() - t0
    if clone_ref is not None:
        loaded_voice = tts.create_voice(clone_ref, ref_text=ref_text, xvector_only=xvector_only)
    if loaded_voice is not None:
        kw["voice"] = loaded_voice  # pinned: every line speaks with this one voice

    lines = _stdin_lines() if text == "-" else iter([text])
    gap = np.zeros(round(pause * tts.sample_rate), dtype=np.float32)
    sink = _StreamSink(sd, output_device, out_path, raw, to_stdout, tts.sample_rate)
    truncated = n_lines = frames = 0
    audio_s = busy_s = 0.0
    try:
        for line in lines:
            t1 = time.perf_counter()
            st = tts.stream(line, **kw)
            if n_lines:
                sink.write(gap)
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
        sink.finish()
    finally:
        sink.close()
    if n_lines == 0:
        raise InputError("standard input had no text (every line was empty)")
    where = {"raw": "stdout (raw s16le, 24000 Hz, mono)", "stdout-wav": "stdout (WAV)",
             "file": str(out_path), "play": "the sound device"}[sink.mode]
    say(f"{'played on' if sink.mode == 'play' else 'wrote'} {escape(where)}: {frames} frames ({audio_s:.2f} s of "
        f"audio{f', {n_lines} lines' if n_lines > 1 else ''}); load {t_load:.1f} s, synthesis {busy_s:.1f} s "
        f"({audio_s / max(busy_s, 1e-9):.2f}x real time)")
    if stats and n_lines > 1:
        err.print(f"stats: all: {audio_s:.2f} s of audio in {busy_s:.2f} s ({audio_s / max(busy_s, 1e-9):.2f}x "
                  "real time)", soft_wrap=True, highlight=False)
    if truncated and not allow_truncation:
        from ..errors import TruncatedError

        what = "the utterance was" if n_lines == 1 else f"{truncated} of {n_lines} lines were"
        raise TruncatedError(f"{what} cut short by the runaway guard (--allow-truncation to accept this "
                             "with exit status 0)")


def _parse_schedule(value: str | None) -> list[int] | None:
    from ..errors import InputError

    if value is None:
        return None
    try:
        sizes = [int(v) for v in value.split(",")]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise InputError(f"--schedule must be positive frame counts separated by commas (got {value!r})")
    return sizes


def _stdin_lines():
    """Non-empty lines of standard input, each as soon as it arrives (strict UTF-8)."""
    from ..errors import InputError
    from ..text.segment import normalize_text

    source = getattr(sys.stdin, "buffer", sys.stdin)
    for n, line in enumerate(iter(source.readline, b"" if source is not sys.stdin else ""), 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"standard input line {n} is not UTF-8 text") from None
        if normalize_text(line):
            yield line.strip()


def _stream_device(device: str | None):
    """sounddevice, checked to have an output device, before any weights load; else one line, exit 1."""
    hint = ("use -o FILE.wav, or pipe raw audio to a player: "
            "qwen3tts stream \"...\" --raw | aplay -r 24000 -f S16_LE -c 1 -t raw")
    try:
        import sounddevice as sd
    except ImportError:
        fail(f"live playback needs sounddevice (pip install 'qwen3tts-cli\\[play]'); or {hint}", 1)
    except OSError:  # the PortAudio library itself is missing
        fail(f"live playback needs the PortAudio library (e.g. apt install libportaudio2); or {hint}", 1)
    try:
        sd.query_devices(int(device) if device is not None and device.isdigit() else device, kind="output")
    except Exception as e:
        what = f"output device {device!r}" if device is not None else "a default output device"
        fail(f"no sound device to play on ({what}: {e}); {hint}", 1)
    return sd


class _StreamSink:
    """Where stream's chunks go, as they come: the sound device (through a writer thread, so that
    generation runs ahead of playback), a progressively written WAV, or stdout."""

    def __init__(self, sd, device, out_path, raw: bool, to_stdout: bool, rate: int):
        from ..io.audio import ProgressiveWavWriter, wav_header

        self.player = self.file = None
        if raw:
            self.mode = "raw"
        elif to_stdout:
            self.mode = "stdout-wav"
            _write_stdout(wav_header(None, rate))
        elif out_path is not None:
            self.mode = "file"
            self.file = ProgressiveWavWriter(out_path, rate)
        else:
            self.mode = "play"
            self.player = _Player(sd, device, rate)

    def write(self, chunk) -> None:
        if len(chunk) == 0:
            return
        if self.player is not None:
            self.player.write(chunk)
        elif self.file is not None:
            self.file.write(chunk)
        else:
            from ..io.audio import pcm16

            _write_stdout(pcm16(chunk))

    def finish(self) -> None:
        """Wait until everything was played."""
        if self.player is not None:
            self.player.finish()

    def close(self) -> None:
        """Stop now (after finish: just release); a file keeps what it has, with a valid header."""
        if self.player is not None:
            self.player.abort()
        if self.file is not None:
            self.file.close()


class _Player:
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


@app.command()
@guarded
def encode(
    audio_file: Path = typer.Argument(..., metavar="IN_AUDIO",
                                      help="Audio to encode: wav, flac or ogg, any sample rate and channel count."),
    model: str = typer.Option(..., "--model", "-m",
                              help="Model folder or Qwen3-TTS-Tokenizer-12Hz folder (or an official repo id)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="CODES.npy",
                                help="Codes to write: int64 .npy \\[frames, 16] (12.5 frames per second)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
) -> None:
    """Encode audio into codec codes (.npy) that `decode` turns back into audio.

    The audio is mixed to mono and resampled to 24 kHz (band-limited) before the codec encoder runs.
    """
    import time

    import torch

    from ..codec.encoder import CodecEncoder
    from ..engine.tts import parse_device, resolve_model_folder
    from ..errors import InputError
    from ..io.resample import load_audio, resample
    from ..voice.clone import CODEC_SAMPLE_RATE

    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: folder does not exist")
    if output.is_dir():
        raise InputError(f"{output}: is a folder, expected a .npy file name")
    wav, sr = load_audio(audio_file)
    dev = parse_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    encoder = CodecEncoder.from_folder(folder, device=dev)
    t1 = time.perf_counter()
    codes = encoder.encode(resample(wav, sr, CODEC_SAMPLE_RATE))
    t2 = time.perf_counter()
    _save_npy(output, codes)
    seconds = len(wav) / sr
    err.print(f"wrote {escape(str(output))}: {codes.shape[0]} frames from {seconds:.2f} s of audio "
              f"({sr} Hz); load {t1 - t0:.1f} s, encode {t2 - t1:.1f} s", soft_wrap=True)


voice_app = typer.Typer(help="Make and inspect reusable cloned voices (Base models).", no_args_is_help=True)
app.add_typer(voice_app, name="voice")


@voice_app.command("create")
@guarded
def voice_create(
    ref_audio: Path = typer.Option(..., "--ref-audio", metavar="AUDIO",
                                   help="Reference recording: wav, flac or ogg, at least 1 s (3-10 s of clear "
                                        "speech work best)."),
    ref_text: Optional[str] = typer.Option(None, "--ref-text",
                                           help="Transcript of the reference (in-context cloning, the default)."),
    xvector_only: bool = typer.Option(False, "--xvector-only",
                                      help="Clone from the speaker embedding alone: no transcript needed, "
                                           "weaker likeness."),
    model: str = typer.Option(..., "--model", "-m", help="Base model folder, repo id or short name (e.g. 0.6B-Base)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="VOICE.safetensors", help="Voice file to write."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
) -> None:
    """Turn reference audio into a voice file for `synth --voice` (no recomputation on reuse).

    The file records the model it was made for; it works with that model size only.
    """
    import time

    import torch

    from ..engine.tts import parse_device, resolve_model_folder
    from ..errors import InputError
    from ..voice.clone import VoiceMaker, save_voice

    if ref_text is not None and xvector_only:
        raise InputError("--ref-text is for in-context cloning: give --ref-text or --xvector-only, not both")
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: folder does not exist")
    if output.is_dir():
        raise InputError(f"{output}: is a folder, expected a file name")
    dev = parse_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    voice = VoiceMaker(folder, device=dev).create(str(ref_audio), ref_text=ref_text, xvector_only=xvector_only)
    save_voice(output, voice)
    what = (f"in-context, {voice.frames} reference frames" if voice.mode == "icl" else "x-vector only")
    err.print(f"wrote {escape(str(output))}: {what}, from {voice.ref_seconds:.2f} s of audio, for "
              f"{voice.describe_model()} ({time.perf_counter() - t0:.1f} s)", soft_wrap=True)


@voice_app.command("info")
@guarded
def voice_info(voice_file: Path = typer.Argument(..., metavar="VOICE.safetensors", help="A voice file.")) -> None:
    """Show what a voice file holds and which model it was made for."""
    from ..voice.clone import load_voice

    v = load_voice(voice_file)
    lines = [("mode", "in-context (x-vector + reference codes + transcript)" if v.mode == "icl"
              else "x-vector only"),
             ("model", v.describe_model()),
             ("x-vector", f"{v.xvector.numel()} values"),
             ("reference", f"{v.ref_seconds:.2f} s" + (f", {v.frames} frames" if v.mode == "icl" else "")),
             ("transcript", v.ref_text if v.ref_text is not None else "(none)"),
             ("made by", f"qwen3tts {v.tool_version}")]
    sys.stdout.write("".join(f"{k}: {val}\n" for k, val in lines))


@app.command()
@guarded
def decode(
    codes_file: Path = typer.Argument(..., metavar="CODES.npy",
                                      help="Codec codes: an integer .npy array [frames, 16], values 0..2047."),
    model: str = typer.Option(..., "--model", "-m",
                              help="Model folder or Qwen3-TTS-Tokenizer-12Hz folder (or an official repo id)."),
    output: Path = typer.Option(..., "--output", "-o", help="WAV file to write (16-bit PCM, 24 kHz)."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
) -> None:
    """Decode codec codes (.npy) into a 24 kHz WAV, exactly as the official decoder does."""
    import time

    import numpy as np
    import torch

    from ..io.audio import SAMPLE_RATE, WavWriter
    from ..codec import CodecDecoder, check_codes
    from ..engine.tts import parse_device, resolve_model_folder
    from ..errors import InputError

    if not codes_file.is_file():
        raise InputError(f"{codes_file}: file not found")
    try:
        codes = np.load(codes_file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{codes_file}: not a readable .npy array ({e})") from None
    if not isinstance(codes, np.ndarray):
        codes.close()
        raise InputError(f"{codes_file}: expected a single .npy array, not an .npz archive")
    try:
        check_codes(codes)
    except InputError as e:
        raise InputError(f"{codes_file}: {e}") from None
    if not output.parent.is_dir():
        raise InputError(f"{output.parent}: folder does not exist")
    dev = parse_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    decoder = CodecDecoder.from_folder(folder, device=dev)
    t1 = time.perf_counter()
    with WavWriter(output) as wav:
        for chunk in decoder.iter_decode(codes):
            wav.write(chunk.numpy())
    t2 = time.perf_counter()
    seconds = wav.frames / SAMPLE_RATE
    err.print(f"wrote {output}: {codes.shape[0]} frames, {seconds:.2f} s of audio; load {t1 - t0:.1f} s, "
              f"decode {t2 - t1:.1f} s ({seconds / max(t2 - t1, 1e-9):.1f}x real time)", soft_wrap=True)


@app.command()
@guarded
def bench(
    model: str = typer.Option(..., "--model", "-m",
                              help="Model folder, or an official repo id / short name (e.g. 0.6B-CustomVoice)."),
    random_weights: bool = typer.Option(False, "--random-weights",
                                        help="Random weights at the model's real shapes, built in memory from "
                                             "its config (an official name works offline): no download."),
    device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
    dtype: Optional[str] = typer.Option(None, "--dtype",
                                        help="float32, bfloat16; on CPU also w8a8 (int8 weights and "
                                             "activations: fastest) or int8 (int8 weights, bf16 "
                                             "activations). Default: float32 on CPU, bfloat16 on CUDA."),
    frames: int = typer.Option(25, "--frames", "-n", help="Timed frames (EOS suppressed; at least 3)."),
    batch: int = typer.Option(1, "--batch", "-b", help="Streams generated together."),
    warmup: int = typer.Option(3, "--warmup", help="Warm-up frames before timing."),
    threads: Optional[int] = typer.Option(None, "--threads", help="CPU threads (default: torch's choice)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object on stdout instead of the report."),
) -> None:
    """Measure speed and memory: ms per frame (talker, code predictor, codec, host), x real time,
    time to first audio, load and capture time, peak memory, share of the memory-bandwidth floor."""
    from ..bench.speed import run_bench, summary_lines, to_json

    result = run_bench(model, random_weights=random_weights, device=device, dtype=dtype, frames=frames,
                       batch=batch, warmup=warmup, threads=threads)
    if json_out:
        sys.stdout.write(to_json(result) + "\n")
    else:
        for line in summary_lines(result):
            err.print(escape(line), soft_wrap=True)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
