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
    err.print(f"[bold red]error:[/] {message}", soft_wrap=True)
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
    not_landed("download", 2)


@app.command()
@guarded
def verify(
    path: Path = typer.Argument(..., help="A model folder (or a Qwen3-TTS-Tokenizer-12Hz folder)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON report on stdout."),
) -> None:
    """Check a model folder: files, configs, every tensor, sizes and SHA-256."""
    not_landed("verify", 2)


# ---------------------------------------------------------------------------------------------
# synthesis
# ---------------------------------------------------------------------------------------------

@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@guarded
def synth(ctx: typer.Context) -> None:
    """Synthesize speech from text."""
    not_landed("synth", 3)


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


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@guarded
def decode(ctx: typer.Context) -> None:
    """Decode codec codes (.npy) into a 24 kHz WAV."""
    not_landed("decode", 4)


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
