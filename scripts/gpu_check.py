#!/usr/bin/env python3
"""One-shot check of the CUDA-graph path on a GPU machine (no weights or network needed).

    python scripts/gpu_check.py [--full 0.6B-CustomVoice,1.7B-CustomVoice] [--frames 200] [--json OUT.json]

1. Tiny random checkpoints (0.6B-CustomVoice, 1.7B-VoiceDesign), fp32: graph replays vs the eager
   loop — greedy codes identical and logits close, seeded sampling reproducible, forced EOS,
   batched generation (graphs vs eager vs batch 1), streaming codec graph replays vs eager calls,
   ``TTS.warm_up`` followed by a run that captures nothing more, a text feed arriving word by word
   (graphs == eager == the whole text in the streaming layout), the scheduler (requests arriving at
   different times == their solo runs).
2. Full-size random checkpoints (``--full``): fp32 greedy codes graph == eager; bf16 logits of the
   graph vs eager path (same first codes fed) within bf16 tolerance, and of the fused ops (bf16
   default on CUDA: one-kernel RMSNorm, q/k/v and gate/up as one product each) vs op by op; then timings with EOS
   suppressed: eager vs graphs at batch 1 (and graphs with SDPA instead of flash-attn, when installed;
   its logits are checked against SDPA's first), graphs op by op, graphs at batch 16
   (aggregate), capture time, codec decode, time to first audio and x RT of ``TTS.stream``, a text
   feed's first audio after its first word, the scheduler at concurrency 1, 4 and 16 (aggregate x RT,
   frames/s, TTFA p50/p95), the
   streaming codec's cost per 1/2/4/8-frame push (eager and graphs), peak CUDA memory; and
   `qwen3tts bulk` on the first full model (in process, and one Ray replica on the GPU when ray is
   installed): rows/s and audio hours per hour.

Prints one JSON object (also written to --json, and to $OUT/gpu_check.json when $OUT is set) and
exits 1 when a check failed, 2 without CUDA.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.io.checkpoint import build_checkpoint
from qwen3tts_cli.model.frames import Row, generate
from qwen3tts_cli.runtime import RuntimeSettings

FRAME_S = 0.08
TEXT = "The quick brown fox jumps over the lazy dog, and then it runs far away into the quiet forest."
TEXTS = ["Hi there.", TEXT, "A medium length sentence for the third row.", "Good morning!"]


def voice_kw(tts) -> dict:
    if tts.model_type == "custom_voice":
        return dict(speaker=tts.default_speaker)
    if tts.model_type == "voice_design":
        return dict(instruct="A calm, low male voice.")
    raise SystemExit("gpu_check needs a CustomVoice or VoiceDesign model")


def run_rows(tts, prompts, settings, caps, graphs, seeds=None, record=False):
    """Results of prompts run together through the frame loop (graph replays or the eager step)."""
    seeds = seeds or [None] * len(prompts)
    rows = [Row(p, c, s) for p, c, s in zip(prompts, caps, seeds)]
    for _ in generate(tts.talker, tts.predictor, rows, settings, tts.cfg.talker.codec_eos_token_id,
                      cuda_graphs=graphs, record_logits=record):
        pass
    return [r.result() for r in rows]


def run(tts, prompt, settings, frames, graphs, seed=None, record=True):
    """(codes, stop reason, talker logits, cp logits) of one prompt; the logits only with ``record``."""
    r = run_rows(tts, [prompt], settings, [frames], graphs, [seed], record)[0]
    logits = (r.talker_logits.float(), r.cp_logits.float()) if record else (None, None)
    return (r.codes, r.stop_reason, *logits)


def suppress_eos(tts):
    """Fixed frame counts for timing: EOS never wins (works inside a captured graph)."""
    raw = tts.talker.logits
    eos = torch.tensor([tts.cfg.talker.codec_eos_token_id], device=tts.device)
    tts.talker.logits = lambda h: raw(h).index_fill(-1, eos, float("-inf"))
    tts.talker._static_step = None  # graphs record the logits function: capture anew
    return raw


def timed(fn):
    torch.cuda.synchronize()
    t = time.perf_counter()
    r = fn()
    torch.cuda.synchronize()
    return r, time.perf_counter() - t


def check(report, name, ok, **info):
    report["checks"].append(dict(name=name, ok=bool(ok), **info))
    print(f"[{'ok' if ok else 'FAIL'}] {name} {info}", file=sys.stderr, flush=True)
    save(report)


def save(report) -> None:
    """Write the report as it stands (--json, $OUT/gpu_check.json): a crash or the device's time
    limit later on still leaves every figure measured so far."""
    text = json.dumps(report, indent=1)
    for path in report.get("_paths", []):
        Path(path).write_text(text)


def guarded(report, what, fn, *args) -> None:
    """fn(*args); an exception becomes a failed check (with its traceback) and the next model runs."""
    import traceback

    try:
        fn(*args)
    except Exception as e:  # noqa: BLE001 - one model's failure must not lose the others' figures
        check(report, f"{what} raised", False, error=f"{type(e).__name__}: {e}",
              traceback=traceback.format_exc(limit=8))
    finally:
        torch.cuda.empty_cache()


def tiny_checks(report, model, root):
    tts = load_tts(build_checkpoint(model, "tiny", 0, root / f"tiny-{model}"), device="cuda", dtype="float32")
    kw = voice_kw(tts)
    p = tts.prompt(TEXT, language="english", **kw)
    greedy, sampled = tts.sampling(greedy=True), tts.sampling()
    e = run(tts, p, greedy, 300, False)  # 300 frames: crosses a 256-slot bucket
    g = run(tts, p, greedy, 300, True)
    check(report, f"{model} tiny fp32 greedy codes graph == eager", torch.equal(e[0], g[0]) and e[1] == g[1],
          frames=int(e[0].shape[0]), talker_logit_diff=float((e[2] - g[2]).abs().max()),
          cp_logit_diff=float((e[3] - g[3]).abs().max()), graphs=len(tts.talker._static_step.graphs))
    a = run(tts, p, sampled, 40, True, seed=3)
    b = run(tts, p, sampled, 40, True, seed=3)
    c = run(tts, p, sampled, 40, True, seed=4)
    se = run(tts, p, sampled, 40, False, seed=3)
    check(report, f"{model} tiny seeded sampling reproducible with graphs", torch.equal(a[0], b[0]) and
          not torch.equal(a[0], c[0]), same_as_eager=bool(torch.equal(a[0], se[0])))
    raw = tts.talker.logits
    eos = torch.tensor([tts.cfg.talker.codec_eos_token_id], device=tts.device)
    tts.talker.logits = lambda h: raw(h).index_fill(-1, eos, 1e3)
    tts.talker._static_step = None  # graphs record the logits function: capture anew
    f = run(tts, p, greedy, 50, True)
    tts.talker.logits = raw
    tts.talker._static_step = None
    check(report, f"{model} tiny forced EOS with graphs", f[1] == "eos" and f[0].shape[0] == 2)
    prompts = [tts.prompt(t, language="english", **kw) for t in TEXTS]
    caps = [30, 45, 20, 38]
    bg = run_rows(tts, prompts, greedy, caps, True)
    be = run_rows(tts, prompts, greedy, caps, False)
    alone = [run(tts, q, greedy, n, False)[0] for q, n in zip(prompts, caps)]
    check(report, f"{model} tiny batch graphs == eager == batch 1",
          all(torch.equal(x.codes, y.codes) and torch.equal(x.codes, z) for x, y, z in zip(bg, be, alone)),
          frames=[r.frames for r in bg])
    codec_checks(report, model, tts)
    feed_checks(report, model, tts, kw)
    scheduler_checks(report, model, tts, kw)
    warm_s = tts.warm_up(greedy=True, max_frames=64)
    captured = len(tts.talker._static_step.graphs), len(tts.decoder._stream_states.graphs)
    w = run(tts, p, greedy, 64, True)
    check(report, f"{model} tiny warm_up then graphs == eager", torch.equal(w[0], run(tts, p, greedy, 64, False)[0])
          and (len(tts.talker._static_step.graphs), len(tts.decoder._stream_states.graphs)) == captured,
          warm_up_s=warm_s, graphs=captured)


def set_flash(tts, on: bool) -> None:
    """flash-attn on or off for the next calls (graphs are captured anew)."""
    from qwen3tts_cli.model import layers

    for m in tts.talker.modules():
        if isinstance(m, layers.Attention):
            m.flash_attn = on
    tts.talker._static_step = None


def flash_used(tts) -> bool:
    from qwen3tts_cli.model import layers

    q = torch.zeros(1, 1, 1, 8, dtype=tts.dtype, device=tts.device)
    return layers.flash_attention_for(q, layers.CacheSpan(q, q)) is not None


def flash_checks(report, model, tts, p, greedy):
    """bf16 graphs with flash-attn's KV-cache kernel vs with SDPA (when flash-attn is installed):
    logits within bf16 tolerance, and the ms per frame of each."""
    if not flash_used(tts):
        check(report, f"{model} flash-attn", True, skipped="flash-attn not installed (or turned off)")
        return
    set_flash(tts, False)
    s = run(tts, p, greedy, 64, True)
    set_flash(tts, True)
    f = run(tts, p, greedy, 64, True)
    check_bf16_logits(report, f"{model} full bf16 logits flash-attn vs SDPA (graphs)", s, f)


def check_bf16_logits(report, name, a, b):
    """Talker logits of two runs over the steps fed the same first codes (up to the first
    divergence) within bf16 tolerance."""
    m = min(len(a[0]), len(b[0]))  # one run may end at EOS earlier
    agree = int((a[0][:m, 0] == b[0][:m, 0]).cumprod(0).sum()) if m else 0
    n = max(1, min(agree, a[2].shape[0], b[2].shape[0]))
    scale = float(a[2][:n].abs().max())
    diff = float((a[2][:n] - b[2][:n]).abs().max())
    check(report, name, diff <= 0.05 * scale + 0.1, max_abs_diff=diff, logit_scale=scale, steps_compared=n,
          frames_same_first_code=agree)


def fusion_checks(report, model, folder, fused_run, frames) -> float:
    """The bf16 model with the reference's op-by-op arithmetic (RuntimeSettings(fused_ops=False):
    RMSNorm written out, q/k/v and gate/up as three and two products): its graph run's logits vs the
    fused default's within bf16 tolerance; returns its ms per frame with graphs (timed as the default's)."""
    tts = load_tts(folder, device="cuda", runtime=RuntimeSettings(fused_ops=False))
    kw = voice_kw(tts)
    p = tts.prompt(TEXT, language="english", **kw)
    unfused = run(tts, p, tts.sampling(greedy=True), 64, True)
    check_bf16_logits(report, f"{model} full bf16 logits fused ops vs op by op (graphs)", fused_run,
                      unfused)
    check(report, f"{model} QWEN3TTS_FUSED_OPS=0 keeps q/k/v", tts.talker.model.layers[0].self_attn.q_proj
          is not None)
    suppress_eos(tts)
    sampled = tts.sampling()
    run(tts, p, sampled, frames, True, seed=0, record=False)  # warm-up and capture
    _, dt = timed(lambda: run(tts, p, sampled, frames, True, seed=0, record=False))
    tts = None
    torch.cuda.empty_cache()
    return 1000 * dt / frames


def full_checks(report, model, root, frames, batch):
    folder = build_checkpoint(model, "full", 0, root / f"full-{model}")
    # fp32: graph replays must give the eager codes exactly.
    tts = load_tts(folder, device="cuda", dtype="float32")
    kw = voice_kw(tts)
    p = tts.prompt(TEXT, language="english", **kw)
    greedy = tts.sampling(greedy=True)
    e, g = run(tts, p, greedy, 64, False), run(tts, p, greedy, 64, True)
    check(report, f"{model} full fp32 greedy codes graph == eager", torch.equal(e[0], g[0]) and e[1] == g[1],
          frames=int(e[0].shape[0]), talker_logit_diff=float((e[2] - g[2]).abs().max()))
    tts = e = g = None
    torch.cuda.empty_cache()

    tts = load_tts(folder, device="cuda")  # bf16 by default
    check(report, f"{model} bf16 q/k/v and gate/up fused", tts.talker.model.layers[0].self_attn.qkv_proj is not None
          and tts.predictor.model.layers[0].mlp.gate_up_proj is not None)
    p = tts.prompt(TEXT, language="english", **kw)
    greedy = tts.sampling(greedy=True)
    e, g = run(tts, p, greedy, 64, False), run(tts, p, greedy, 64, True)
    check_bf16_logits(report, f"{model} full bf16 logits graph vs eager", e, g)

    flash_checks(report, model, tts, p, greedy)
    unfused_ms = fusion_checks(report, model, folder, g, frames)

    suppress_eos(tts)
    sampled = tts.sampling()
    timings = dict(model=model, dtype="bfloat16", frames=frames, flash_attn=flash_used(tts))
    report["timings"].append(timings)  # filled in below, saved after each block
    variants = [(False, True), (True, True)]  # (graphs, flash-attn when installed)
    if timings["flash_attn"]:
        variants.insert(1, (True, False))
    for graphs, flash in variants:
        if timings["flash_attn"]:
            set_flash(tts, flash)
        run(tts, p, sampled, frames, graphs, seed=0, record=False)  # warm-up (and capture of every bucket used)
        (codes, *_), dt = timed(lambda: run(tts, p, sampled, frames, graphs, seed=0, record=False))
        key = ("graphs" if graphs else "eager") + ("_sdpa" if timings["flash_attn"] and not flash else "")
        timings[f"{key}_ms_per_frame"] = 1000 * dt / frames
        timings[f"{key}_xrt_generation"] = frames * FRAME_S / dt
        save(report)
    timings["graphs_op_by_op_ms_per_frame"] = unfused_ms
    timings["capture_s"] = tts.graph_capture_seconds()
    _, dt = timed(lambda: tts.decode(codes))
    timings["codec_ms_per_frame"] = 1000 * dt / frames
    timings["xrt_end_to_end_graphs"] = frames * FRAME_S / (timings["graphs_ms_per_frame"] * frames / 1000 + dt)
    prompts = [tts.prompt(TEXTS[i % len(TEXTS)], language="english", **kw) for i in range(batch)]
    caps, seeds = [frames] * batch, list(range(batch))
    run_rows(tts, prompts, sampled, caps, True, seeds)  # warm-up and capture
    _, dt = timed(lambda: run_rows(tts, prompts, sampled, caps, True, seeds))
    timings[f"batch{batch}_aggregate_xrt_generation"] = batch * frames * FRAME_S / dt
    timings[f"batch{batch}_ms_per_step"] = 1000 * dt / frames
    save(report)
    stream_timings(tts, kw, timings)
    save(report)
    concurrency_timings(tts, kw, timings, min(frames, 100))
    timings["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    print(json.dumps(timings), file=sys.stderr, flush=True)
    save(report)


def scheduler_checks(report, model, tts, kw):
    """Dynamic batching on CUDA: requests of different lengths and seeds, arriving at different
    times, give their solo codes, with the batch's frames as CUDA-graph replays (LaneStep) and
    without (eager)."""
    import dataclasses
    import threading

    from qwen3tts_cli.engine.scheduler import Scheduler

    reqs = [(t, dict(language="english", greedy=True, max_frames=20 + 7 * i, **kw)) for i, t in enumerate(TEXTS)]
    reqs.append((TEXT, dict(language="english", seed=5, max_frames=30, **kw)))
    alone = [tts.synthesize(t, **o).codes for t, o in reqs]
    runtime = tts.runtime
    for graphs in (True, False):
        tts.runtime = dataclasses.replace(runtime, cuda_graphs=graphs)
        got = [None] * len(reqs)
        with Scheduler(tts, max_batch=3) as sched:
            warm_s = sched.warm_up(language="english", greedy=True, slots=512, **kw)
            warm_s += sched.warm_up(language="english", slots=512, **kw)  # the seeded request's settings

            def one(i):
                time.sleep(0.05 * i)
                got[i] = sched.submit(reqs[i][0], **reqs[i][1]).synthesis().codes

            threads = [threading.Thread(target=one, args=(i,)) for i in range(len(reqs))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(600)
            counts = sched.frame_counts
        greedy_ok = all(g is not None and torch.equal(a, g) for a, g in zip(alone[:-1], got[:-1]))
        check(report, f"{model} tiny scheduler ({'graphs' if graphs else 'eager'}): requests == their solo runs",
              greedy_ok and (counts["graphed_frames"] > 0) == graphs,
              seeded_equal=bool(got[-1] is not None and torch.equal(alone[-1], got[-1])),
              warm_up_s=warm_s, **counts)
    tts.runtime = runtime


def concurrency_timings(tts, kw, timings, frames, levels=(1, 4, 16)):
    """bench --concurrency on this model: aggregate x real time, frames/s, TTFA p50/p95, the share
    of batch frames graphed; then the highest level again with graphs off (the eager batch)."""
    import dataclasses

    from qwen3tts_cli.bench.speed import DEFAULT_TEXT, concurrency_level

    timings["concurrency"] = []
    for n in levels:
        timings["concurrency"].append(concurrency_level(tts, DEFAULT_TEXT, dict(language="english", **kw), frames, n))
    runtime = tts.runtime
    tts.runtime = dataclasses.replace(runtime, cuda_graphs=False)
    try:
        eager = concurrency_level(tts, DEFAULT_TEXT, dict(language="english", **kw), frames, levels[-1])
    finally:
        tts.runtime = runtime
    timings["concurrency_eager"] = eager


def feed_text(tts, pieces, delay):
    """A text feed filled from another thread, ``delay`` s between pieces (frames stall on it)."""
    import threading

    feed = tts.text_feed()

    def push():
        for p in pieces:
            feed.push(p)
            time.sleep(delay)
        feed.close()

    threading.Thread(target=push, daemon=True).start()
    return feed


def feed_checks(report, model, tts, kw):
    """A text feed arriving word by word: graph replays (and their eager halves on stalls) vs the
    eager step, and vs the whole text in the streaming layout."""
    from qwen3tts_cli.engine import pipeline

    words = [w + " " for w in TEXT.split(" ")]
    out = []
    for graphs in (True, False):
        plan = tts.resolve(tts.request(feed_text(tts, words, 0.01), greedy=True, max_frames=60,
                                       language="english", **kw))
        row = pipeline.feed_row(tts, plan, 0, 0)
        for _ in generate(tts.talker, tts.predictor, [row], plan.sampling, tts.cfg.talker.codec_eos_token_id,
                          cuda_graphs=graphs):
            pass
        out.append(row.codes())
    whole = tts.generate_codes(TEXT, non_streaming_mode=False, greedy=True, max_frames=60, language="english", **kw)
    check(report, f"{model} tiny text feed graphs == eager == whole text",
          torch.equal(out[0], out[1]) and torch.equal(out[0], whole.codes), frames=int(out[0].shape[0]))


def feed_first_audio_ms(tts, kw, trials=5):
    """First audio after the first word of a text feed (warm; median of ``trials``)."""
    import statistics

    times = []
    for i in range(trials + 1):
        feed = tts.text_feed()
        stream = tts.stream(feed, max_frames=12, seed=i, language="english", **kw)
        torch.cuda.synchronize()
        t = time.perf_counter()
        feed.push("Hello ")
        first = next(stream)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
        feed.push("there, this is the rest of the text.")
        feed.close()
        list(stream)
        if i and len(first):
            times.append(1000 * dt)
    return statistics.median(times) if times else None


def stream_timings(tts, kw, timings, trials=3, frames=24):
    """Time to first audio and x RT of ``TTS.stream`` (graphs, warm; median of ``trials``), and the
    streaming codec's cost per push of 1, 2, 4 and 8 frames, eager and as graph replays."""
    import statistics

    from qwen3tts_cli.codec.streaming import StreamingDecoder

    ttfa, xrt = [], []
    for i in range(trials + 1):
        torch.cuda.synchronize()
        t = time.perf_counter()
        first, samples = None, 0
        for chunk in tts.stream(TEXT, language="english", max_frames=frames, seed=i, **kw):
            if first is None and len(chunk):
                first = time.perf_counter() - t
            samples += len(chunk)
        wall = time.perf_counter() - t
        if i:  # the first run warms up
            ttfa.append(1000 * first)
            xrt.append(samples / tts.sample_rate / wall)
    timings["stream_ttfa_ms"] = statistics.median(ttfa)
    timings["stream_ttfa_ms_all"] = ttfa
    timings["stream_xrt"] = statistics.median(xrt)
    timings["feed_first_audio_after_first_word_ms"] = feed_first_audio_ms(tts, kw)
    codes = torch.randint(0, 2048, (8, 16))
    for graphs in (False, True):
        for n in (1, 2, 4, 8):
            dec = StreamingDecoder(tts.decoder, cuda_graphs=graphs)
            dec.push(codes[:n])  # warm-up (and capture)
            _, dt = timed(lambda: [dec.push(codes[:n]) for _ in range(10)])
            timings[f"codec_push{n}_ms_{'graphs' if graphs else 'eager'}"] = 100 * dt
            dec = None  # frees the decoder's shared states for the next one
    timings["codec_capture_s"] = tts.decoder._stream_states.capture_s


