"""Continuous batching: rows join and leave a running batch at frame boundaries.

``frames.generate`` runs a fixed set of rows in lock step from a shared prefill. Here rows come and
go: each row owns one row of the talker's KV cache and writes it at its own positions (its cache
slot is its RoPE position, as when it runs alone), so a row that joins is prefilled into its own
cache row while the others wait one boundary, and a row that ends frees its cache row at once.

One ``step()`` is one frame boundary for every row, in two halves:

    predict   rows holding the logits of their next first code: each row samples it with its own
              sampler and generator (its settings, seed, repetition history and end token), one host
              sync for all, then one batched code-predictor call per set of sub-talker settings
    advance   rows holding a finished frame whose text row has arrived: one batched talker step,
              every row at its own slot; a text feed's row whose text has not arrived sits out
              (its frame is already out) and is computed again when it has

A row's codes equal its codes alone up to the rounding of batched products (greedy: the same
codes); seeded sampling draws from the row's own generator in the order the batch-1 loop does.
Rows the talker step does not advance still fill their place in the batch (their writes land on
their own next slot and are rewritten when they do advance): the cache rows stay where they are.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import torch

from .code_predictor import CodePredictor
from .frames import CACHE_CHUNK, Row
from .linear import pack_for_rows
from .sampling import FirstCodeSampler, SamplingSettings, seed_generator
from .talker import Talker


@dataclass
class Slot:
    """A row in the batch: its frames.Row, its settings and where its frames go. Its state (the
    hidden state and logits of its next first code, its codes so far, its generator) lives in its
    lane of the batch's buffers (``Lanes``), lane = its cache row."""

    row: Row
    settings: SamplingSettings
    emit: Callable[[torch.Tensor | None | BaseException], None]  # each kept frame, then None (or the error) at the end
    index: int  # its lane: its talker cache row
    pos: int  # its next cache slot (= its RoPE position)
    sampler: FirstCodeSampler
    generator: torch.Generator
    predicting: bool = True  # its lane holds the logits of its next first code; False while a frame waits for text
    step: int = 0  # frames made (the frame loop's s)
    frame_emb: torch.Tensor | None = None  # [H] the frame waiting for its text row
    cancelled: bool = False

    def text_row(self, s: int, block: bool = False) -> torch.Tensor | None:
        """The text row that goes with frame ``s`` (None: a text feed's, not here yet)."""
        p = self.row.prompt
        track = getattr(p, "track", None)
        return p.trailing_row(s) if track is None else track.row(s, block)

    @property
    def graph_settings(self) -> SamplingSettings:
        """What a graphed frame's lanes must share: everything but the EOS block, which is per lane."""
        return replace(self.settings, min_new_tokens=0)


class Lanes:
    """Per-lane state, on the device: ``h`` [lanes, H] and ``logits`` [lanes, V] (what produced
    each lane's next first code), ``seen`` [lanes, V] (its codes so far) and one generator per lane."""

    def __init__(self, lanes: int, hidden: int, vocab: int, device: torch.device, dtype: torch.dtype):
        self.h = torch.zeros(lanes, hidden, dtype=dtype, device=device)
        self.logits = torch.zeros(lanes, vocab, dtype=dtype, device=device)
        self.seen = torch.zeros(lanes, vocab, dtype=torch.bool, device=device)
        self.device = device
        self.new_generators()

    def new_generators(self) -> None:
        """Fresh generators for every lane (seeded when a row joins)."""
        # The meta device (shape-only runs) has no generators.
        meta = self.device.type == "meta"
        self.generators = [None if meta else torch.Generator(device=self.device) for _ in range(len(self.h))]


