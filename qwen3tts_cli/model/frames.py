"""The frame loop (§5.3), written once: prefill the talker, then per frame: code predictor -> 15
residual codes, frame embedding + text row -> one talker step -> next first code.

``frame_loop`` is that loop around a swappable step that does one frame's work for B rows:

    EagerStep               module calls (any device; batch 1 or a left-padded batch)
    cuda_graphs.GraphStep   the same work over static buffers, replayed as one CUDA graph

``generate`` runs prompts as the rows of that loop and owns what ends a row: its end token, its
frame cap, or the watcher it was given (the runaway guard). Every consumer goes through it: one
utterance, a batch of them, a stream, and teacher forcing (``forced`` codes instead of choices).

Differences from the reference, both deliberate:
* ``cap = N`` gives exactly N frames when no EOS comes (the reference's ``max_new_tokens = N``
  gives N - 1, dropping a first code that never got its residual codes).
* The EOS test of frame s is overlapped with frame s's own work: the first codes are copied to the
  host asynchronously while the code predictor and the next talker step are queued, and only then
  waited for. On EOS that speculative work is discarded. One host sync per frame.

Batches (§3.8): prompts are left-padded with zero rows; all rows share cache slots while each
row's RoPE positions start at 0 at its first real row and its padding is masked
(``Talker.forward(left_pad=...)``). Each row pairs frame s with its own trailing text row, then
its own pad. A row that has ended keeps being computed with the others and its output is
ignored. Each row draws from its own random generator, seeded with its seed, in the order of the
batch-1 loop, so a row gives the codes it gives alone (up to float rounding of batched products).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import torch

from .code_predictor import CodePredictor
from .sampling import FirstCodeSampler, SamplingSettings, make_generator
from .talker import Talker

# Initial cache room for generated frames on the eager path; the cache grows by doubling past it.
CACHE_CHUNK = 512


@dataclass
class GenerationResult:
    codes: torch.Tensor  # [T, 16] int64 on the CPU
    stop_reason: str  # "eos" | "max_frames", or the watcher's trip reason
    talker_logits: torch.Tensor | None = None  # [steps, vocab] fp32: raw codec_head outputs, step 0 = prefill
    cp_logits: torch.Tensor | None = None  # [frames, 15, cp_vocab] fp32: raw code-predictor logits
    warnings: list[str] = field(default_factory=list)
    prompt_length: int = 0
    trip: Any = None  # the watcher's trip that ended the row early (a guard.Trip), else None

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])


class HostFlag:
    """Asynchronous device -> host copy of ``n`` int64 (one per batch row), waited for only when read."""

    def __init__(self, device: torch.device, n: int = 1):
        self.cuda = device.type == "cuda"
        self.buf = torch.empty(n, dtype=torch.long, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None

    def start(self, t: torch.Tensor) -> None:
        self.buf.copy_(t.reshape(-1), non_blocking=self.cuda)
        if self.cuda:  # on the stream the copy went to: the tensor's device, not the thread's current one
            self.event.record(torch.cuda.current_stream(t.device))

    def read(self) -> list[int]:
        if self.cuda:
            self.event.synchronize()
        return self.buf.tolist()


# ---------------------------------------------------------------------------------------------
# The steps
# ---------------------------------------------------------------------------------------------

class EagerStep:
    """One frame's work for B rows by plain module calls (see ``frame_loop``)."""

    def __init__(self, talker: Talker, predictor: CodePredictor, settings: SamplingSettings):
        self.talker, self.predictor, self.settings = talker, predictor, settings

    def start(self, batch: int, prompt_len: int, steps: int, seeds: Sequence[int | None],
              left_pad: torch.Tensor | None, device: torch.device, dtype: torch.dtype) -> list[torch.Generator]:
        """Caches for ``batch`` rows and the rows' random generators."""
        self.talker.setup_cache(batch, prompt_len + min(steps, CACHE_CHUNK), device, dtype)
        self.predictor.setup_cache(batch, device, dtype)
        self.left_pad, self.final = left_pad, prompt_len + steps
        self.slots = torch.arange(self.final, device=device)  # sliced per step: no host->device copy
        gens = [make_generator(s, device) for s in seeds]
        s = self.settings
        self.cp_kw = dict(do_sample=s.subtalker_dosample, temperature=s.subtalker_temperature, top_k=s.subtalker_top_k,
                          top_p=s.subtalker_top_p, generator=gens if batch > 1 else gens[0])
        return gens

    def __call__(self, h, z, text, pos: int, last: bool, want_cp: bool, forced=None):
        """(residual codes [B, 15], next hidden [B, H], next logits [B, V], cp logits or None); the
        next talker step is skipped on the last frame."""
        rest, frame_emb, cp_logits = self.predict(h, z, want_cp, forced)
        if last:
            return rest, None, None, cp_logits
        return (rest, *self.advance(frame_emb, text, pos), cp_logits)

    def predict(self, h, z, want_cp: bool, forced=None):
        """The first half of a frame: (residual codes, frame embedding, cp logits or None)."""
        return self.predictor.predict(h, self.talker.embed_codec(z), return_logits=want_cp, forced=forced,
                                      **self.cp_kw)

    def advance(self, frame_emb, text, pos: int):
        """The second half: the talker step on frame + text row -> (next hidden, next logits)."""
        talker = self.talker
        if pos + 1 > talker.max_seq:
            talker.grow_cache(min(2 * talker.max_seq, self.final))
        h_next = talker((frame_emb + text)[:, None], self.slots[pos:pos + 1], kv_len=pos + 1,
                        left_pad=self.left_pad)[:, -1]
        return h_next, talker.logits(h_next)