def codec_checks(report, model, tts):
    """Streaming codec: graph replays vs the eager calls on the same pieces (both fp32), and both
    against the offline decode (cuDNN may use TF32 there: reported, not checked)."""
    from qwen3tts_cli.codec.streaming import StreamingDecoder

    codes = torch.randint(0, 2048, (320, 16), generator=torch.Generator().manual_seed(0))
    sizes = [1, 2, 4, 8, 20, 3, 16, 17, 5]
    outs = {}
    for graphs in (False, True):
        dec = StreamingDecoder(tts.decoder, cuda_graphs=graphs)
        out, i, k = [], 0, 0
        while i < codes.shape[0]:
            out.append(dec.push(codes[i:i + sizes[k % len(sizes)]]))
            i, k = i + sizes[k % len(sizes)], k + 1
        outs[graphs] = torch.cat(out)
        dec = None
    offline = tts.decoder.decode(codes)
    diff = float((outs[True] - outs[False]).abs().max())
    check(report, f"{model} codec stream graphs == eager", diff <= 1e-6, max_abs_diff=diff,
          graphs=len(tts.decoder._stream_states.graphs),
          eager_vs_offline=float((outs[False] - offline).abs().max()))


def bulk_timings(report, model, root, frames):
    """`qwen3tts bulk` on this GPU with the full checkpoint full_checks built: in process, and on a
    local Ray cluster with one replica holding the GPU (when ray is installed): rows/s and audio
    hours per hour (scripts/bench_bulk.py)."""
    import importlib.util

    from bench_bulk import manifest, run

    folder = root / f"full-{model}"
    rows = manifest(root, 32)
    timings = dict(model=model, bulk_rows=32, bulk_max_frames=frames)
    report["timings"].append(timings)
    common = ["--greedy", "--device", "cuda", "--max-frames", str(frames), "-b", "16"]
    runs = {"in_process": []}
    if importlib.util.find_spec("ray") is not None:
        runs["ray_1_replica"] = ["--ray", "local", "--replicas", "1", "--gpus-per-replica", "1"]
    for name, flags in runs.items():
        r = run(str(folder), rows, root / f"bulk-{name}", common + flags)
        timings[f"bulk_{name}"] = r
        save(report)
    print(json.dumps(timings), file=sys.stderr, flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", default="0.6B-CustomVoice,1.7B-VoiceDesign")
    ap.add_argument("--full", default="0.6B-CustomVoice,1.7B-CustomVoice", help="'' to skip full-size models")
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--workdir", type=Path, help="where to build checkpoints (default: a temporary folder)")
    a = ap.parse_args(argv)
    if not torch.cuda.is_available():
        print("error: CUDA is not available", file=sys.stderr)
        return 2
    report = dict(device=torch.cuda.get_device_name(), torch=torch.__version__,
                  date=time.strftime("%Y-%m-%d"), checks=[], timings=[])
    import importlib.util

    report["flash_attn_installed"] = importlib.util.find_spec("flash_attn") is not None
    paths = [a.json, Path(os.environ["OUT"]) / "gpu_check.json" if os.environ.get("OUT") else None]
    report["_paths"] = [str(p) for p in paths if p is not None]
    with tempfile.TemporaryDirectory(dir=a.workdir) as tmp:
        root = Path(tmp)
        for model in filter(None, a.tiny.split(",")):
            guarded(report, f"{model} tiny checks", tiny_checks, report, model, root)
        for model in filter(None, a.full.split(",")):
            guarded(report, f"{model} full checks", full_checks, report, model, root, a.frames, a.batch)
        first = next(iter(filter(None, a.full.split(","))), None)
        if first is not None:
            guarded(report, f"{first} bulk", bulk_timings, report, first, root, min(a.frames, 100))
    save(report)
    print(json.dumps({k: v for k, v in report.items() if k != "_paths"}, indent=1))
    return 0 if all(c["ok"] for c in report["checks"]) else 1


if __name__ == "__main__":
    sys.exit(main())
