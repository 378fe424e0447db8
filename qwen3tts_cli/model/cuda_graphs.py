"""Graph-captured decoding on CUDA: a frame's whole work as one CUDA graph replay.

Per frame the eager loop launches some 600 small kernels (15 code-predictor passes of 5 layers,
15 samplings, one talker step); at batch 1 the GPU idles between launches. Here that work runs
over static buffers, so it can be captured once and replayed:

    inputs   h [B, H] (talker state that produced z), z [B] (first code), text [B, H], slot [1]
    graph    code predictor: 15 groups with on-device sampling -> codes [B, 15], frame embedding
             talker step at ``slot`` over the static KV cache -> h_next [B, H], logits [B, V]
    outputs  codes, h_next, logits, cp_logits [B, 15, cp_V]

The first code's sampler (its branches depend on a host step counter) runs eagerly between
replays, and the only host sync per frame is the EOS check of the first code (frames.HostFlag).

Attention reads the KV cache in buckets of ``BUCKET`` slots (one graph per bucket in use), with
the not-yet-written slots masked on the device: a fixed key count per graph, without reading the
whole cache every step. The cache is allocated at its final size up front (no growing: a graph
holds the buffers' addresses).

``GraphStep`` plugs this into the one frame loop (frames.py). The same step runs eagerly
(``capture=False``) on any device; CPU tests use that to check the static-buffer loop against the
eager one. Opt out of graphs with RuntimeSettings(cuda_graphs=False) (QWEN3TTS_CUDA_GRAPHS=0).
"""

from __future__ import annotations

import threading
import time
from typing import Sequence

import torch

from .code_predictor import CodePredictor
from .sampling import SamplingSettings, choose_first_code, control_masks, first_code_scores, seed_generator
from .talker import Talker

BUCKET = 256


def use_cuda_graphs(device: torch.device, enabled: bool = True) -> bool:
    """Graphs on a CUDA device, unless turned off (RuntimeSettings.cuda_graphs)."""
    return bool(enabled) and device.type == "cuda" and torch.cuda.is_available()


