"""`download` and `verify`, and finding a model for the other commands (downloading it with a
progress bar on first use)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.markup import escape

from .app import err, fail, model_kind
from .options import QUIET_OPTION
from .output import print_stdout


def download(
    repo_id: Optional[str] = typer.Argument(None, help="Repo id, e.g. Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice. "
                                                  "Without it, list the official repos."),
    revision: Optional[str] = typer.Option(None, "--revision", "-r", help="Branch, tag or commit."),
    dir: Optional[Path] = typer.Option(None, "--dir", "-d", help="Download into this folder instead of the "
                                                           "Hugging Face cache."),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Download a model (resumable, SHA-256 checked) and save a manifest for offline `verify`.

    The folder it lands in is printed on stdout (also with --quiet)."""
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
    with Progress(*columns, console=err, transient=True, disable=quiet) as bar:
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
    if not quiet:
        err.print(f"downloaded {escape(repo_id)} into {escape(str(folder))}", soft_wrap=True)
    print_stdout(f"{folder}\n")


def verify(
    path: Path = typer.Argument(..., help="A model folder (or a Qwen3-TTS-Tokenizer-12Hz folder)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON report on stdout."),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Check a model folder: files, configs, every tensor, sizes and SHA-256.

    With --quiet only the exit status (and a failure's one line) tells the result."""
    import json

    from rich.table import Table
    from rich.text import Text

    from ..io.verify import verify_folder

    if err.is_terminal and not json_out and not quiet:
        with err.status("checking…") as status:
            report = verify_folder(path, progress=lambda msg: status.update(msg + "…"))
    else:
        report = verify_folder(path)
    failed = [c.name for c in report.failures]
    if json_out:
        print_stdout(json.dumps(report.to_dict(), ensure_ascii=False) + "\n")
    elif not quiet:
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
    if not json_out and not quiet:
        err.print(f"[bold green]ok:[/] {escape(str(path))}: all {len(report)} checks hold "
                  f"({sum(c.status == 'skip' for c in report)} skipped)", soft_wrap=True)


def resolve_model_with_progress(model: str, live: bool, say) -> Path:
    """A local folder as is; an official model from the cache, downloading it on first use."""
    from ..engine.load import resolve_model_folder

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
        return resolve_model_folder(model, progress=on_progress)
    finally:
        if bar is not None:
            bar.stop()


def list_speakers(model: str) -> None:
    """Speakers and languages from config.json alone: a local folder or a known repo's shipped copy
    (else a download in the hub cache)."""
    from ..engine.load import model_files, resolve_model_folder
    from ..io.config import ModelConfig

    files = model_files(model)
    config = files.config if files is not None else resolve_model_folder(model, download_missing=False) / "config.json"
    cfg = ModelConfig.from_file(config)
    speakers = ", ".join(cfg.speakers) if cfg.speakers else f"(none: this is {model_kind(cfg.tts_model_type)})"
    print_stdout(f"speakers: {speakers}\nlanguages: {', '.join(cfg.languages)}\n")
