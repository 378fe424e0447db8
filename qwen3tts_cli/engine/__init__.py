"""The engine: load a model once, then turn requests into audio. Nothing here imports typer, rich
or a server package; the command line, the server and the bulk runner are front doors on it.

    from qwen3tts_cli.engine import load_tts, SpeechRequest
    tts = load_tts("path/to/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    result = tts.synthesize("Hello.", speaker="ryan", seed=0)

    request = SpeechRequest("Hello.", speaker="ryan", seed=0)   # checked now, no model needed
    result = tts.synthesize(request)
"""

_EXPORTS = {
    "TTS": "tts",
    "SpeechStream": "results", "StreamResult": "results", "SynthesisResult": "results",
    "DEFAULT_PAUSE": "request", "DEFAULT_SPEAKER": "request", "DEFAULT_STREAM_SCHEDULE": "request",
    "CloneReference": "request", "RequestError": "request", "ResolvedRequest": "request", "SpeechRequest": "request",
    "build_tts": "load", "default_device": "load", "load_tts": "load", "model_files": "load",
    "parse_device": "load", "parse_dtype": "load", "parse_precision": "load", "resolve_model_folder": "load",
}


def __getattr__(name: str):
    # Resolved on first use: importing a light module (request.py, for the CLI's defaults) must not
    # load torch, which takes a second or more.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
