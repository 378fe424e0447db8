"""The engine: load a model once, then turn requests into audio. Nothing here imports typer, rich
or a server package; the command line, the server and the bulk runner are front doors on it.

    from qwen3tts_cli.engine import load_tts
    tts = load_tts("path/to/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    result = tts.synthesize("Hello.", speaker="ryan", seed=0)
"""

from .tts import (DEFAULT_STREAM_SCHEDULE, TTS, SpeechStream, StreamResult, SynthesisResult, build_tts, load_tts,
                  parse_device, parse_dtype, parse_precision, resolve_model_folder)

__all__ = ["DEFAULT_STREAM_SCHEDULE", "TTS", "SpeechStream", "StreamResult", "SynthesisResult", "build_tts",
           "load_tts", "parse_device", "parse_dtype", "parse_precision", "resolve_model_folder"]
