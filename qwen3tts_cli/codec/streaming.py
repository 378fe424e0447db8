"""Streaming codec decode: frames in as they are generated, exactly their 1920 samples each out.

The decoder is causal end to end, so instead of re-decoding left context for every chunk a
``DecoderState`` carries what each layer still needs from the past: the last ``(k-1)*dilation``
inputs of every causal conv, the overhang (``k - stride`` samples) of every transposed conv, and the
transformer's keys/values for its sliding window. ``CodecDecoder.forward(codes, state)`` uses it.

Samples come out final: the offline decode cuts each transposed conv's overhang at the end of a
chunk, and that overhang only ever adds to *later* samples, so nothing emitted changes and there is
nothing to flush at the end (the carried overhang is simply dropped, as offline).

``StreamingDecoder`` also reproduces the official chunk grid (``decoder.chunk_grid``): the offline
decode restarts every 300 frames from a fresh decoder fed the 25 frames before the boundary. Here a
second state starts 25 frames before each boundary, is fed the same frames (its audio discarded) and
takes over at the boundary, so the stream equals ``CodecDecoder.decode`` for any chunking of the
input and the rebuild costs no latency spike.
"""

from __future__ import annotations

import numpy as np
import torch

from ..layers import KVCache, attention_mask
from .decoder import CHUNK_FRAMES, LEFT_CONTEXT_FRAMES, CodecDecoder, check_codes


class DecoderState:
    """Everything a ``CodecDecoder`` carries from one call to the next (batch 1).

    Keys/values live in preallocated per-layer buffers of ``capacity`` slots; positions count from
    the state's first frame (the RoPE positions of the offline chunk). When the buffers fill up, the
    last window-1 entries move to the front (keys are stored already rotated, so only slots change).
    """

    def __init__(self, decoder: CodecDecoder, capacity: int | None = None):
        cfg = decoder.cfg
        weight = decoder.pre_conv.conv.weight
        self.window = cfg.sliding_window
        # One grid chunk (context + 300 frames) fits, and so does a 300-frame input after a shift.
        self.capacity = capacity or CHUNK_FRAMES + max(LEFT_CONTEXT_FRAMES, self.window - 1)
        self.kv = [KVCache(1, self.capacity, cfg.num_key_value_heads, cfg.head_dim, weight.dtype, weight.device)
                   for _ in range(cfg.num_hidden_layers)]
        self.pos = 0  # frames seen
        self.offset = 0  # position held by KV slot 0
        self._history: dict[int, torch.Tensor] = {}
        self._overhang: dict[int, torch.Tensor] = {}

    def history(self, module, x: torch.Tensor, n: int) -> torch.Tensor:
        """``x`` preceded by the last ``n`` samples this module saw (zeros at the start)."""
        if n == 0:
            return x
        prev = self._history.get(id(module))
        if prev is None:
            prev = x.new_zeros(*x.shape[:-1], n)
        x = torch.cat((prev, x), dim=-1)
        # A copy, so that the whole (possibly large) input is not kept alive.
        self._history[id(module)] = x[..., -n:].clone()
        return x

    def overlap_add(self, module, y: torch.Tensor, n_out: int) -> torch.Tensor:
        """Add the previous overhang to the start of ``y``, keep ``y[n_out:]`` for the next call."""
        tail = self._overhang.get(id(module))
        if tail is not None:
            y[..., : tail.shape[-1]] += tail
        self._overhang[id(module)] = y[..., n_out:].clone()
        return y[..., :n_out]

    def attention_span(self, T: int):
        """(positions [T], mask [T, kv_len], KV slots [T], kv_len) for the next T frames."""
        if T > self.capacity - (self.window - 1):
            raise ValueError(f"at most {self.capacity - self.window + 1} frames per call (got {T})")
        used = self.pos - self.offset
        if used + T > self.capacity:
            keep = min(self.window - 1, used)
            for cache in self.kv:
                for buf in (cache.k_cache, cache.v_cache):
                    buf[:, :, :keep] = buf[:, :, used - keep:used].clone()
            self.offset = self.pos - keep
            used = keep
        device = self.kv[0].k_cache.device
        positions = torch.arange(self.pos, self.pos + T, device=device)
        keys = torch.arange(self.offset, self.pos + T, device=device)
        mask = attention_mask(positions, keys, self.window)
        self.pos += T
        return positions, mask, positions - self.offset, used + T


