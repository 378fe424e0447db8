"""Batched generation: B prompts of different lengths decoded in lock-step (§3.8), each row giving
the codes it would give alone.

* Prompts are left-padded with zero rows. All rows share cache slots (slot t of every row is
  written at step t), while each row's RoPE positions start at 0 at its first real row and its
  padding slots are masked out (``Talker.forward(left_pad=...)``).
* Trailing text rows are per row: row b pairs frame s with its own trailing[s], then its own pad.
* Stopping is per row: a row ends at its first EOS (not emitted) or after its own ``max_frames``.
  A finished row keeps being computed with the others (as the reference does) and its output is
  ignored; the loop ends when every row has ended. One host sync per frame reads all first codes.
* Seeds: one random generator per row, seeded with that row's seed, drawn from in the same order
  as the batch-1 loop. So a seeded row reproduces its batch-1 sampling as well as its greedy codes
  (up to float rounding of the batched matmuls, which rarely moves a sample). A row without seed
  gets a fresh random one.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch

from .code_predictor import CodePredictor
from .generate import _CACHE_CHUNK, GenerationResult, _HostFlag
from .sampling import FirstCodeSampler, SamplingSettings, make_generator
from .talker import Talker


def left_pad_batch(prompts: Sequence) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Prompts (``.embeds`` [L_b, H], ``.trailing`` [m_b, H], ``.pad`` [H]) -> left-padded prefill
    [B, Lmax, H], per-row padding counts [B] and text rows [B, max m + 1, H] (the last column and
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
    left_pad = torch.tensor([L - n for n in lens], dtype=torch.long, device=ref.device)
    return x, left_pad, text


def lockstep_frames(talker: Talker, predictor: CodePredictor, x: torch.Tensor, left_pad: torch.Tensor,
                    text: torch.Tensor, settings: SamplingSettings, steps: int, eos_id: int,
                    seeds: Sequence[int | None], return_logits: bool):
    """The eager lock-step loop over a left-padded batch. Per frame s it yields (the rows' first
    codes z_s on the host, frame [B, 16] on the device, the fp32 talker logits that produced z_s,
    the fp32 cp logits [B, 15, cp_V]); the logits only with ``return_logits``. As in
    ``iter_frames``, the next talker step is queued before the host waits for z_s."""
    B, L = x.shape[0], x.shape[1]
    device, dtype = x.device, x.dtype
    talker.setup_cache(B, L + min(steps, _CACHE_CHUNK), device, dtype)
    predictor.setup_cache(B, device, dtype)
    gens = [make_generator(s, device) for s in seeds]
    sampler = FirstCodeSampler(settings, talker.cfg.vocab_size, eos_id, B, device, gens)
    cp_kw = dict(do_sample=settings.subtalker_dosample, temperature=settings.subtalker_temperature,
                 top_k=settings.subtalker_top_k, top_p=settings.subtalker_top_p, generator=gens)
    slots = torch.arange(L + steps, device=device)
    h = talker(x, slots[:L], kv_len=L, left_pad=left_pad)[:, -1]
    logits = talker.logits(h)
    z = sampler(logits)
    flag = _HostFlag(device, B)
    pos, last_text = L, text.shape[1] - 1
    for s in range(steps):
        flag.start(z)
        rest, frame_emb, lg = predictor.predict(h, talker.embed_codec(z), return_logits=return_logits, **cp_kw)
        last = s == steps - 1
        if not last:
            xs = frame_emb + text[:, min(s, last_text)]
            if pos + 1 > talker.max_seq:
                talker.grow_cache(min(2 * talker.max_seq, L + steps))
            h_next = talker(xs[:, None], slots[pos:pos + 1], kv_len=pos + 1, left_pad=left_pad)[:, -1]
            logits_next = talker.logits(h_next)
        yield (flag.read_all(), torch.cat((z[:, None], rest), dim=1),
               logits.float() if return_logits else None, lg)
        if last:
            break
        h, logits, pos = h_next, logits_next, pos + 1
        z = sampler(logits)


@torch.inference_mode()
def generate_batch(talker: Talker, predictor: CodePredictor, prompts: Sequence, settings: SamplingSettings,
                   max_frames: int | Sequence[int], eos_id: int,
                   seeds: int | None | Sequence[int | None] = None, return_logits: bool = False,
                   on_row: Callable[[int, GenerationResult], None] | None = None,
                   progress: Callable[[int], None] | None = None,
                   cuda_graphs: bool = True, static_step: bool = False,
                   guards: Sequence | None = None) -> list[GenerationResult]:
    """Codes of every prompt, generated together. Returns one GenerationResult per prompt, in order.

    ``max_frames`` and ``seeds``: one value for all rows or one per row. ``on_row(b, result)`` is
    called as soon as row b has ended (e.g. to decode and write it while the others go on);
    ``progress(steps)`` after every lock-step frame. ``return_logits`` fills each result's
    talker_logits / cp_logits exactly as ``generate_frames`` does for that prompt alone. On CUDA
    the frames come from CUDA-graph replays (cuda_graphs.py) unless ``cuda_graphs`` is False or
    QWEN3TTS_CUDA_GRAPHS=0; ``static_step`` runs that graphed step eagerly (tests, any device).

    ``guards``: one guard.RunawayGuard (or None) per row, fed each row's frames as
    ``TTS.guarded_frames`` feeds them; a trip ends the row with stop_reason = trip.reason, its
    codes cut at trip.keep and ``result.trip`` set.
    """
    from .cuda_graphs import run_batch_static, use_cuda_graphs

    B = len(prompts)
    if B == 0:
        return []
    caps = [int(max_frames)] * B if isinstance(max_frames, int) else [int(n) for n in max_frames]
    seeds = list(seeds) if isinstance(seeds, (list, tuple)) else [seeds] * B
    if len(caps) != B or len(seeds) != B or (guards is not None and len(guards) != B):
        raise ValueError("max_frames and seeds need one value per prompt")
    if min(caps) < 1:
        raise ValueError("max_frames must be >= 1")
    x, left_pad, text = left_pad_batch(prompts)
    steps = max(caps)
    args = (talker, predictor, x, left_pad, text, settings, steps, eos_id, seeds, return_logits)
    if static_step or use_cuda_graphs(x.device, cuda_graphs):
        frames_iter = run_batch_static(*args, capture=not static_step)
    else:
        frames_iter = lockstep_frames(*args)

    frames: list[torch.Tensor] = []  # [B, 16] per lock-step frame
    t_log: list[torch.Tensor] = []  # [B, V]: the talker logits that produced each frame's first code
    cp_log: list[torch.Tensor] = []
    n = [0] * B  # frames emitted per row
    results: list[GenerationResult | None] = [None] * B

    def finish(b: int, reason: str, trip=None) -> None:
        if trip is not None:
            n[b] = min(n[b], trip.keep)
        codes = (torch.stack(frames[:n[b]])[:, b].cpu() if n[b] else
                 torch.empty(0, talker.cfg.num_code_groups, dtype=torch.long))
        r = GenerationResult(codes=codes, stop_reason=reason, prompt_length=prompts[b].embeds.shape[0], trip=trip)
        if return_logits:
            # As generate_frames: the step that produced EOS is logged, the one after a cap is not.
            r.talker_logits = torch.stack(t_log[:n[b] + (reason == "eos")])[:, b].cpu()
            r.cp_logits = (torch.stack(cp_log[:n[b]])[:, b].cpu() if n[b] else
                           torch.empty(0, predictor.n_groups - 1, predictor.cfg.vocab_size))
        results[b] = r
        if on_row is not None:
            on_row(b, r)

    for s, (first, frame, logits, lg) in enumerate(frames_iter):
        frames.append(frame)
        if return_logits:
            t_log.append(logits)
            cp_log.append(lg)
        for b in range(B):
            if results[b] is not None:
                continue
            if first[b] == eos_id:
                finish(b, "eos")
                continue
            trip = guards[b].push(frame[b]) if guards is not None and guards[b] is not None else None
            if trip is not None:
                finish(b, trip.reason, trip)
                continue
            n[b] += 1
            if n[b] == caps[b]:
                finish(b, "max_frames")
        if progress is not None:
            progress(s + 1)
        if all(r is not None for r in results):
            break
    frames_iter.close()
    return results