class ContinuousBatch:
    """Up to ``max_batch`` rows generating together, joining and leaving between steps.

    A frame whose rows all share their sampling settings and have their text rows is one
    ``cuda_graphs.LaneStep`` over the lanes in use, rounded up to a power of two: on CUDA (unless
    ``cuda_graphs`` is off) a CUDA-graph replay, elsewhere the same work run eagerly. Other frames
    (mixed settings, a text feed waiting) run in two halves. ``lane_step=False`` runs every frame
    in halves (an A/B for tests and benchmarks)."""

    def __init__(self, talker: Talker, predictor: CodePredictor, eos_id: int, max_batch: int,
                 cuda_graphs: bool = True, lane_step: bool = True):
        from .cuda_graphs import LaneStep, use_cuda_graphs

        ref = talker.codec_head.weight
        self.talker, self.predictor, self.eos_id, self.max_batch = talker, predictor, eos_id, max_batch
        self.device, self.dtype = ref.device, talker.model.codec_embedding.weight.dtype
        self.slots: list[Slot | None] = [None] * max_batch
        self.lanes = Lanes(max_batch, talker.cfg.hidden_size, talker.cfg.vocab_size, self.device, self.dtype)
        talker.setup_cache(max_batch, CACHE_CHUNK, self.device, self.dtype)
        predictor.setup_cache(max_batch, self.device, self.dtype)
        capture = use_cuda_graphs(self.device, cuda_graphs)
        self.lane_step = LaneStep(talker, predictor, self.lanes, eos_id, capture) if lane_step else None
        self.prepared: dict[SamplingSettings, int] = {}  # settings prepared -> their cache slots
        self._prepared_at: dict[SamplingSettings, tuple[int, int]] = {}  # settings -> cache they are complete for
        self.frames = 0  # batch frames run: steps in which some row moved
        self.lane_frames = 0  # of which one LaneStep
        self.graphed_frames = 0  # of which a CUDA-graph replay
        if self.device.type == "cpu" and max_batch > 1:
            # Batched products at about the cost of one row (linear.pack_for_rows); the code
            # predictor's first pass has two rows per frame.
            pack_for_rows(talker, max_batch)
            pack_for_rows(predictor, max_batch)

    @torch.inference_mode()
    def prepare(self, settings: SamplingSettings, upto_slot: int, run_eagerly: bool = False,
                stop: Callable[[], bool] | None = None) -> int:
        """Before any row joins, on CUDA with graphs: size the KV cache for ``upto_slot`` slots and
        capture the LaneStep graph of every lane bucket at every KV bucket below it for rows with
        these settings. Frames capture nothing themselves (a capture mid-run would stall every row),
        so frames of other settings, or past a grown cache until ``prepare_again``, run the same
        work eagerly. Returns the frames run (0 with nothing to capture, unless ``run_eagerly``:
        tests); ``stop()`` true ends it early. The frames write garbage into free lanes, which a
        joining row resets."""
        from .cuda_graphs import BUCKET, cache_room, lane_bucket

        step = self.lane_step
        if step is None or not (step.capture or run_eagerly):
            return 0
        if self.active:
            raise RuntimeError("prepare a batch before rows join it")
        self._room(cache_room(upto_slot))
        key = replace(settings, min_new_tokens=0)
        self.prepared[key] = max(upto_slot, self.prepared.get(key, 0))
        self._prepared_at.pop(key, None)  # complete for this cache only once the loop below ends
        buckets = sorted({lane_bucket(n, self.max_batch) for n in range(1, self.max_batch + 1)})
        ran = 0
        for n in buckets:
            for start in range(0, min(upto_slot, self.talker.max_seq), BUCKET):
                if stop is not None and stop():
                    return ran
                step.host[:, :n] = 0
                step.host[0, :n] = start
                step.text[:n].zero_()
                kv_len = min(cache_room(start + 1), self.talker.max_seq)
                if not step.capture:
                    step.run(n, kv_len, key)
                else:
                    try:
                        step.capture_frame(n, kv_len, key)
                    except Exception as e:  # noqa: BLE001 (the batch runs eagerly instead)
                        self.drop_graphs(e)
                        return ran
                if self.device.type == "cuda":  # the staged inputs are rewritten next: let their copy finish
                    torch.cuda.synchronize(self.device)
                ran += 1
        self._prepared_at[key] = self._cache_version()
        return ran

    def drop_graphs(self, error: BaseException) -> None:
        """Run without graphs from now on (preparing them failed with ``error``), with fresh lane
        generators: a failed capture may have left the registered ones unusable. No row may be in
        the batch."""
        import sys

        print(f"warning: preparing CUDA graphs failed ({type(error).__name__}: {error}); the batch runs "
              "without graphs", file=sys.stderr)
        if self.lane_step is not None:
            self.lane_step.capture = False
            self.lane_step.graphs.clear()
            self.lane_step.pool = None
        self.lanes.new_generators()

    def _stale_keys(self) -> list[SamplingSettings]:
        if self.lane_step is None or not self.lane_step.capture:
            return []
        version = self._cache_version()
        return [k for k in self.prepared if self._prepared_at.get(k) != version]

    @property
    def stale(self) -> bool:
        """Some prepared settings lack graphs for the current cache (it grew, or their prepare was
        stopped early) until ``prepare_again``."""
        return bool(self._stale_keys())

    def prepare_again(self, stop: Callable[[], bool] | None = None) -> int:
        """``prepare`` the stale settings again over the whole (grown) cache, with no row in the
        batch (the scheduler does it when idle); ``stop()`` true ends it early."""
        ran = 0
        for key in self._stale_keys():
            if stop is not None and stop():
                break
            ran += self.prepare(key, max(self.prepared[key], self.talker.max_seq), stop=stop)
        return ran

    def _cache_version(self) -> tuple[int, int]:
        return self.talker.cache_version, self.predictor.cache_version

    # -- rows in and out -----------------------------------------------------------------------

    @property
    def active(self) -> list[Slot]:
        return [s for s in self.slots if s is not None]

    @property
    def free(self) -> int:
        return self.slots.count(None)

    @torch.inference_mode()
    def join(self, row: Row, settings: SamplingSettings, emit: Callable[[torch.Tensor | None], None]) -> Slot:
        """Prefill ``row`` into a free lane; it takes part from the next step on."""
        index = self.slots.index(None)
        x = row.prompt.embeds.to(self.device)[None]
        L = x.shape[1]
        self._room(L + 1)
        with self.talker.cache_rows(index, index + 1):
            h = self.talker(x, torch.arange(L, device=self.device)[None], kv_len=L)[0, -1]
        lanes = self.lanes
        gen = lanes.generators[index]
        seed_generator(gen, row.seed)
        lanes.h[index] = h
        lanes.logits[index] = self.talker.logits(h[None])[0]
        lanes.seen[index] = False
        vocab = self.talker.cfg.vocab_size
        slot = Slot(row=row, settings=settings, emit=emit, index=index, pos=L,
                    sampler=FirstCodeSampler(settings, vocab, self.eos_id, 1, self.device, gen,
                                             seen=lanes.seen[index:index + 1]),
                    generator=gen)
        row.shape = (self.predictor.n_groups, self.predictor.cfg.vocab_size)
        self.slots[index] = slot
        return slot

    def leave(self, slot: Slot, reason: str | None = None, error: BaseException | None = None) -> None:
        """End a row now (its lane is free for the next one); ``error``: it failed."""
        if self.slots[slot.index] is slot:
            self.slots[slot.index] = None
            if reason is not None and slot.row.stop_reason is None:
                slot.row.stop_reason = reason
            slot.emit(error)

    # -- one frame boundary ----------------------------------------------------------------------

    @torch.inference_mode()
    def step(self) -> bool:
        """Predict and advance every row that can; False when no row could (all wait for text)."""
        for slot in self.active:
            if slot.cancelled:
                self.leave(slot, "cancelled")
        if self.lane_step is not None:
            texts = self._graphable()
            if texts is not None:
                self._graphed(texts)
                self.frames += 1
                return True
        moved = self._predict([s for s in self.active if s.predicting])
        ready = []
        for s in [s for s in self.active if not s.predicting]:
            try:
                text = s.text_row(s.step - 1)
            except Exception as e:  # its text feed was cancelled or failed: this row only
                self.leave(s, error=e)
                continue
            if text is not None:
                ready.append((s, text))
        if ready:
            self._advance(ready)
        self.frames += moved or bool(ready)
        return moved or bool(ready)

    # -- the graphed frame -----------------------------------------------------------------------

    def _graphable(self) -> list[torch.Tensor] | None:
        """The text rows of this frame when every row can take it as one LaneStep: each predicting,
        all with the same settings, each with its text row at hand. Else None (the eager step)."""
        active = self.active
        if not active or any(not s.predicting for s in active):
            return None
        settings = active[0].graph_settings
        if any(s.graph_settings != settings for s in active[1:]):
            return None
        texts = []
        for s in active:
            try:
                text = s.text_row(s.step)
            except Exception:  # a failed text feed: the eager step ends that row as it should
                return None
            if text is None:
                return None
            texts.append(text)
        return texts

    def _graphed(self, texts: list[torch.Tensor]) -> None:
        from .cuda_graphs import cache_room, lane_bucket

        active, step = self.active, self.lane_step
        n = lane_bucket(active[-1].index + 1, self.max_batch)
        host = step.host
        host[:, :n] = 0
        for s in active:
            host[0, s.index], host[1, s.index], host[2, s.index] = s.pos, s.sampler.steps, s.sampler.min_new_tokens
        top = max(s.pos for s in active) + 1
        self._room(cache_room(top))
        kv_len = min(cache_room(top), self.talker.max_seq)
        rows = [step.text.new_zeros(step.text.shape[1])] * n
        for s, text in zip(active, texts):
            rows[s.index] = text
        torch.stack(rows, out=step.text[:n])
        replayed = step.run(n, kv_len, active[0].graph_settings)
        self.lane_frames += 1
        self.graphed_frames += replayed
        frames = torch.cat((step.z[:n, None], step.codes[:n]), dim=1)  # out of the buffers the next replay reuses
        first = step.z[:n].tolist()  # the one host sync of the step
        for s in active:
            s.sampler.steps += 1
            if first[s.index] == self.eos_id:
                self.leave(s, "eos")
                continue
            s.pos += 1  # its talker step ran: its lane holds its next logits
            self._frame(s, frames[s.index], None)

    # -- the eager frame -------------------------------------------------------------------------

    def _predict(self, slots: list[Slot]) -> bool:
        if not slots:
            return False
        lanes = self.lanes
        z = torch.cat([s.sampler(lanes.logits[s.index:s.index + 1]) for s in slots])
        first = z.tolist()  # the one host sync of the step
        go = []
        for slot, code, zi in zip(slots, first, z):
            if code == self.eos_id:
                self.leave(slot, "eos")
            else:
                go.append((slot, zi))
        # One code-predictor call per set of sub-talker settings (each row draws from its own generator).
        groups: dict[tuple, list] = {}
        for slot, zi in go:
            s = slot.settings
            key = (s.subtalker_dosample, s.subtalker_temperature, s.subtalker_top_k, s.subtalker_top_p)
            groups.setdefault(key, []).append((slot, zi))
        for (do_sample, temperature, top_k, top_p), members in groups.items():
            h = lanes.h[[m[0].index for m in members]]
            zs = torch.stack([m[1] for m in members])
            gens = [m[0].generator for m in members]
            rest, emb, _ = self.predictor.predict(h, self.talker.embed_codec(zs), do_sample=do_sample,
                                                  temperature=temperature, top_k=top_k, top_p=top_p,
                                                  generator=gens if len(gens) > 1 else gens[0])
            for i, (slot, zi) in enumerate(members):
                slot.predicting = False
                self._frame(slot, torch.cat((zi[None], rest[i])), emb[i])
        return True

    def _frame(self, slot: Slot, frame: torch.Tensor, emb: torch.Tensor | None) -> None:
        """What ends a row: ``Row.take`` (its watcher, then its cap), as in ``frames.generate``.
        ``emb``: the frame's embedding, waiting for its talker step (None: the step already ran)."""
        row = slot.row
        slot.step += 1
        try:
            kept = row.take(frame)
        except Exception as e:  # a failing watcher fails its own row
            self.leave(slot, error=e)
            return
        if kept:
            slot.emit(frame)
        if row.done:
            self.leave(slot)
            return
        slot.frame_emb = emb

    def _advance(self, ready: list[tuple[Slot, torch.Tensor]]) -> None:
        n = max(s.index for s in self.active) + 1
        H = self.talker.cfg.hidden_size
        x = torch.zeros(n, 1, H, device=self.device, dtype=self.dtype)
        pos = torch.zeros(n, 1, dtype=torch.long)
        for s in self.active:
            pos[s.index, 0] = s.pos  # a row that does not advance rewrites its own next slot
        for s, text in ready:
            x[s.index, 0] = s.frame_emb + text
        top = int(pos.max()) + 1
        self._room(top)
        h = self.talker(x, pos.to(self.device), kv_len=top)[:, -1]
        logits = self.talker.logits(h)
        lanes = self.lanes
        for s, _ in ready:
            lanes.h[s.index], lanes.logits[s.index] = h[s.index], logits[s.index]
            s.frame_emb, s.predicting = None, True
            s.pos += 1

    def _room(self, slots: int) -> None:
        from .cuda_graphs import cache_room

        if slots > self.talker.max_seq:  # whole KV buckets: every graph's span fits
            self.talker.grow_cache(cache_room(max(slots, 2 * self.talker.max_seq)))