class StreamingDecoder:
    """Decode codes [n, 16] (or one frame [16]) at a time; ``push`` returns exactly their samples.

        dec = StreamingDecoder(codec)
        for frames in chunks:           # any split: 1 frame, 4 frames, 300 frames…
            play(dec.push(frames))      # float32 [n * 1920]
        # concatenated: equal to codec.decode(all_codes) (fp32 rounding apart)

    ``whole_sequence=True`` never resets: the same as ``CodecDecoder.decode(codes, whole_sequence=True)``,
    which is not the official output past 300 frames.

    For ICL voice clone, push the reference codes first and drop their samples: the grid is anchored
    at the first frame pushed.
    """

    def __init__(self, decoder: CodecDecoder, whole_sequence: bool = False,
                 chunk: int = CHUNK_FRAMES, context: int = LEFT_CONTEXT_FRAMES):
        if not 0 <= context < chunk:
            raise ValueError("the grid's context must be shorter than its chunk")
        self.decoder = decoder
        self.whole_sequence = whole_sequence
        self.chunk, self.context = chunk, context
        self.hop = decoder.hop
        self.frames = 0
        self._state = DecoderState(decoder)
        self._next: DecoderState | None = None  # being rebuilt for the next grid boundary

    def _span(self) -> tuple[int, bool]:
        """(frames until the next split point, whether they also feed the next chunk's state)."""
        f = self.frames
        if self.whole_sequence:
            return self.chunk, False
        boundary = (f // self.chunk + 1) * self.chunk
        rebuild_from = boundary - self.context  # the offline chunk's ctx = 25 since 300 - 25 > 0
        if f < rebuild_from:
            return rebuild_from - f, False
        return boundary - f, True

    @torch.inference_mode()
    def push(self, codes) -> torch.Tensor:
        """codes [n, 16] or [16] -> float32 CPU samples [n * hop]."""
        if isinstance(codes, (torch.Tensor, np.ndarray)) and codes.ndim == 1:
            codes = codes.reshape(1, -1)
        codes = check_codes(codes, self.decoder.cfg.num_quantizers, self.decoder.cfg.codebook_size)
        codes = codes.to(self.decoder.device)
        out = []
        i = 0
        while i < codes.shape[0]:
            span, rebuild = self._span()
            piece = codes[i:i + span].T.unsqueeze(0)
            if rebuild:
                if self._next is None:
                    self._next = DecoderState(self.decoder)
                self.decoder(piece, self._next)  # context frames: state only, audio dropped
            out.append(self.decoder(piece, self._state)[0, 0])
            n = piece.shape[-1]
            i += n
            self.frames += n
            if rebuild and self.frames % self.chunk == 0:
                self._state, self._next = self._next, None
        if not out:
            return torch.zeros(0)
        return torch.cat(out).float().cpu()

    @property
    def samples(self) -> int:
        return self.frames * self.hop


def decode_in_chunks(decoder: CodecDecoder, codes, sizes, whole_sequence: bool = False) -> torch.Tensor:
    """Stream ``codes`` [T, 16] through a fresh ``StreamingDecoder`` in pieces of ``sizes`` frames
    (cycled; e.g. [1] frame by frame) and concatenate: a check of the streaming path against
    ``decoder.decode``."""
    codes = check_codes(codes, decoder.cfg.num_quantizers, decoder.cfg.codebook_size)
    sizes = list(sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError("sizes must be positive")
    dec = StreamingDecoder(decoder, whole_sequence=whole_sequence)
    out, i, k = [], 0, 0
    while i < codes.shape[0]:
        n = sizes[k % len(sizes)]
        out.append(dec.push(codes[i:i + n]))
        i += n
        k += 1
    return torch.cat(out)


__all__ = ["DecoderState", "StreamingDecoder", "decode_in_chunks"]
