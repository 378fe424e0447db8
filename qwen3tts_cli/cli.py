"""The `qwen3tts` command: parse arguments, print to stderr, map errors to exit codes.

Nothing else imports this module; the engine below it knows nothing of typer, rich or exit codes.
Exit codes: 0 success, 1 runtime/model failure, 2 bad usage or input, 130 interrupted.
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

from .errors import Qwen3TTSError

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
        except Exception as e:
            if os.environ.get("QWEN3TTS_DEBUG"):
                raise
            fail(f"internal error: {type(e).__name__}: {e} (set QWEN3TTS_DEBUG=1 for a traceback)", 1)

    return wrapper


def not_landed(command: str, issue: int) -> None:
    fail(f"`qwen3tts {command}` is not available in this version yet (tracked as issue #{issue})", 2)


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

    from . import hub
    from .repos import CODEC_WEIGHTS_SIZE, KNOWN_REPOS

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

    from .verify import verify_folder

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

@app.command()
@guarded
def synth(
    text: Optional[str] = typer.Argument(None, help="Text to speak; '-' reads standard input."),
    model: str = typer.Option("Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice", "--model", "-m",
                              help="Model folder, official repo id or short name (e.g. 1.7B-CustomVoice)."),
    speaker: Optional[str] = typer.Option(None, "--speaker", "-s", help="Built-in voice (CustomVoice models)."),
    language: str = typer.Option("auto", "--language", "-l", help="Language, or 'auto'."),
    instruct: Optional[str] = typer.Option(None, "--instruct", "-i",
                                           help="Style instruction (1.7B CustomVoice); voice description "
                                                "(VoiceDesign, required)."),
    greedy: bool = typer.Option(False, "--greedy", help="Deterministic argmax decoding (no sampling)."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed for sampling."),
    max_frames: Optional[int] = typer.Option(None, "--max-frames", min=1,
                                             help="Stop after this many 80 ms frames "
                                                  "(default: max_new_tokens of generation_config.json)."),
    temperature: Optional[float] = typer.Option(None, "--temperature", help="Sampling temperature (first code)."),
    top_k: Optional[int] = typer.Option(None, "--top-k", help="Top-k (first code); 0 disables."),
    top_p: Optional[float] = typer.Option(None, "--top-p", help="Top-p (first code)."),
    repetition_penalty: Optional[float] = typer.Option(None, "--repetition-penalty",
                                                       help="Penalty on first codes already used."),
    save_codes: Optional[Path] = typer.Option(None, "--save-codes",
                                              help="Write the codec codes as int64 .npy [frames, 16]."),
    device: Optional[str] = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available)."),
    dtype: Optional[str] = typer.Option(None, "--dtype",
                                        help="float32 or bfloat16 (default: float32 on CPU, bfloat16 on CUDA)."),
    list_speakers: bool = typer.Option(False, "--list-speakers",
                                       help="List the model's speakers and languages (no weights loaded) and exit."),
) -> None:
    """Synthesize speech from text (for now: the codec codes, saved with --save-codes)."""
    import time

    if list_speakers:
        _list_speakers(model)
        return
    if text is None:
        fail("missing TEXT (or '-' to read standard input)", 2)
    if save_codes is None:
        fail("synth writes codec codes only in this version: pass --save-codes FILE.npy "
             "(WAV output comes with the codec decoder, issue #4)", 2)
    if text == "-":
        text = sys.stdin.read()
    if not save_codes.parent.is_dir():
        fail(f"{save_codes.parent}: folder does not exist", 2)

    import numpy as np
    import torch

    from .engine import load_tts, parse_device, resolve_model_folder

    dev = parse_device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    tts = load_tts(folder, device=dev, dtype=dtype)
    t1 = time.perf_counter()
    result = tts.generate_codes(text, speaker=speaker, language=language, instruct=instruct, greedy=greedy,
                                seed=seed, max_frames=max_frames, temperature=temperature, top_k=top_k,
                                top_p=top_p, repetition_penalty=repetition_penalty)
    t2 = time.perf_counter()
    for w in result.warnings:
        err.print(f"[yellow]warning:[/] {w}", soft_wrap=True)
    codes = result.codes.numpy().astype(np.int64)
    tmp = save_codes.with_name(f".{save_codes.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            np.save(f, codes)
        os.replace(tmp, save_codes)
    finally:
        tmp.unlink(missing_ok=True)
    frames = codes.shape[0]
    err.print(f"wrote {save_codes}: {frames} frames ({frames * 0.08:.2f} s of audio), stop: "
              f"{result.stop_reason}; load {t1 - t0:.1f} s, generate {t2 - t1:.1f} s "
              f"({frames / max(t2 - t1, 1e-9):.2f} frames/s)", soft_wrap=True)


def _list_speakers(model: str) -> None:
    """Speakers and languages from config.json alone: a local folder or a known repo's shipped copy."""
    from .config import ModelConfig
    from .repos import find_repo, repo_metadata_files

    local = Path(model).expanduser()
    if local.is_dir():
        config = local / "config.json"
    else:
        repo = find_repo(model)
        if repo is not None and repo.kind == "model":
            config = repo_metadata_files(repo)["config.json"]
        else:
            from .hub import resolve_model

            config = resolve_model(model, download_missing=False) / "config.json"
    cfg = ModelConfig.from_file(config)
    speakers = ", ".join(cfg.speakers) if cfg.speakers else "(none: this is a " + cfg.tts_model_type + " model)"
    sys.stdout.write(f"speakers: {speakers}\nlanguages: {', '.join(cfg.languages)}\n")


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@guarded
def stream(ctx: typer.Context) -> None:
    """Synthesize incrementally and play (or pipe) audio as it is produced."""
    not_landed("stream", 6)


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@guarded
def encode(ctx: typer.Context) -> None:
    """Encode audio into codec codes (.npy)."""
    not_landed("encode", 5)


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

    from .audio import SAMPLE_RATE, WavWriter
    from .codec import CodecDecoder, check_codes
    from .engine import parse_device, resolve_model_folder
    from .errors import InputError

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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@guarded
def bench(ctx: typer.Context) -> None:
    """Measure speed and memory."""
    not_landed("bench", 7)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
