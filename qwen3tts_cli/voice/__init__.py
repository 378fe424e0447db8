"""Cloned voices (Base models): the speaker encoder, voice prompts and their voice files.

    from qwen3tts_cli.voice import load_voice, save_voice, VoicePrompt, CloneReference
"""

_EXPORTS = {"VoicePrompt": "clone", "load_voice": "clone", "save_voice": "clone", "CloneReference": "reference"}


def __getattr__(name: str):
    # Resolved on first use, so that importing a light submodule (reference.py) does not load torch.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_EXPORTS)
