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

from dataclasses import dataclass
from typing import Callable

import torch

from .code_predictor import CodePredictor
from .frames import CACHE_CHUNK, Row
from .linear import pack_for_rows
from .sampling import FirstCodeSampler, SamplingSettings, make_generator
from .talker import Talker


@dataclass
class Slot:
    """A row in the batch: its frames.Row, its settings and where its frames go."""

    row: Row
    settings: SamplingSettings
    emit: Callable[[torch.Tensor | None | BaseException], None]  # each kept frame, then None (or the error) at the end
    index: int  # its talker cache row
    pos: int  # its next cache slot (= its RoPE position)
    sampler: FirstCodeSampler
    generator: torch.Generator
    h: torch.Tensor  # [H] the state that produced ``logits``
    logits: torch.Tensor | None  # [V] of the next first code; None while a frame waits to advance
    step: int = 0  # frames made (the frame loop's s)
    frame_emb: torch.Tensor | None = None  # [H] the frame waiting for its text row
    cancelled: bool = False

    def text_row(self, block: bool = False) -> torch.Tensor | None:
        """The text row that goes with frame ``step - 1`` (None: a text feed's, not here yet)."""
        p, s = self.row.prompt, self.step - 1
        track = getattr(p, "track", None)
        return p.trailing_row(s) if track is None else track.row(s, block)


class ContinuousBatch:
    """Up to ``max_batch`` rows generating together, joining and leaving between steps."""

    def __init__(self, talker: Talker, predictor: CodePredictor, eos_id: int, max_batch: int):
        ref = talker.codec_head.weight
        self.talker, self.predictor, self.eos_id, self.max_batch = talker, predictor, eos_id, max_batch
        self.device, self.dtype = ref.device, talker.model.codec_embedding.weight.dtype
        self.slots: list[Slot | None] = [None] * max_batch
        talker.setup_cache(max_batch, CACHE_CHUNK, self.device, self.dtype)
        predictor.setup_cache(max_batch, self.device, self.dtype)
        if self.device.type == "cpu" and max_batch > 1:
            # Batched products at about the cost of one row (linear.pack_for_rows); the code
            # predictor's first pass has two rows per frame.
            pack_for_rows(talker, max_batch)
            pack_for_rows(predictor, max_batch)

    # -- rows in and out -----------------------------------------------------------------------

    @property
    def active(self) -> list[Slot]:
        return [s for s in self.slots if s is not None]

    @property
    def free(self) -> int:
        return self.slots.count(None)

    @torch.inference_mode()
    def join(self, row: Row, settings: SamplingSettings, emit: Callable[[torch.Tensor | None], None]) -> Slot:
        """Prefill ``row`` into a free cache row; it takes part from the next step on."""
        index = self.slots.index(None)
        x = row.prompt.embeds.to(self.device)[None]
        L = x.shape[1]
        self._room(L + 1)
        with self.talker.cache_rows(index, index + 1):
            h = self.talker(x, torch.arange(L, device=self.device)[None], kv_len=L)[0, -1]
        gen = make_generator(row.seed, self.device)
        vocab = self.talker.cfg.vocab_size
        slot = Slot(row=row, settings=settings, emit=emit, index=index, pos=L,
                    sampler=FirstCodeSampler(settings, vocab, self.eos_id, 1, self.device, gen), generator=gen,
                    h=h, logits=self.talker.logits(h[None])[0])
        row.shape = (self.predictor.n_groups, self.predictor.cfg.vocab_size)
        self.slots[index] = slot
        return slot

    def leave(self, slot: Slot, reason: str | None = None, error: BaseException | None = None) -> None:
        """End a row now (its cache row is free for the next one); ``error``: it failed."""
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
        moved = self._predict([s for s in self.active if s.logits is not None])
        ready = []
        for s in [s for s in self.active if s.logits is None]:
            try:
                text = s.text_row()
            except Exception as e:  # its text feed was cancelled or failed: this row only
                self.leave(s, error=e)
                continue
            if text is not None:
                ready.append((s, text))
        if ready:
            self._advance(ready)
        return moved or bool(ready)

    def _predict(self, slots: list[Slot]) -> bool:
        if not slots:
            return False
        z = torch.cat([s.sampler(s.logits[None]) for s in slots])
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
            h = torch.stack([m[0].h for m in members])
            zs = torch.stack([m[1] for m in members])
            gens = [m[0].generator for m in members]
            rest, emb, _ = self.predictor.predict(h, self.talker.embed_codec(zs), do_sample=do_sample,
                                                  temperature=temperature, top_k=top_k, top_p=top_p,
                                                  generator=gens if len(gens) > 1 else gens[0])
            for i, (slot, zi) in enumerate(members):
                self._frame(slot, torch.cat((zi[None], rest[i])), emb[i])
        return True

    def _frame(self, slot: Slot, frame: torch.Tensor, emb: torch.Tensor) -> None:
        """What ends a row: ``Row.take`` (its watcher, then its cap), as in ``frames.generate``."""
        row = slot.row
        slot.step += 1
        slot.logits = None
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
        for s, _ in ready:
            s.h, s.logits, s.frame_emb = h[s.index], logits[s.index], None
            s.pos += 1

    def _room(self, slots: int) -> None:
        if slots > self.talker.max_seq:
            self.talker.grow_cache(max(slots, 2 * self.talker.max_seq))

