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

import threading
import weakref

import numpy as np
import torch

from ..model.layers import KVCache, attention_mask
from .decoder import (CHUNK_FRAMES, LEFT_CONTEXT_FRAMES, CausalConv1d, CausalConvTranspose1d, CodecDecoder,
                      check_codes)


class DecoderState:
    """Everything a ``CodecDecoder`` carries from one call to the next (batch 1), in buffers
    allocated once: the same addresses for the state's whole life, so a CUDA graph can be
    captured over them (``StreamStates``), and ``reset`` starts it over in place.

    Keys/values live in per-layer ring buffers of ``capacity`` slots: position p goes to slot
    p % capacity (keys are stored already rotated, so a slot's position does not matter to the
    arithmetic), and a key is masked unless it is within the window before its query. Positions
    count from the state's first frame (the RoPE positions of the offline chunk) and are kept on
    the device, so that a captured call advances them itself.
    """

    def __init__(self, decoder: CodecDecoder, capacity: int | None = None):
        cfg = decoder.cfg
        weight = decoder.pre_conv.conv.weight
        dtype, device = weight.dtype, weight.device
        self.window = cfg.sliding_window
        # One grid chunk (context + 300 frames) fits in one call.
        self.capacity = capacity or CHUNK_FRAMES + max(LEFT_CONTEXT_FRAMES, self.window - 1)
        # A call of T frames overwrites the slots of positions pos+T-1-capacity and earlier; the
        # first query still needs pos-window+1.
        self.max_frames = self.capacity - self.window + 1
        if self.max_frames < 1:
            raise ValueError(f"capacity must exceed the attention window ({self.window} frames)")
        self.kv = [KVCache(1, self.capacity, cfg.num_key_value_heads, cfg.head_dim, dtype, device)
                   for _ in range(cfg.num_hidden_layers)]
        self.pos = torch.zeros((), dtype=torch.long, device=device)  # frames seen
        self._slots = torch.arange(self.capacity, device=device)
        # The last (k-1)*dilation inputs of every causal conv, the overhang of every transposed conv:
        # zeros at the start, as the offline decode pads.
        self._history = {id(m): torch.zeros(1, m.conv.in_channels, m.left_pad, dtype=dtype, device=device)
                         for m in decoder.modules() if isinstance(m, CausalConv1d) and m.left_pad}
        self._overhang = {id(m): torch.zeros(1, m.conv.out_channels, m.right_trim, dtype=dtype, device=device)
                          for m in decoder.modules() if isinstance(m, CausalConvTranspose1d) and m.right_trim}

    def buffers(self) -> list[torch.Tensor]:
        """Every tensor the state carries (what a snapshot must hold)."""
        kv = [buf for cache in self.kv for buf in (cache.k_cache, cache.v_cache)]
        return [self.pos, *self._history.values(), *self._overhang.values(), *kv]

    def reset(self) -> None:
        """Back to a fresh state, in place. Old keys stay in the ring but are masked (their
        positions would be negative)."""
        self.pos.zero_()
        for buf in (*self._history.values(), *self._overhang.values()):
            buf.zero_()

    def snapshot(self) -> list[torch.Tensor]:
        return [buf.clone() for buf in self.buffers()]

    def restore(self, snapshot: list[torch.Tensor]) -> None:
        for buf, saved in zip(self.buffers(), snapshot):
            buf.copy_(saved)

    def history(self, module, x: torch.Tensor, n: int) -> torch.Tensor:
        """``x`` preceded by the last ``n`` samples this module saw (zeros at the start)."""
        if n == 0:
            return x
        prev = self._history[id(module)]
        x = torch.cat((prev, x), dim=-1)
        prev.copy_(x[..., -n:])
        return x

    def overlap_add(self, module, y: torch.Tensor, n_out: int) -> torch.Tensor:
        """Add the previous overhang to the start of ``y``, keep ``y[n_out:]`` for the next call."""
        tail = self._overhang[id(module)]
        y[..., : tail.shape[-1]] += tail
        tail.copy_(y[..., n_out:])
        return y[..., :n_out]

    def attention_span(self, T: int):
        """(positions [T], mask [T, capacity], KV slots [T], capacity) for the next T frames; all
        computed on the device from ``pos``, which moves on by T."""
        if T > self.max_frames:
            raise ValueError(f"at most {self.max_frames} frames per call (got {T})")
        positions = self.pos + torch.arange(T, device=self.pos.device)
        last = self.pos + (T - 1)
        # Position each slot holds once this call's keys are written (negative: never written).
        key_pos = last - torch.remainder(last - self._slots, self.capacity)
        mask = attention_mask(positions, key_pos, self.window) & (key_pos >= 0)
        self.pos += T
        return positions, mask, torch.remainder(positions, self.capacity), self.capacity


# Streaming calls of up to this many frames replay a CUDA graph (one per state and length, captured
# on first use); longer ones (a voice's reference codes, big chunks) run eagerly on the same state.
GRAPH_MAX_FRAMES = 16