def make_step(talker: Talker, predictor: CodePredictor, settings: SamplingSettings, cuda_graphs: bool = True,
              static: bool = False):
    """The step for the talker's device: CUDA-graph replays on CUDA (unless ``cuda_graphs`` is off),
    else eager module calls; ``static`` runs the graphs' static-buffer step eagerly (tests, any device)."""
    from .cuda_graphs import GraphStep, use_cuda_graphs

    if static:
        return GraphStep(talker, predictor, settings, capture=False)
    if use_cuda_graphs(talker.codec_head.weight.device, cuda_graphs):
        return GraphStep(talker, predictor, settings, capture=True)
    return EagerStep(talker, predictor, settings)


# ---------------------------------------------------------------------------------------------
# The loop
# ---------------------------------------------------------------------------------------------

class TextRows:
    """The text row of each prompt for frame s: its own trailing rows then its pad, or its
    ``track`` (a text feed, engine.feed.FeedTrack) whose rows may not have arrived yet."""

    def __init__(self, prompts: Sequence, text: torch.Tensor):
        self.text, self.last = text, text.shape[1] - 1
        self.tracks = [getattr(p, "track", None) for p in prompts]
        self.dynamic = any(t is not None for t in self.tracks)

    def __call__(self, s: int, block: bool = True) -> torch.Tensor | None:
        """[B, H], or None when a track's row has not arrived (and ``block`` is False)."""
        static = self.text[:, min(s, self.last)]
        if not self.dynamic:
            return static
        rows = []
        for b, track in enumerate(self.tracks):
            row = static[b] if track is None else track.row(s, block)
            if row is None:
                return None
            rows.append(row)
        return torch.stack(rows)


def left_pad_batch(prompts: Sequence) -> tuple[torch.Tensor, list[int], torch.Tensor]:
    """Prompts (``.embeds`` [L_b, H], ``.trailing`` [m_b, H], ``.pad`` [H]) -> left-padded prefill
    [B, Lmax, H], per-row padding counts and text rows [B, max m + 1, H] (the last column and
    everything after a row's own trailing rows are that row's pad)."""
    ref = prompts[0].embeds
    lens = [p.embeds.shape[0] for p in prompts]
    L, M = max(lens), max(p.trailing.shape[0] for p in prompts)
    x = ref.new_zeros(len(prompts), L, ref.shape[-1])
    text = ref.new_empty(len(prompts), M + 1, ref.shape[-1])
    for b, p in enumerate(prompts):
        x[b, L - lens[b]:] = p.embeds
        m = p.trailing.shape[0]
        text[b, :m] = p.trailing
        text[b, m:] = p.pad
    return x, [L - n for n in lens], text


