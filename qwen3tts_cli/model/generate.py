"""The frame loop (§5.3): prefill the talker, then per frame: code predictor -> 15 residual codes,
frame embedding + text row -> one talker step -> next first code.

Differences from the reference, both deliberate:
* ``max_frames = N`` gives exactly N frames when no EOS comes (the reference's
  ``max_new_tokens = N`` gives N - 1, dropping a first code that never got its residual codes).
* The EOS test of frame s is overlapped with frame s's own work: the first code is copied to the
  host asynchronously while the code predictor and the next talker step are queued, and only then
  waited for. On EOS that speculative work is discarded. One host sync per frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch

from .code_predictor import CodePredictor
from .sampling import FirstCodeSampler, SamplingSettings, make_generator
from .talker import Talker

# Initial cache room for generated frames; the cache grows by doubling past it.
_CACHE_CHUNK = 512


@dataclass
class GenerationResult:
    codes: torch.Tensor  # [T, 16] int64 on the CPU
    stop_reason: str  # "eos" | "max_frames"
    talker_logits: torch.Tensor | None = None  # [steps, vocab] fp32: raw codec_head outputs, step 0 = prefill
    cp_logits: torch.Tensor | None = None  # [frames, 15, cp_vocab] fp32: raw code-predictor logits
    warnings: list[str] = field(default_factory=list)
    prompt_length: int = 0
    trip: object | None = None  # the guard.Trip that ended a batched row early (batch.generate_batch)

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])


class _HostFlag:
    """Asynchronous device -> host copy of ``n`` int64 (one per batch row), waited for only when read."""

    def __init__(self, device: torch.device, n: int = 1):
        self.cuda = device.type == "cuda"
        self.buf = torch.empty(n, dtype=torch.long, pin_memory=self.cuda)
        self.event = torch.cuda.Event() if self.cuda else None

    def start(self, t: torch.Tensor) -> None:
        self.buf.copy_(t.reshape(-1), non_blocking=self.cuda)
        if self.cuda:
            self.event.record()

    def read(self) -> int:
        if self.cuda:
            self.event.synchronize()
        return int(self.buf[0])

    def read_all(self) -> list[int]:
        if self.cuda:
            self.event.synchronize()
        return self.buf.tolist()


class FrameLog:
    """Optional record of raw logits while iterating (parity tests and diagnostics)."""

    def __init__(self, cp_frames: int | None = None):
        self.talker: list[torch.Tensor] = []  # [1, vocab] per step, step 0 = prefill
        self.cp: list[torch.Tensor] = []  # [15, cp_vocab] per frame
        self.cp_frames = cp_frames


@torch.inference_mode()
def iter_frames(talker: Talker, predictor: CodePredictor, prompt_embeds: torch.Tensor,
                trailing: torch.Tensor, pad: torch.Tensor, settings: SamplingSettings, max_frames: int,
                eos_id: int, seed: int | None = None, log: FrameLog | None = None,
                cuda_graphs: bool = True) -> Iterator[torch.Tensor]:
    """Yield the frames of one prompt (batch 1) as they are made: int64 [16] tensors on the model's
    device. The generator's return value (StopIteration.value) is the stop reason, "eos" or
    "max_frames".

    On CUDA each frame is a CUDA-graph replay (cuda_graphs.py, same frames) unless ``cuda_graphs``
    is False or QWEN3TTS_CUDA_GRAPHS=0.

    prompt_embeds [L, H] prefill rows; trailing [m, H] text rows paired with frames 0..m-1; ``pad``
    [H] pairs with every later frame. Sampling, penalties and stopping follow §5.2. Closing the
    generator early (a consumer's ``break``) simply drops the speculative next step.
    """
    if max_frames < 1:
        raise ValueError("max_frames must be >= 1")
    device = prompt_embeds.device
    from .cuda_graphs import iter_frames_static, use_cuda_graphs

    if use_cuda_graphs(device, cuda_graphs):
        return (yield from iter_frames_static(talker, predictor, prompt_embeds, trailing, pad, settings,
                                              max_frames, eos_id, seed=seed, log=log, capture=True))
    L = prompt_embeds.shape[0]
    talker.setup_cache(1, L + min(max_frames, _CACHE_CHUNK), device, prompt_embeds.dtype)
    predictor.setup_cache(1, device, prompt_embeds.dtype)
    generator = make_generator(seed, device)
    sampler = FirstCodeSampler(settings, talker.cfg.vocab_size, eos_id, 1, device, generator)
    cp_kw = dict(do_sample=settings.subtalker_dosample, temperature=settings.subtalker_temperature,
                 top_k=settings.subtalker_top_k, top_p=settings.subtalker_top_p, generator=generator)
    n_cp_logits = 0 if log is None else (max_frames if log.cp_frames is None else log.cp_frames)

    positions = torch.arange(L + max_frames, device=device)  # sliced per step: no host->device copy
    h = talker(prompt_embeds[None], positions[:L], kv_len=L)[:, -1]
    logits = talker.logits(h)
    if log is not None:
        log.talker.append(logits.float())
    z = sampler(logits)
    flag = _HostFlag(device)
    pos = L
    for s in range(max_frames):
        flag.start(z)
        want_cp = s < n_cp_logits
        rest, frame_emb, lg = predictor.predict(h, talker.embed_codec(z), return_logits=want_cp, **cp_kw)
        last = s == max_frames - 1
        if not last:
            x = frame_emb + (trailing[s] if s < trailing.shape[0] else pad)
            if pos + 1 > talker.max_seq:
                talker.grow_cache(min(2 * talker.max_seq, L + max_frames))
            h_next = talker(x[:, None], positions[pos:pos + 1], kv_len=pos + 1)[:, -1]
            logits = talker.logits(h_next)
        if flag.read() == eos_id:
            return "eos"
        if want_cp:
            log.cp.append(lg[0])
        yield torch.cat((z[:, None], rest), dim=1)[0]
        if last:
            break
        if log is not None:
            log.talker.append(logits.float())
        h, pos = h_next, pos + 1
        z = sampler(logits)
    return "max_frames"


@torch.inference_mode()
def generate_frames(talker: Talker, predictor: CodePredictor, prompt_embeds: torch.Tensor,
                    trailing: torch.Tensor, pad: torch.Tensor, settings: SamplingSettings, max_frames: int,
                    eos_id: int, seed: int | None = None, return_logits: bool = False,
                    cp_logits_frames: int | None = None,
                    progress: Callable[[int], None] | None = None, cuda_graphs: bool = True) -> GenerationResult:
    """All frames of one prompt at once: ``iter_frames`` collected into codes [T, 16] on the CPU.

    ``progress(n)`` is called after each complete frame with the number of frames so far; it gets
    only what the loop already knows on the host, so it adds no device sync. An exception it raises
    (e.g. KeyboardInterrupt) ends generation.
    """
    log = FrameLog(cp_logits_frames) if return_logits else None
    frames: list[torch.Tensor] = []
    it = iter_frames(talker, predictor, prompt_embeds, trailing, pad, settings, max_frames, eos_id,
                     seed=seed, log=log, cuda_graphs=cuda_graphs)
    while True:
        try:
            frames.append(next(it))
        except StopIteration as stop:
            stop_reason = stop.value
            break
        if progress is not None:
            progress(len(frames))

    groups = talker.cfg.num_code_groups
    codes = torch.stack(frames).cpu() if frames else torch.empty(0, groups, dtype=torch.long)
    return GenerationResult(
        codes=codes, stop_reason=stop_reason,
        talker_logits=torch.cat(log.talker).cpu() if log is not None else None,
        cp_logits=(torch.stack(log.cp).cpu() if log.cp else
                   torch.empty(0, groups - 1, predictor.cfg.vocab_size)) if log is not None else None,
        prompt_length=prompt_embeds.shape[0])
