"""qwen3tts: a from-scratch PyTorch engine for the Qwen3-TTS 12 Hz models.

Three floors (docs/architecture.md): the networks (model/, codec/, voice/, text/, io/), the engine
(engine/: one request type, one pipeline, one frame loop), and the front doors on it (cli/, bench/).
Nothing below a front door imports typer, rich or a server package, so the engine is a library:

    from qwen3tts_cli.engine import load_tts
"""

__version__ = "0.1.0"
