"""The `qwen3tts` command: every command registered on the app, in the order --help lists them,
each guarded (errors become one line and an exit code, app.py); and the entry point."""

from __future__ import annotations

from . import bench, codec, models, stream, synth, voice
from .app import app, guarded

__all__ = ["app", "main"]

for fn in (models.download, models.verify, synth.synth, stream.stream, codec.encode, codec.decode, bench.bench):
    app.command()(guarded(fn))
voice.voice_app.command("create")(guarded(voice.voice_create))
voice.voice_app.command("info")(guarded(voice.voice_info))
app.add_typer(voice.voice_app, name="voice")


def main() -> None:
    """Console-script entry point."""
    import os
    import sys

    try:
        app()
    except OSError as e:  # help or the version written to a stdout that failed (reader gone, disk full)
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no second failure at exit
        except (AttributeError, OSError, ValueError):
            pass
        why = "was closed" if isinstance(e, BrokenPipeError) else f"failed ({e.strerror or e})"
        print(f"error: standard output {why}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
