"""Sampling settings and the logit pipeline of the first code and of the code predictor (§5.2).

Everything stays on the device: the repetition penalty reads a preallocated "seen" mask instead of
a host-side list, and drawing from the distribution uses the exponential race
``argmax(p / Exp(1))`` — an exact sample from ``p`` (as ``torch.multinomial``) that needs no
validity check on the host, so it never synchronizes and can be captured in a CUDA graph.
Random draws come from a ``torch.Generator`` seeded from the user's seed.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields, replace
from typing import Sequence

import torch

from ..errors import InputError
from ..io.config import GenerationConfig


@dataclass(frozen=True)
class SamplingSettings(GenerationConfig):
    """generation_config.json's sampling values after the user's overrides (same fields, one place)."""

    # EOS is blocked until this many first codes exist: the reference's value; `bench` raises it
    # to make every run the same number of frames.
    min_new_tokens: int = 2

    OVERRIDABLE = tuple(f.name for f in fields(GenerationConfig) if f.name != "max_new_tokens") + ("min_new_tokens",)

    @classmethod
    def resolve(cls, gen: GenerationConfig | None = None, greedy: bool = False,
                **overrides) -> "SamplingSettings":
        """generation_config.json values, then user overrides (None = keep); ``greedy`` turns off
        sampling for both the first code and the code predictor."""
        gen = gen or GenerationConfig()
        s = cls(**{f.name: getattr(gen, f.name) for f in fields(GenerationConfig) if f.name != "max_new_tokens"})
        unknown = sorted(k for k in overrides if k not in cls.OVERRIDABLE)
        if unknown:
            raise InputError(f"unknown sampling option(s): {', '.join(unknown)}")
        s = replace(s, **{k: v for k, v in overrides.items() if v is not None})
        if greedy:
            s = replace(s, do_sample=False, subtalker_dosample=False)
        s.validate()
        return s

    def validate(self) -> None:
        for prefix in ("", "subtalker_"):
            t = getattr(self, prefix + "temperature")
            k = getattr(self, prefix + "top_k")
            p = getattr(self, prefix + "top_p")
            if not 0 < t < math.inf:  # inf would flatten every distribution (and NaN the masked codes)
                raise InputError(f"{prefix}temperature must be a finite number > 0 (got {t})")
            if k < 0:
                raise InputError(f"{prefix}top_k must be >= 0 (got {k}; 0 disables it)")
            if not 0 < p <= 1:
                raise InputError(f"{prefix}top_p must be in (0, 1] (got {p})")
        if not 0 < self.repetition_penalty < math.inf:
            raise InputError(f"repetition_penalty must be a finite number > 0 (got {self.repetition_penalty})")
        if self.min_new_tokens < 0:
            raise InputError(f"min_new_tokens must be >= 0 (got {self.min_new_tokens})")


MAX_SEED = 2**64 - 1


def make_generator(seed: int | None, device: torch.device | str) -> torch.Generator:
    g = torch.Generator(device=device)
    seed_generator(g, seed)
    return g


def seed_generator(g: torch.Generator, seed: int | None) -> None:
    """Seed ``g`` with any seed in 0..2**64-1 (None: a fresh random one), distinct seeds giving
    distinct streams.

    CUDA's Philox takes the whole 64-bit seed. The CPU generator is an MT19937, whose
    ``manual_seed`` keeps only the low 32 bits (1 and 2**32 + 1 would draw the same numbers):
    there a seed of 2**32 or more sets the state MT19937's own 64-bit seeding (init_by_array over
    the seed's two 32-bit words) gives it. Seeds below 2**32 seed it as they always have."""
    if seed is None:
        g.seed()
        return
    seed = int(seed)
    if not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be in 0..{MAX_SEED}, got {seed}")
    if g.device.type != "cpu" or seed < 2**32:
        g.manual_seed(seed)
        return
    g.set_state(_mt19937_state(seed))


# The CPU generator's state: the initial seed (u64), left and seeded (i32 each), next (u64), then
# the 624 MT19937 words (one per u64), then the cached normal samples.
_MT_WORDS_OFFSET = 24


@functools.lru_cache(maxsize=64)
def _mt19937_state(seed: int) -> torch.Tensor:
    import numpy as np

    template = torch.Generator().manual_seed(1).get_state()
    buf = bytearray(template.numpy().tobytes())
    words = np.random.RandomState([seed & 0xFFFFFFFF, seed >> 32]).get_state()[1]  # init_by_array
    check = np.random.RandomState(1).get_state()[1]
    mine = np.frombuffer(bytes(buf[_MT_WORDS_OFFSET:_MT_WORDS_OFFSET + 8 * 624]), dtype=np.uint64)
    if not np.array_equal(mine, check.astype(np.uint64)):  # a torch whose state layout we do not know
        raise RuntimeError("this torch's CPU generator state has an unknown layout: seeds must be below 2**32")
    buf[0:8] = seed.to_bytes(8, "little")
    buf[_MT_WORDS_OFFSET:_MT_WORDS_OFFSET + 8 * 624] = words.astype(np.uint64).tobytes()
    return torch.frombuffer(buf, dtype=torch.uint8).clone()


