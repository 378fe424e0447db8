"""Cloned voices (Base models): the speaker encoder, voice prompts and their voice files."""

from .clone import VoicePrompt, load_voice, save_voice

__all__ = ["VoicePrompt", "load_voice", "save_voice"]