class StreamStates:
    """The two DecoderStates of a stream (the current grid chunk's and the next one's, rebuilt from
    25 frames before the boundary), kept with the decoder (``for_decoder``) so that every stream
    reuses the same buffers: no allocation on a stream's first push, and on CUDA the graphs
    captured over them stay valid. One stream at a time uses them (``acquire``)."""

    def __init__(self, decoder: CodecDecoder, capture: bool):
        self.decoder = decoder
        self.states = [DecoderState(decoder), DecoderState(decoder)]
        self.capture = capture
        self.graphs: dict[tuple[int, int], tuple] = {}  # (state, frames) -> (graph, codes in, audio out)
        self.pool = None
        self.capture_s = 0.0  # seconds spent capturing (bench)
        self._owner = None
        self._lock = threading.Lock()

    @staticmethod
    def for_decoder(decoder: CodecDecoder, cuda_graphs: bool | None = None) -> "StreamStates":
        from ..model.cuda_graphs import use_cuda_graphs

        capture = use_cuda_graphs(decoder.device, decoder.runtime.cuda_graphs if cuda_graphs is None else cuda_graphs)
        pair = getattr(decoder, "_stream_states", None)
        # The states hold the weights' device and dtype: a moved decoder needs new ones.
        weight = decoder.pre_conv.conv.weight
        if (pair is None or pair.capture != capture or pair.states[0].pos.device != weight.device
                or pair.states[0].kv[0].k_cache.dtype != weight.dtype):
            pair = StreamStates(decoder, capture)
            decoder._stream_states = pair
        return pair

    def acquire(self, owner) -> bool:
        """Take the states for ``owner`` (reset); False while another live stream holds them."""
        with self._lock:  # streams may start on several threads
            current = None if self._owner is None else self._owner()
            if current is not None and current is not owner:
                return False
            self._owner = weakref.ref(owner)
        for state in self.states:
            state.reset()
        return True

    @torch.inference_mode()
    def prepare(self, sizes) -> None:
        """Capture both states' graphs for pushes of these frame counts now (CUDA graphs on;
        otherwise nothing to do), so that no stream captures while others run."""
        if not self.capture:
            return
        for n in sorted(set(sizes)):
            for i in range(len(self.states)):
                if 0 < n <= GRAPH_MAX_FRAMES and (i, n) not in self.graphs:
                    self._capture(i, n)

    def run(self, i: int, codes: torch.Tensor) -> torch.Tensor:
        """``decoder(codes, states[i])``: codes [1, 16, T] on the decoder's device."""
        from ..model.cuda_graphs import replay

        T = codes.shape[-1]
        if not self.capture or T > GRAPH_MAX_FRAMES:
            return self.decoder(codes, self.states[i])
        entry = self.graphs.get((i, T))
        if entry is None:
            entry = self._capture(i, T)
        graph, codes_in, audio = entry
        codes_in.copy_(codes)
        replay(graph, codes_in.device)
        # A copy: graphs share one memory pool, so another replay may reuse this output's memory.
        return audio.clone()

    def _capture(self, i: int, T: int):
        from ..model.cuda_graphs import capture_graph

        state = self.states[i]
        codes_in = torch.zeros(1, self.decoder.cfg.num_quantizers, T, dtype=torch.long, device=state.pos.device)
        saved = state.snapshot()  # the warm-up call advances the state: put it back before capture
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        graph, audio, seconds = capture_graph(lambda: self.decoder(codes_in, state), self.pool,
                                              before_capture=lambda: state.restore(saved), device=codes_in.device)
        self.capture_s += seconds
        self.graphs[(i, T)] = (graph, codes_in, audio)
        return self.graphs[(i, T)]


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

    On CUDA, pushes of up to 16 frames are CUDA-graph replays (same arithmetic as the eager call;
    ``cuda_graphs=False`` or the decoder's RuntimeSettings turn them off). The decoder's two stream states
    (``StreamStates``) are shared by its streams one at a time: a stream that starts while another
    is still live gets states of its own, decoded eagerly.
    """

    def __init__(self, decoder: CodecDecoder, whole_sequence: bool = False,
                 chunk: int = CHUNK_FRAMES, context: int = LEFT_CONTEXT_FRAMES, cuda_graphs: bool | None = None):
        if not 0 <= context < chunk:
            raise ValueError("the grid's context must be shorter than its chunk")
        self.decoder = decoder
        self.whole_sequence = whole_sequence
        self.chunk, self.context = chunk, context
        self.hop = decoder.hop
        self.frames = 0
        self._cuda_graphs = cuda_graphs
        self._states: StreamStates | None = None  # taken on the first push, when an earlier stream is gone
        self._cur = 0  # index of the state that emits audio
        self._next_started = False  # whether the other state is being rebuilt for the next boundary

    def _take_states(self) -> StreamStates:
        states = StreamStates.for_decoder(self.decoder, self._cuda_graphs)
        if not states.acquire(self):
            states = StreamStates(self.decoder, capture=False)
        self._states = states
        return states

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
        states = self._states or self._take_states()
        codes = codes.to(self.decoder.device)
        out = []
        i = 0
        while i < codes.shape[0]:
            span, rebuild = self._span()
            piece = codes[i:i + span].T.unsqueeze(0)
            if rebuild:
                if not self._next_started:
                    states.states[1 - self._cur].reset()
                    self._next_started = True
                states.run(1 - self._cur, piece)  # context frames: state only, audio dropped
            out.append(states.run(self._cur, piece)[0, 0])
            n = piece.shape[-1]
            i += n
            self.frames += n
            if rebuild and self.frames % self.chunk == 0:
                self._cur, self._next_started = 1 - self._cur, False
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


__all__ = ["DecoderState", "StreamStates", "StreamingDecoder", "decode_in_chunks"]
