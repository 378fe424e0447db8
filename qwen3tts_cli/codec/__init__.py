"""The speech tokenizer (Qwen3-TTS-Tokenizer-12Hz): 24 kHz audio <-> 16 codes per 80 ms frame."""

from .decoder import CHUNK_FRAMES, LEFT_CONTEXT_FRAMES, CodecDecoder, check_codes, chunk_grid
from .encoder import CodecEncoder

__all__ = ["CHUNK_FRAMES", "LEFT_CONTEXT_FRAMES", "CodecDecoder", "CodecEncoder", "check_codes", "chunk_grid"]
