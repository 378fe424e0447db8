#!/usr/bin/env python3
"""Batching on the CPU: what a batched product, a batched step and a batched request cost.

    python scripts/bench_batching.py products                 # one fp32 product at 1..8 rows
    python scripts/bench_batching.py steps -m MODEL           # ContinuousBatch: predict / advance at 1 and 4 rows
    python scripts/bench_batching.py requests -m MODEL [--frames 25]   # scheduler concurrency 1 and 4,
                                                              # with and without the MKL packed products
    python scripts/bench_batching.py frames -m MODEL [--frames 25]     # scheduler concurrency 4: the batch
                                                              # frame as one LaneStep or in two halves, twice

Run each on a quiet machine; docs/benchmarks.md has the figures and what they mean.
"""

from __future__ import annotations

import argparse
import time

import torch


def _ms(fn, n: int = 100) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - t) / n * 1e3


def products() -> None:
    op = torch.ops.mkldnn._linear_pointwise
    torch.manual_seed(0)
    for k, n in ((1024, 3072), (3072, 1024), (1024, 1024), (1024, 4096)):
        w = torch.randn(n, k)
        print(f"{k}x{n} fp32 (ms)")
        for rows in (1, 2, 4, 8):
            x = torch.randn(rows, k)
            packed = torch.ops.mkl._mkl_reorder_linear_weight(w, rows)
            print(f"  {rows} rows: oneDNN {_ms(lambda: op(x, w, None, 'none', [], '')):.3f}  "
                  f"ATen {_ms(lambda: torch.nn.functional.linear(x, w)):.3f}  "
                  f"MKL packed {_ms(lambda: torch.ops.mkl._mkl_linear(x, packed, w, None, rows)):.3f}")


def _no_packing():
    import qwen3tts_cli.model.continuous as continuous

    real = continuous.pack_for_rows
    continuous.pack_for_rows = lambda module, rows: 0
    return lambda: setattr(continuous, "pack_for_rows", real)


@torch.inference_mode()
def steps(model: str) -> None:
    from qwen3tts_cli.engine import load_tts
    from qwen3tts_cli.model.continuous import ContinuousBatch
    from qwen3tts_cli.model.frames import Row

    tts = load_tts(model, device="cpu")
    prompt = tts.prompt("Hello, this is a small test of the text to speech model.",
                        **({"speaker": tts.default_speaker} if tts.model_type == "custom_voice" else
                           {"instruct": "A calm voice."}))
    settings = tts.sampling(min_new_tokens=10**6)
    for packed in (False, True):
        restore = None if packed else _no_packing()
        for n in (1, 4):
            batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, 4, lane_step=False)
            for i in range(n):
                batch.join(Row(prompt, cap=10**6, seed=i), settings, lambda frame: None)
            for _ in range(2):
                batch.step()
            tp = ta = 0.0
            for _ in range(6):
                t = time.perf_counter()
                batch._predict([s for s in batch.active if s.predicting])
                tp += time.perf_counter() - t
                t = time.perf_counter()
                batch._advance([(s, s.text_row(s.step - 1)) for s in batch.active if not s.predicting])
                ta += time.perf_counter() - t
            print(f"{'MKL packed' if packed else 'oneDNN plain'}, {n} rows: code predictor {tp / 6 * 1e3:.0f} ms, "
                  f"talker step {ta / 6 * 1e3:.0f} ms")
            for s in batch.active:
                batch.leave(s)
        if restore:
            restore()


def requests(model: str, frames: int) -> None:
    from qwen3tts_cli.bench import speed
    from qwen3tts_cli.engine import load_tts

    tts = load_tts(model, device="cpu")
    tts.decoder  # noqa: B018
    kw = speed.request_options(tts)
    speed._run_frames(tts, speed.DEFAULT_TEXT, kw, 3)
    for packed in (False, True):
        restore = None if packed else _no_packing()
        for n in (1, 4):
            r = speed.concurrency_level(tts, speed.DEFAULT_TEXT, kw, frames, n)
            print(f"{'MKL packed' if packed else 'oneDNN plain'}, concurrency {n}: {r['aggregate_xrt']:.3f}x RT, "
                  f"{r['aggregate_frames_per_s']:.2f} frames/s, TTFA p50 {r['ttfa_ms_p50']:.0f} ms, "
                  f"p95 {r['ttfa_ms_p95']:.0f} ms")
        if restore:
            restore()


@torch.inference_mode()
def frames(model: str, frames: int) -> None:
    import functools

    from qwen3tts_cli.bench import speed
    from qwen3tts_cli.engine import load_tts, scheduler
    from qwen3tts_cli.model.continuous import ContinuousBatch

    tts = load_tts(model, device="cpu")
    tts.decoder  # noqa: B018
    kw = speed.request_options(tts)
    speed._run_frames(tts, speed.DEFAULT_TEXT, kw, 3)
    real = scheduler.ContinuousBatch
    try:
        for _ in range(2):  # alternating, so that drift on a shared machine shows
            for lane_step in (False, True):
                scheduler.ContinuousBatch = functools.partial(ContinuousBatch, lane_step=lane_step)
                r = speed.concurrency_level(tts, speed.DEFAULT_TEXT, kw, frames, 4)
                print(f"{'one LaneStep' if lane_step else 'two halves'}, concurrency 4: {r['aggregate_xrt']:.3f}x RT, "
                      f"{r['aggregate_frames_per_s']:.2f} frames/s")
    finally:
        scheduler.ContinuousBatch = real


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("products", "steps", "requests", "frames"))
    ap.add_argument("-m", "--model")
    ap.add_argument("--frames", type=int, default=25)
    a = ap.parse_args(argv)
    if a.what != "products" and not a.model:
        ap.error("-m MODEL is needed")
    {"products": products, "steps": lambda: steps(a.model),
     "requests": lambda: requests(a.model, a.frames), "frames": lambda: frames(a.model, a.frames)}[a.what]()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
