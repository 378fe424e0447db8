"""qwen3tts: a from-scratch PyTorch engine for the Qwen3-TTS 12 Hz models.

The engine (everything in this package except ``cli``) never imports typer or rich, so it can be
used as a library.
"""

__version__ = "0.1.0"
