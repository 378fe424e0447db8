"""The `qwen3tts` command: every command registered on the app, in the order --help lists them,
each guarded (errors become one line and an exit code, app.py); and the entry point."""

from __future__ import annotations

from . import bench, bulk, codec, models, serve, stream, synth, voice
from .app import app, guarded

__all__ = ["app", "main"]

for fn in (models.download, models.verify, synth.synth, stream.stream, codec.encode, codec.decode, bench.bench,
           serve.serve, bulk.bulk):
    app.command()(guarded(fn))
voice.voice_app.command("create")(guarded(voice.voice_create))
voice.voice_app.command("info")(guarded(voice.voice_info))
app.add_typer(voice.voice_app, name="voice")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