def warp(logits: torch.Tensor, temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """Temperature, top-k (ties with the k-th value kept) and top-p on fp32 logits [B, V]."""
    if temperature != 1.0:
        logits = logits / temperature
    if 0 < top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        # As the reference: drop the low tail whose cumulative mass is <= 1 - top_p, keep >= 1 token.
        sorted_logits, idx = torch.sort(logits, dim=-1, descending=False)
        cum = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
        remove_sorted = cum <= (1 - top_p)
        remove_sorted[..., -1] = False
        remove = remove_sorted.scatter(-1, idx, remove_sorted)
        logits = logits.masked_fill(remove, float("-inf"))
    return logits


def draw(logits: torch.Tensor, generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """One sample per row from softmax(logits) [B, V] -> [B] (no host sync).

    ``generator`` may be one generator per row (batched generation): each row then draws exactly
    the numbers it would draw alone, so a batched row equals its batch-1 result.
    """
    probs = logits.softmax(dim=-1)
    q = torch.empty_like(probs)
    if isinstance(generator, (list, tuple)):
        for row, g in zip(q, generator):
            row.exponential_(generator=g)
    else:
        q.exponential_(generator=generator)
    return (probs / q).argmax(dim=-1)


def pick(logits: torch.Tensor, do_sample: bool, temperature: float, top_k: int, top_p: float,
         generator: torch.Generator | None) -> torch.Tensor:
    """The code predictor's rule: argmax, or temperature/top-k/top-p then a draw. [B, V] -> [B]."""
    logits = logits.float()
    if not do_sample:
        return logits.argmax(dim=-1)
    return draw(warp(logits, temperature, top_k, top_p), generator)


def first_code_scores(logits: torch.Tensor, settings: SamplingSettings, seen: torch.Tensor | None,
                      blocked: torch.Tensor) -> torch.Tensor:
    """Steps 1-3 of §5.2 on raw logits [B, V] -> fp32 scores: the repetition penalty on the codes
    ``seen`` [B, V] holds (None: none yet), then the ``blocked`` ids ([V], or [B, V] per row) at -inf."""
    x = logits.float()
    if settings.repetition_penalty != 1.0 and seen is not None:
        p = settings.repetition_penalty
        x = torch.where(seen, torch.where(x < 0, x * p, x / p), x)
    return x.masked_fill(blocked, float("-inf"))


def choose_first_code(scores: torch.Tensor, settings: SamplingSettings, seen: torch.Tensor,
                      generator: torch.Generator | Sequence[torch.Generator] | None) -> torch.Tensor:
    """Step 4 of §5.2: a draw from the warped scores [B, V] (or their argmax without sampling);
    the choice is marked in ``seen`` [B, V]. [B] on the device, no host sync."""
    s = settings
    ids = draw(warp(scores, s.temperature, s.top_k, s.top_p), generator) if s.do_sample else scores.argmax(dim=-1)
    seen.scatter_(1, ids[:, None], True)
    return ids


def control_masks(vocab_size: int, eos_id: int, device: torch.device | str) -> tuple[torch.Tensor, torch.Tensor]:
    """The first code's blocked ids [V]: (control rows, control rows and EOS). Ids [vocab - 1024,
    vocab) are control/speaker/language rows, never audio; EOS stays allowed unless blocked too."""
    suppress = torch.zeros(vocab_size, dtype=torch.bool, device=device)
    suppress[max(vocab_size - 1024, 0):] = True
    suppress[eos_id] = False
    with_eos = suppress.clone()
    with_eos[eos_id] = True
    return suppress, with_eos


class FirstCodeSampler:
    """Logit pipeline of the talker's first code, with per-utterance state held on the device
    (``seen``: the codes chosen so far, a [batch, V] buffer of its own unless one is given)."""

    def __init__(self, settings: SamplingSettings, vocab_size: int, eos_id: int, batch: int,
                 device: torch.device | str, generator: torch.Generator | None, min_new_tokens: int | None = None,
                 seen: torch.Tensor | None = None):
        self.s = settings
        self.eos_id = eos_id
        self.min_new_tokens = settings.min_new_tokens if min_new_tokens is None else min_new_tokens
        self.generator = generator
        self.seen = torch.zeros(batch, vocab_size, dtype=torch.bool, device=device) if seen is None else seen
        self.suppress, self.suppress_and_eos = control_masks(vocab_size, eos_id, device)
        self.steps = 0  # codes generated so far (host counter, no sync)

    def process(self, logits: torch.Tensor) -> torch.Tensor:
        """Steps 1-3 of §5.2 on raw logits [B, V] -> fp32 scores."""
        # EOS is blocked until min_new_tokens codes exist (the reference's min-length processors).
        blocked = self.suppress_and_eos if self.steps < self.min_new_tokens else self.suppress
        return first_code_scores(logits, self.s, self.seen if self.steps > 0 else None, blocked)

    def __call__(self, logits: torch.Tensor) -> torch.Tensor:
        ids = choose_first_code(self.process(logits), self.s, self.seen, self.generator)
        self.steps += 1
        return ids
