"""`qwen3tts serve`: the OpenAI-compatible speech server (qwen3tts_cli/server) on one loaded model."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

import typer

from ..errors import InputError
from .options import DEVICE_OPTION, DTYPE_OPTION, QUIET_OPTION

API_KEY_ENV = "QWEN3TTS_API_KEY"


def serve(
    model: str = typer.Option(..., "--model", "-m", help="Model folder, official repo id or short name."),
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on (0.0.0.0: every interface)."),
    port: int = typer.Option(8000, "--port", help="Port to listen on."),
    device: Optional[str] = DEVICE_OPTION,
    dtype: Optional[str] = DTYPE_OPTION,
    max_batch: int = typer.Option(4, "--max-batch", min=1, help="Requests generated together in one batch."),
    max_queue: int = typer.Option(16, "--max-queue", min=0,
                                  help="Requests that may wait beyond --max-batch; past that: 429."),
    api_key: Optional[str] = typer.Option(None, "--api-key", metavar="KEY",
                                          help=f"Require 'Authorization: Bearer KEY' on every route but /health "
                                               f"(default: ${API_KEY_ENV})."),
    voices_dir: Optional[Path] = typer.Option(None, "--voices-dir", metavar="DIR",
                                              help="Folder of saved voices (Base models): POST /v1/audio/voices "
                                                   "writes there, voice=NAME reads NAME.safetensors."),
    max_input_chars: int = typer.Option(4096, "--max-input-chars", min=1, help="Longest input; longer: 413."),
    quiet: bool = QUIET_OPTION,
) -> None:
    """Serve speech over HTTP and WebSocket, OpenAI-style (POST /v1/audio/speech).

    One process serves one model, every request through one dynamic batch; binds 127.0.0.1 unless --host says otherwise.

    Needs the \\[serve] extra (FastAPI, uvicorn).
    """
    from .app import err
    from .models import resolve_model_with_progress
    from .output import say_to_stderr
    from .speech import load_model

    if not 0 < port < 65536:
        raise InputError(f"--port must be from 1 to 65535 (got {port})")
    if voices_dir is not None and not voices_dir.is_dir():
        raise InputError(f"--voices-dir {voices_dir}: folder does not exist")
    if voices_dir is not None and not os.access(voices_dir, os.W_OK | os.X_OK):
        raise InputError(f"--voices-dir {voices_dir}: folder is not writable")
    try:
        import uvicorn

        from ..server.app import ServerSettings, create_app
    except ImportError as e:
        raise InputError(f"serve needs the [serve] extra ({e.name} is missing): pip install 'qwen3tts-cli[serve]'") \
            from None
    key = api_key if api_key is not None else os.environ.get(API_KEY_ENV) or None
    from ..engine import parse_device
    from ..engine.scheduler import Scheduler

    say = say_to_stderr(quiet)
    dev = parse_device(device)
    folder = resolve_model_with_progress(model, not quiet and err.is_terminal, say)
    tts, t_load = load_model(folder, dev, dtype)
    tts.decoder  # noqa: B018 (loaded before the first request)
    model_id = folder.name
    with Scheduler(tts, max_batch=max_batch, max_queue=max_queue) as scheduler:
        scheduler.warm_up()  # on CUDA: the batch's graphs, captured before the first caller waits for them
        say(f"serving {model_id} ({tts.model_type}) on http://{host}:{port} (load {t_load:.1f} s, batch up to "
            f"{max_batch}{', API key required' if key else ''})")
        app = create_app(tts, scheduler, ServerSettings(model_id, api_key=key, max_input_chars=max_input_chars,
                                                        voices_dir=voices_dir))
        uvicorn.run(app, host=host, port=port, log_level="warning" if quiet else "info")