def cache_room(needed: int) -> int:
    """KV cache slots for ``needed`` positions: rounded up to whole buckets."""
    return -(-needed // BUCKET) * BUCKET


def _seed(generators, seeds) -> None:
    for g, s in zip(generators, seeds):
        seed_generator(g, s)


class StaticFrameStep:
    """The per-frame work over static buffers for ``batch`` rows (see module doc). ``batched``:
    several rows (left padding, one random generator per row); otherwise one unpadded prompt and
    one generator, as the eager batch-1 step."""

    def __init__(self, talker: Talker, predictor: CodePredictor, batch: int, settings: SamplingSettings,
                 device: torch.device, dtype: torch.dtype, batched: bool, capture: bool):
        self.talker, self.predictor, self.batch, self.batched = talker, predictor, batch, batched
        self.capture = capture
        H, V = talker.cfg.hidden_size, talker.cfg.vocab_size
        self.h = torch.zeros(batch, H, dtype=dtype, device=device)
        self.h_next = torch.zeros(batch, H, dtype=dtype, device=device)
        self.text = torch.zeros(batch, H, dtype=dtype, device=device)
        self.z = torch.zeros(batch, dtype=torch.long, device=device)
        self.slot = torch.zeros(1, dtype=torch.long, device=device)
        self.left_pad = torch.zeros(batch, dtype=torch.long, device=device)
        self.codes = torch.zeros(batch, predictor.n_groups - 1, dtype=torch.long, device=device)
        self.logits = torch.zeros(batch, V, dtype=dtype, device=device)
        self.cp_logits = torch.zeros(batch, predictor.n_groups - 1, predictor.cfg.vocab_size,
                                     dtype=torch.float32, device=device)
        n_gen = batch if batched else 1
        # The meta device (shape-only runs: tests, scripts/frame_ops.py) has no generators.
        self.generators = [None if device.type == "meta" else torch.Generator(device=device) for _ in range(n_gen)]
        gen = self.generators if batched else self.generators[0]
        self.cp_kw = dict(do_sample=settings.subtalker_dosample, temperature=settings.subtalker_temperature,
                          top_k=settings.subtalker_top_k, top_p=settings.subtalker_top_p, generator=gen)
        self.graphs: dict[int, torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.capture_s = 0.0  # total seconds spent capturing (bench)
        self.key = self._key(talker, predictor, batch, settings, device, dtype, batched)

    @staticmethod
    def _key(talker, predictor, batch, settings, device, dtype, batched) -> tuple:
        # Graphs hold buffer addresses and host-side branches: any change means new graphs. New
        # caches can get the freed ones' addresses back, hence the versions as well as the pointers.
        kc = talker.model.layers[0].self_attn.kv_cache.k_cache
        pc = predictor.model.layers[0].self_attn.kv_cache.k_cache
        return (talker.cache_version, kc.data_ptr(), talker.max_seq, predictor.cache_version, pc.data_ptr(),
                batch, str(device), dtype, batched, settings.subtalker_dosample, settings.subtalker_temperature,
                settings.subtalker_top_k, settings.subtalker_top_p)

    def _body(self, kv_len: int) -> None:
        rest, frame_emb, lg = self.predictor.predict(self.h, self.talker.embed_codec(self.z), return_logits=True,
                                                     **self.cp_kw)
        x = (frame_emb + self.text)[:, None]
        h = self.talker(x, self.slot, kv_len=kv_len, left_pad=self.left_pad if self.batched else None,
                        masked=True)[:, -1]
        self.codes.copy_(rest)
        self.cp_logits.copy_(lg)
        self.h_next.copy_(h)
        self.logits.copy_(self.talker.logits(h))

    def run(self, pos: int) -> None:
        """The frame whose talker step writes cache slot ``pos`` (the buffers already set)."""
        kv_len = min(cache_room(pos + 1), self.talker.max_seq)
        if not self.capture:
            self._body(kv_len)
            return
        graph = self.graphs.get(kv_len)
        if graph is None:
            graph = self._capture(kv_len)
        replay(graph, self.h.device)

    def _capture(self, kv_len: int) -> "torch.cuda.CUDAGraph":
        # The warm-up run draws (capture_graph puts the generators back, so that the replay draws
        # what the eager loop would) and writes slot ``pos`` again with the same values.
        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        draws = self.generators if self.cp_kw["do_sample"] else ()  # greedy draws nothing in the graph
        graph, _, seconds = capture_graph(lambda: self._body(kv_len), self.pool, draws, device=self.h.device)
        self.graphs[kv_len] = graph
        self.capture_s += seconds
        return graph


# One capture at a time in this process: captures share torch's capture machinery, and the
# scheduler's worker, its consumers (the streaming codec) and a caller's own stream may all capture.
_CAPTURE_LOCK = threading.Lock()
_CAPTURE_STREAMS: dict[int, "torch.cuda.Stream"] = {}  # device index -> the stream its captures use


def capture_graph(fn, pool, generators=(), before_capture=None, device: torch.device | None = None):
    """(graph, what ``fn`` returned during capture, seconds): ``fn`` run once on a side stream (lazy
    initialisations must not happen inside a capture), ``generators`` put back where they were and
    ``before_capture`` to undo the rest of what that run changed, then ``fn`` captured into ``pool``
    with ``generators``' states registered (their draws advance on every replay, from where the
    eager draws left them).

    On ``device`` (the tensors' device, which need not be this thread's current one), on a capture
    stream of that device's own (torch's shared default would belong to whichever device captured
    first). The capture is thread-local: other threads may go on running eager work (a consumer
    decoding audio) while it lasts. This thread's stream is put back even when capturing fails."""
    device = torch.device("cuda", torch.cuda.current_device()) if device is None else device
    with _CAPTURE_LOCK, torch.cuda.device(device):
        t0 = time.perf_counter()
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index not in _CAPTURE_STREAMS:
            _CAPTURE_STREAMS[index] = torch.cuda.Stream(device=device)
        stream = _CAPTURE_STREAMS[index]
        previous = torch.cuda.current_stream(device)
        states = [g.get_state() for g in generators]
        try:
            stream.wait_stream(previous)
            with torch.cuda.stream(stream):
                fn()
            previous.wait_stream(stream)
            for g, state in zip(generators, states):
                g.set_state(state)
            if before_capture is not None:
                before_capture()
            graph = torch.cuda.CUDAGraph()
            if generators and not hasattr(graph, "register_generator_state"):
                raise RuntimeError("this torch cannot capture draws from a seeded generator in a CUDA graph "
                                   "(no CUDAGraph.register_generator_state): upgrade torch, or set "
                                   "QWEN3TTS_CUDA_GRAPHS=0")
            for g in generators:
                graph.register_generator_state(g)
            with torch.cuda.graph(graph, pool=pool, stream=stream, capture_error_mode="thread_local"):
                out = fn()
        finally:
            # torch's graph context leaves the capture stream current when ending the capture raises.
            torch.cuda.set_stream(previous)
        torch.cuda.synchronize(device)
        return graph, out, time.perf_counter() - t0


def replay(graph: "torch.cuda.CUDAGraph", device: torch.device) -> None:
    """Replay on ``device``'s current stream, whichever device this thread has current."""
    if device.type != "cuda":  # a test's stand-in for a graph
        graph.replay()
        return
    with torch.cuda.device(device):
        graph.replay()


def frame_step(talker: Talker, predictor: CodePredictor, batch: int, settings: SamplingSettings,
               device: torch.device, dtype: torch.dtype, batched: bool, capture: bool) -> StaticFrameStep:
    """The StaticFrameStep for these caches and settings: kept on the talker and reused while its
    graphs stay valid (same cache buffers, batch and sub-talker sampling settings)."""
    key = StaticFrameStep._key(talker, predictor, batch, settings, device, dtype, batched)
    step = getattr(talker, "_static_step", None)
    if step is None or step.key != key or step.capture != capture:
        step = StaticFrameStep(talker, predictor, batch, settings, device, dtype, batched, capture)
        talker._static_step = step
    return step


@torch.inference_mode()
def prepare_frame_graphs(talker: Talker, predictor: CodePredictor, settings: SamplingSettings, cache_slots: int,
                         upto_slot: int) -> StaticFrameStep:
    """Allocate the batch-1 KV cache for ``cache_slots`` positions and capture the frame step's
    graph for every bucket a frame below ``upto_slot`` uses, ahead of any utterance: later calls
    whose prompt and frames fit reuse them (same cache buffers and sub-talker settings) instead of
    capturing inside their time to first audio. The captures write throwaway keys into the cache
    slots they run at; every real call rewrites or masks those."""
    ref = talker.codec_head.weight
    device, dtype = ref.device, ref.dtype
    talker.setup_cache(1, cache_room(cache_slots), device, dtype)
    predictor.setup_cache(1, device, dtype)
    step = frame_step(talker, predictor, 1, settings, device, dtype, False, capture=True)
    for start in range(0, min(upto_slot, talker.max_seq), BUCKET):
        if min(cache_room(start + 1), talker.max_seq) not in step.graphs:
            step.slot.fill_(start)
            step.run(start)
    return step


class GraphStep:
    """The step of ``frames.frame_loop`` over a StaticFrameStep: the frame's work as one CUDA-graph
    replay (``capture``), or the same static-buffer work run eagerly (any device)."""

    def __init__(self, talker: Talker, predictor: CodePredictor, settings: SamplingSettings, capture: bool = True):
        self.talker, self.predictor, self.settings, self.capture = talker, predictor, settings, capture

    def start(self, batch: int, prompt_len: int, steps: int, seeds: Sequence[int | None],
              left_pad: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> list[torch.Generator]:
        # The whole cache up front: a graph holds the buffers' addresses, so nothing may grow.
        self.talker.setup_cache(batch, cache_room(prompt_len + steps), device, dtype)
        self.predictor.setup_cache(batch, device, dtype)
        self.static = frame_step(self.talker, self.predictor, batch, self.settings, device, dtype, batch > 1,
                                 self.capture)
        if left_pad is None:
            self.static.left_pad.zero_()
        else:
            self.static.left_pad.copy_(left_pad)
        self.slots = torch.arange(prompt_len + steps, device=device)
        _seed(self.static.generators, seeds)
        return self.static.generators

    def predict(self, h, z, want_cp: bool, forced=None):
        """The code-predictor half of a frame, run eagerly (a text feed's stalled step): the same
        modules and generators as the graph, so the same codes."""
        if forced is not None:
            raise ValueError("teacher forcing runs on the eager step")
        st = self.static
        rest, frame_emb, lg = self.predictor.predict(h, self.talker.embed_codec(z), return_logits=True, **st.cp_kw)
        return rest, frame_emb, lg if want_cp else None

    def advance(self, frame_emb, text, pos: int):
        """The talker half, eagerly, over the static cache (slot ``pos``, the graph's bucketed span)."""
        st = self.static
        kv_len = min(cache_room(pos + 1), self.talker.max_seq)
        h = self.talker((frame_emb + text)[:, None], self.slots[pos:pos + 1], kv_len=kv_len,
                        left_pad=st.left_pad if st.batched else None, masked=True)[:, -1]
        return h, self.talker.logits(h)

    def __call__(self, h, z, text, pos: int, last: bool, want_cp: bool, forced=None):
        if forced is not None:
            raise ValueError("teacher forcing runs on the eager step")
        st = self.static
        st.h.copy_(h)
        st.z.copy_(z)
        st.text.copy_(text)
        st.slot.copy_(self.slots[pos:pos + 1])
        st.run(pos)  # on the last frame its talker step is wasted work, but harmless
        # The buffers are overwritten by the next replay: the loop reads h_next and the logits
        # before that (to sample), the codes are copied into the frame it yields.
        return st.codes, st.h_next, st.logits, st.cp_logits.clone() if want_cp else None


# ---------------------------------------------------------------------------------------------
# The continuous batch's frame (model/continuous.py)
# ---------------------------------------------------------------------------------------------

def lane_bucket(lanes: int, max_lanes: int) -> int:
    """Lanes a frame of the continuous batch computes when its highest busy lane is ``lanes - 1``:
    the next power of two, at most ``max_lanes`` (one graph per bucket, not per batch size)."""
    n = 1
    while n < lanes:
        n *= 2
    return min(n, max_lanes)


class LaneStep:
    """One frame of the continuous batch for lanes 0..n-1 over static buffers, captured as one CUDA
    graph per (lane bucket, KV bucket, sampling settings) and replayed (``capture``), or run
    eagerly (any device: the CPU tests check it against rows run alone).

    Lane i is cache row i. Its state lives in the batch's lane buffers, read and written in place:
    ``h`` [lanes, H] and ``logits`` [lanes, V] (the state that produced its next first code),
    ``seen`` [lanes, V] (its codes so far) and ``generators[i]`` (its random draws). Per frame the
    caller fills ``text`` (its text row), ``pos`` (its cache slot = RoPE position), ``steps`` and
    ``min_new`` (its first codes so far and its EOS block); the frame then

        samples its first code z (§5.2 with the lane's own blocked ids) -> ``z``
        runs the code predictor -> ``codes`` [lanes, 15] and the frame embedding
        runs the talker step on frame + text at ``pos`` -> the next ``h`` and ``logits``

    for every lane, busy or not: a free lane computes garbage at slot 0 of its own cache row and
    draws from its own generator (both reset when a row joins). The caller reads ``z`` to find
    each row's end token afterwards; that row's speculative talker step is simply not used.
    Every lane of one frame shares the sampling settings (the key) except ``min_new_tokens``."""

    def __init__(self, talker: Talker, predictor: CodePredictor, state, eos_id: int, capture: bool):
        self.talker, self.predictor, self.state, self.capture = talker, predictor, state, capture
        lanes, device = state.h.shape[0], state.h.device
        H = talker.cfg.hidden_size
        self.text = torch.zeros(lanes, H, dtype=state.h.dtype, device=device)
        self.pos = torch.zeros(lanes, 1, dtype=torch.long, device=device)
        self.steps = torch.zeros(lanes, dtype=torch.long, device=device)
        self.min_new = torch.zeros(lanes, dtype=torch.long, device=device)
        self.z = torch.zeros(lanes, dtype=torch.long, device=device)
        self.codes = torch.zeros(lanes, predictor.n_groups - 1, dtype=torch.long, device=device)
        self.suppress, self.suppress_and_eos = control_masks(talker.cfg.vocab_size, eos_id, device)
        # pos, steps, min_new staged on the host: one copy per frame.
        self.host = torch.zeros(3, lanes, dtype=torch.long, pin_memory=device.type == "cuda")
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.pool = None
        self.cache_key = None

    def _body(self, n: int, kv_len: int, s: SamplingSettings) -> None:
        st = self.state
        gens = st.generators[:n]
        blocked = torch.where((self.steps[:n] < self.min_new[:n])[:, None], self.suppress_and_eos, self.suppress)
        scores = first_code_scores(st.logits[:n], s, st.seen[:n], blocked)
        z = choose_first_code(scores, s, st.seen[:n], gens)
        rest, frame_emb, _ = self.predictor.predict(
            st.h[:n], self.talker.embed_codec(z), do_sample=s.subtalker_dosample, temperature=s.subtalker_temperature,
            top_k=s.subtalker_top_k, top_p=s.subtalker_top_p, generator=gens)
        h = self.talker((frame_emb + self.text[:n])[:, None], self.pos[:n], kv_len=kv_len)[:, -1]
        self.z[:n].copy_(z)
        self.codes[:n].copy_(rest)
        st.h[:n].copy_(h)
        st.logits[:n].copy_(self.talker.logits(h))

    def stage(self, n: int) -> None:
        """Copy the staged ``host`` inputs of lanes 0..n-1 (pos, steps, min_new) to the device."""
        self.pos[:n].copy_(self.host[0, :n, None], non_blocking=True)
        self.steps[:n].copy_(self.host[1, :n], non_blocking=True)
        self.min_new[:n].copy_(self.host[2, :n], non_blocking=True)

    def _forget_stale_graphs(self) -> None:
        # Graphs hold the cache buffers' addresses: a grown cache means they are gone.
        cache = (self.talker.cache_version, self.talker.max_seq, self.predictor.cache_version)
        if cache != self.cache_key:
            self.graphs.clear()
            self.pool, self.cache_key = None, cache

    def run(self, n: int, kv_len: int, settings: SamplingSettings) -> bool:
        """The frame for lanes 0..n-1 over the first ``kv_len`` cache slots (inputs staged): the
        graph ``capture_frame`` made for it, else the same work eagerly. Returns whether it was a
        replay. Nothing is captured here: a capture while consumers decode, or one per new
        client-chosen temperature, would stall every row (see ContinuousBatch.prepare)."""
        self.stage(n)
        self._forget_stale_graphs()
        graph = self.graphs.get((n, kv_len, settings)) if self.capture else None
        if graph is None:
            self._body(n, kv_len, settings)
            return False
        replay(graph, self.pos.device)
        return True

    def capture_frame(self, n: int, kv_len: int, settings: SamplingSettings) -> None:
        """Capture (and run once) the graph of this frame (inputs staged), unless it exists. When
        this raises, the lanes' generators may be unusable (ContinuousBatch.drop_graphs)."""
        self._forget_stale_graphs()
        key = (n, kv_len, settings)
        if key in self.graphs:
            return
        self.stage(n)
        graph = self._capture(n, kv_len, settings)
        self.graphs[key] = graph
        replay(graph, self.pos.device)

    def _capture(self, n: int, kv_len: int, settings: SamplingSettings) -> "torch.cuda.CUDAGraph":
        # The warm-up run changes the lanes' state in place and draws: both are put back (the
        # generators by capture_graph), so that the replay computes this frame from where it was.
        # (Its KV writes are rewritten alike.)
        st = self.state
        saved = [t[:n].clone() for t in (st.h, st.logits, st.seen)]

        def restore():
            for t, v in zip((st.h, st.logits, st.seen), saved):
                t[:n].copy_(v)

        if self.pool is None:
            self.pool = torch.cuda.graph_pool_handle()
        draws = st.generators[:n] if settings.do_sample or settings.subtalker_dosample else ()
        graph, _, _ = capture_graph(lambda: self._body(n, kv_len, settings), self.pool, draws, restore,
                                    self.pos.device)
        return graph