@torch.inference_mode()
def frame_loop(talker: Talker, step, prompts: Sequence, settings: SamplingSettings, eos_id: int, steps: int,
               seeds: Sequence[int | None], record_logits: bool = False, cp_frames: int | None = None,
               forced: torch.Tensor | None = None) -> Iterator[tuple[list[int], torch.Tensor, Any, Any]]:
    """THE loop. Per frame s it yields (the rows' first codes z_s on the host, frame [B, 16] on the
    device, the fp32 talker logits [B, V] that chose z_s, the fp32 cp logits [B, 15, cp_V]); the
    logits only with ``record_logits`` (cp logits for the first ``cp_frames`` frames). The consumer
    stops it by closing it. ``forced`` [B, steps, 16]: teacher forcing, every code given."""
    x, pads, text = left_pad_batch(prompts)
    B, L = x.shape[0], x.shape[1]
    # A batch passes its (possibly all-zero) padding, so its attention spans stay what flash-attn runs;
    # one row has none.
    left_pad = torch.tensor(pads, dtype=torch.long, device=x.device) if B > 1 else None
    gens = step.start(B, L, steps, seeds, left_pad, x.device, x.dtype)
    sampler = FirstCodeSampler(settings, talker.cfg.vocab_size, eos_id, B, x.device, gens if B > 1 else gens[0])
    n_cp = 0 if not record_logits else (steps if cp_frames is None else cp_frames)
    h = talker(x, torch.arange(L, device=x.device), kv_len=L, left_pad=left_pad)[:, -1]
    logits = talker.logits(h)
    flag = HostFlag(x.device, B)
    rows = TextRows(prompts, text)
    for s in range(steps):
        # A static step's logits buffer is overwritten by the next replay: copied now if kept.
        chose = logits.float().clone() if record_logits else None
        z = sampler(logits) if forced is None else forced[:, s, 0]
        flag.start(z)
        last = s == steps - 1
        forced_s = None if forced is None else forced[:, s, 1:]
        row = None if last else rows(s, block=False)
        if row is not None or last:
            rest, h, logits, cp_logits = step(h, z, row if row is not None else x[:, -1], L + s, last, s < n_cp,
                                              forced_s)
            yield flag.read(), torch.cat((z[:, None], rest), dim=1), chose, cp_logits
            continue
        # A text feed's row for this step has not arrived: the frame goes out now (it needs no
        # text), and only the talker step that reads the row waits for it. An end token here
        # ends the row before any waiting (the consumer closes the loop).
        rest, frame_emb, cp_logits = step.predict(h, z, s < n_cp, forced_s)
        yield flag.read(), torch.cat((z[:, None], rest), dim=1), chose, cp_logits
        h, logits = step.advance(frame_emb, rows(s, block=True), L + s)


# ---------------------------------------------------------------------------------------------
# Rows: what ends each prompt
# ---------------------------------------------------------------------------------------------

