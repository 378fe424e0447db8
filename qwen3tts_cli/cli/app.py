"""The Typer app, the stderr console, and the one place where failures become exit codes.

Exit codes: 0 success, 1 runtime/model failure, 2 bad usage or input, 3 audio cut short by the
runaway guard (synth; the audio is still written; --allow-truncation makes it 0), 130 interrupted.
"""

from __future__ import annotations

import functools
import os
import sys

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from ..errors import Qwen3TTSError, RequestError

# The parser's error base class, whether typer carries its own copy of click (>= 0.20) or not.
_ClickException = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "ClickException")


class _OneLineErrors(TyperGroup):
    """Usage errors the parser finds (an unknown option, a value out of an option's range) as one
    `error:` line and exit status 2, like every other error, instead of click's framed box."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)
        try:
            code = super().main(*args, standalone_mode=False, **kwargs)
        except _ClickException as e:
            ctx = getattr(e, "ctx", None)
            if type(e).__name__ == "NoArgsIsHelpError" and ctx is not None:  # a bare `qwen3tts`: the help
                typer.echo(ctx.get_help())
                sys.exit(e.exit_code)
            where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
            err.print(f"[bold red]error:[/] {escape(e.format_message())}{escape(where)}", soft_wrap=True)
            sys.exit(e.exit_code)
        except typer.Abort:
            err.print("[bold red]error:[/] aborted", soft_wrap=True)
            sys.exit(1)
        except OSError as e:  # help or the version written to a stdout that failed (reader gone, disk full)
            stdout_to_devnull()
            why = "was closed" if isinstance(e, BrokenPipeError) else f"failed ({e.strerror or e})"
            err.print(f"[bold red]error:[/] standard output {escape(why)}", soft_wrap=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


def stdout_to_devnull() -> None:
    """After stdout failed: point it at /dev/null, so Python's flush at exit does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # no stdout at all
        pass


app = typer.Typer(
    cls=_OneLineErrors,
    name="qwen3tts",
    help="Qwen3-TTS 12 Hz text-to-speech: download, verify, synthesize, stream, encode, decode, bench, serve, bulk.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True, highlight=False)


def _print_version(value: bool) -> None:
    if value:
        from .. import __version__

        typer.echo(f"qwen3tts {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                       help="Print the version and exit.")) -> None:
    """Qwen3-TTS 12 Hz text-to-speech: download, verify, synthesize, stream, encode, decode, bench, serve, bulk."""


def fail(message: str, code: int) -> None:
    """One clear line on stderr, then exit with ``code``."""
    err.print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)
    raise typer.Exit(code)


# A request field as this tool's flag (or argument) names it.
_FLAGS = {name: "--" + name.replace("_", "-") for name in (
    "instruct", "ref_text", "speaker", "language", "temperature", "top_k", "top_p", "repetition_penalty", "pause",
    "seed", "max_frames", "max_chars")} | {"text": "TEXT"}

def model_kind(model_type: str) -> str:
    """config.json's tts_model_type as the model names say it (custom_voice -> CustomVoice)."""
    return {"base": "a Base model", "custom_voice": "a CustomVoice model",
            "voice_design": "a VoiceDesign model"}.get(model_type, f"a {model_type} model")


# The engine names a request's fields; here they are worded in terms of this tool's flags.
_FLAG_WORDING = {
    "ref_text_missing": lambda e: "in-context cloning needs the transcript of the reference audio: add --ref-text "
                                  "\"...\", or use --xvector-only to clone from the speaker embedding alone",
    "ref_text_with_xvector_only": lambda e: "--ref-text is for in-context cloning: give --ref-text or "
                                            "--xvector-only, not both",
    "speaker_and_voice": lambda e: "--speaker picks a built-in voice of a CustomVoice model; --ref-audio/--voice "
                                   "clone a voice with a Base model: use one or the other",
    "voice_unsupported": lambda e: f"--ref-audio/--voice clone a voice and need a Base model; this model is "
                                   f"{model_kind(e.context['model_type'])} (use --speaker or --instruct instead)",
    "instruct_required": lambda e: "a VoiceDesign model needs an instruction describing the voice: give --instruct \"...\"",
    "instruct_unsupported": lambda e: "a Base model speaks in the cloned voice and takes no --instruct: drop it",
    "voice_required": lambda e: "a Base model speaks in a cloned voice: give --ref-audio AUDIO with --ref-text "
                                "\"...\" (or --xvector-only), or --voice FILE from `qwen3tts voice create`",
    "not_unicode": lambda e: (f"{_FLAGS.get(e.field, e.field)} is not UTF-8 text ({e.context['what']} "
                              f"at character {e.context['at']})"),
    "sampling_invalid": lambda e: _as_flag(str(e)),
    "pause_range": lambda e: _as_flag(str(e)),
    "seed_range": lambda e: _as_flag(str(e)),
    "max_frames_range": lambda e: _as_flag(str(e)),
    "max_chars_range": lambda e: _as_flag(str(e)),
    "cuda_unavailable": lambda e: "device 'cuda' requested but CUDA is not available (use --device cpu)",
    "speaker_unsupported": lambda e: (
        "a Base model has no built-in speakers: clone a voice with --ref-audio (and --ref-text or --xvector-only) "
        "or --voice FILE instead of --speaker" if e.context.get("model_type") == "base" else str(e)),
}


def _as_flag(text: str) -> str:
    # "top_k must be ..." -> "--top-k must be ..."; generation_config.json's other names stay as they are.
    name = text.split(" ", 1)[0]
    return _FLAGS[name] + text[len(name):] if _FLAGS.get(name, "").startswith("--") else text


def message(e: Qwen3TTSError) -> str:
    """The line shown for an engine error (a request error in this tool's terms)."""
    if isinstance(e, RequestError) and e.code in _FLAG_WORDING:
        return _FLAG_WORDING[e.code](e)
    return str(e)


def guarded(fn):
    """Run a command body so that no failure escapes as a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except typer.Exit:
            raise
        except Qwen3TTSError as e:
            fail(message(e), e.exit_code)
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