@dataclass
class Row:
    """One prompt's place in the loop: at most ``cap`` frames, ``seed`` for its draws, and an
    optional ``watch`` (``push(frame) -> trip or None``, e.g. a guard.RunawayGuard) that ends it
    early with ``trip.reason``; frames from ``trip.keep`` on are then not part of its codes."""

    prompt: Any  # .embeds [L, H], .trailing [m, H], .pad [H]
    cap: int
    seed: int | None = None
    watch: Any = None
    frames: list[torch.Tensor] = field(default_factory=list)  # int64 [16] on the device
    stop_reason: str | None = None
    trip: Any = None
    talker_logits: list[torch.Tensor] | None = None  # with generate(record_logits=True)
    cp_logits: list[torch.Tensor] | None = None
    shape: tuple[int, int] = (16, 2048)  # (code groups, code-predictor vocabulary), set by generate

    @property
    def done(self) -> bool:
        return self.stop_reason is not None

    def take(self, frame: torch.Tensor) -> bool:
        """A frame whose first code is not the end token: its watcher sees it (a trip ends the row
        without it), then it is kept, then the cap may end the row. Returns whether it was kept.
        The one rule for every loop (``generate``, model/continuous.py)."""
        trip = self.watch.push(frame) if self.watch is not None else None
        if trip is not None:
            self.stop_reason, self.trip = trip.reason, trip
            return False
        self.frames.append(frame)
        if len(self.frames) == self.cap:
            self.stop_reason = "max_frames"
        return True

    @property
    def kept(self) -> int:
        """Frames that belong to the codes (all but a runaway stretch)."""
        return len(self.frames) if self.trip is None else min(len(self.frames), self.trip.keep)

    def codes(self) -> torch.Tensor:
        """The kept frames as int64 [frames, 16] on the CPU."""
        kept = self.frames[:self.kept]
        return torch.stack(kept).cpu() if kept else torch.empty(0, self.shape[0], dtype=torch.long)

    def result(self) -> GenerationResult:
        r = GenerationResult(codes=self.codes(), stop_reason=self.stop_reason,
                             warnings=list(getattr(self.prompt, "warnings", [])),
                             prompt_length=int(self.prompt.embeds.shape[0]), trip=self.trip)
        if self.talker_logits is not None:
            groups, vocab = self.shape
            r.talker_logits = torch.stack(self.talker_logits).cpu()
            r.cp_logits = (torch.stack(self.cp_logits).cpu() if self.cp_logits else
                           torch.empty(0, groups - 1, vocab))
        return r


@torch.inference_mode()
def generate(talker: Talker, predictor: CodePredictor, rows: Sequence[Row], settings: SamplingSettings,
             eos_id: int, cuda_graphs: bool = True, static: bool = False, record_logits: bool = False,
             cp_frames: int | None = None, forced: torch.Tensor | None = None,
             on_step: Callable[[int], None] | None = None) -> Iterator[tuple[int, torch.Tensor | None]]:
    """Run ``rows`` together. Yields (row index, frame) for every frame a row keeps making and
    (row index, None) once when it ends (``row.stop_reason`` set: "eos", "max_frames" or a trip's
    reason); returns when every row has ended. Closing it early drops the speculative next step.

    ``record_logits`` fills each row's talker_logits (one per first code chosen, the step that
    chose EOS included, the step after a cap not) and cp_logits (one per kept frame, the first
    ``cp_frames``). ``cuda_graphs``/``static``: see ``make_step``. ``on_step(n)`` is called after
    every lock-step frame with the number of frames so far (a batch's progress).
    """
    if not rows:
        return
    if min(r.cap for r in rows) < 1:
        raise ValueError("a row's cap must be at least 1 frame")
    steps = max(r.cap for r in rows)
    for row in rows:
        row.shape = (predictor.n_groups, predictor.cfg.vocab_size)
        if record_logits:
            row.talker_logits, row.cp_logits = [], []
    step = make_step(talker, predictor, settings, cuda_graphs, static)
    loop = frame_loop(talker, step, [r.prompt for r in rows], settings, eos_id, steps, [r.seed for r in rows],
                      record_logits, cp_frames, forced)
    try:
        for s, (first, frame, logits, cp_logits) in enumerate(loop):
            for b, row in enumerate(rows):
                if row.done:
                    continue
                if logits is not None:
                    row.talker_logits.append(logits[b])
                if first[b] == eos_id:
                    row.stop_reason = "eos"
                    yield b, None
                    continue
                if row.take(frame[b]):
                    if cp_logits is not None:
                        row.cp_logits.append(cp_logits[b].clone())
                    yield b, frame[b]
                if row.done:
                    yield b, None
            if on_step is not None:
                on_step(s + 1)
            if all(r.done for r in rows):
                break
    finally:
        loop.close()


def iter_frames(talker: Talker, predictor: CodePredictor, row: Row, settings: SamplingSettings, eos_id: int,
                **kw) -> Iterator[torch.Tensor]:
    """``generate`` for one row: its frames (int64 [16] on the device) as they are made; the
    generator returns the row's stop reason."""
    for _, frame in generate(talker, predictor, [row], settings, eos_id, **kw):
        if frame is None:
            return row.stop_reason
        yield frame
    return row.stop_reason
