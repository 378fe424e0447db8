"""Speed and memory of one model on one device, in figures that compare across runs and machines.

    result = run_bench("0.6B-CustomVoice", random_weights=True, device="cpu", frames=25)

A run: load (timed), warm-up frames, then ``frames`` frames of greedy generation with EOS
suppressed (so every run does the same work), timed per part with forward hooks on the talker and
the code predictor; then the codec decodes those frames (as ``synth`` decodes); then the time to
first audio of ``TTS.stream`` (one-frame first chunk). Everything goes through the engine's public
interface (``TTS``) and PyTorch's module hooks. ``floor_fraction`` compares the
per-frame time with the memory-bandwidth floor: the weight bytes a frame reads (one talker step,
15 code-predictor passes) over a copy bandwidth measured here (STREAM convention: bytes read plus
bytes written per second).

``random_weights`` builds the model at its real shapes from its config alone (a folder's
config.json, or the packaged metadata of an official repo id / short name): the same tensors as
``make_checkpoint.py --size full`` with the same seed, nothing written to disk.
"""

from __future__ import annotations

import json
import math
import os
import platform
import resource
import time
from pathlib import Path

import torch

from ..errors import InputError

DEFAULT_TEXT = "Hello, this is a small test of the text to speech model, spoken at an even pace."
FRAME_SECONDS = 0.08


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} CPUs, {torch.get_num_threads()} threads)"


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def copy_bandwidth(device: torch.device, mib: int = 256, repeats: int = 5) -> float:
    """Best-of-``repeats`` device copy bandwidth in bytes/s (read + write, as STREAM's copy)."""
    n = mib * (1 << 20) // 4
    a = torch.ones(n, device=device)
    b = torch.zeros(n, device=device)
    b.copy_(a)
    # On a GPU one copy takes a fraction of a millisecond: time a run of them between CUDA events,
    # so that launch and synchronisation costs do not count.
    per_timing = 20 if device.type == "cuda" else 1
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_timing):
                b.copy_(a)
            end.record()
            end.synchronize()
            seconds = start.elapsed_time(end) / 1000
        else:
            t = time.perf_counter()
            b.copy_(a)
            seconds = time.perf_counter() - t
        best = min(best, seconds / per_timing)
    del a, b
    return 2 * n * 4 / best


def weight_bytes_per_frame(tts) -> int:
    """Weight bytes one frame reads: a talker step (layers, final norm, codec head) and 15 code
    predictor passes (its layers, norm and input projection each time, each group's head once)."""
    from ..model.linear import weight_bytes

    t, cp = tts.talker, tts.predictor
    talker = weight_bytes(t.model.layers) + weight_bytes(t.model.norm) + weight_bytes(t.codec_head)
    per_pass = weight_bytes(cp.model.layers) + weight_bytes(cp.model.norm) + weight_bytes(cp.small_to_mtp_projection)
    return talker + (cp.n_groups - 1) * per_pass + weight_bytes(cp.lm_head)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def load_random(model: str, device: torch.device, dtype: torch.dtype | None, quantize: str | None,
                seed: int = 0):
    """A TTS with random weights at the model's real shapes, built in memory."""
    from ..codec import CodecDecoder
    from ..engine.load import build_tts, default_dtype, model_files
    from ..io.checkpoint import random_tensor
    from ..io.config import CodecConfig
    from ..io.weights import expected_codec_tensors, expected_model_tensors
    from ..runtime import RuntimeSettings

    files = model_files(model)
    if files is None:
        raise InputError(f"--random-weights needs a model folder or an official model repo id / short name "
                         f"(e.g. 0.6B-CustomVoice), got {model!r}")
    if not files.config.is_file():
        raise InputError(f"{files.config}: not found")
    cfg = files.model_config()
    dt = dtype or default_dtype(device, quantize)
    runtime = RuntimeSettings.from_env()
    codec_cfg = CodecConfig.from_file(files.codec_config)
    codec = {n: random_tensor(n, s, seed).to(device=device, dtype=torch.float32)
             for n, s in expected_codec_tensors(codec_cfg).items() if n.startswith("decoder.")}
    decoder = CodecDecoder.from_tensors(codec_cfg, codec, where=str(files.codec_config), runtime=runtime)
    del codec
    # Published dtypes (BF16 talker, F32 codec) first, as in a checkpoint file, then the run dtype.
    tensors = {n: random_tensor(n, s, seed).to(device=device, dtype=dt)
               for n, s in expected_model_tensors(cfg).items() if n.startswith("talker.")}
    return build_tts(files.config.parent, cfg, files.generation(), tensors, files.tokenizer, device, dt, quantize,
                     runtime, decoder=decoder)


def request_options(tts) -> dict:
    """Who speaks in a benchmark: the default speaker, or a described voice."""
    kind = tts.model_type
    if kind == "custom_voice":
        return dict(speaker=tts.default_speaker, language="english")
    if kind == "voice_design":
        return dict(instruct="A calm, clear voice at an even pace.", language="english")
    raise InputError("bench needs a CustomVoice or VoiceDesign model (a Base model speaks only with a "
                     "reference voice)")


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------

# EOS never allowed: every run makes exactly the frames asked for.
NO_EOS = 1 << 30


class _PartTimer:
    """Wall time of talker steps (forward + codec head) and of the code predictor, from forward
    hooks: a frame's predictor work runs from the codec embedding of its first code (the one call
    of that module per frame) to the talker step that follows. Three hooked modules per frame, so
    that on CPU the hooks' own cost stays far below a frame's.

    On CUDA each part is synchronized (only in the split run). When CUDA graphs replay a frame,
    no hook fires: the split is then unknown (None)."""

    def __init__(self, tts, device: torch.device):
        self.reset()
        self._t = self._cp_start = None

        def talker_pre(module, args):
            _sync(device)
            now = time.perf_counter()
            if module is tts.talker and self._cp_start is not None:
                self.cp += now - self._cp_start
                self.cp_calls += 1
                self._cp_start = None
            self._t = now

        def talker_post(module, args, out):
            _sync(device)
            self.talker += time.perf_counter() - self._t
            self.talker_steps += module is tts.talker

        def predictor_start(module, args):
            _sync(device)
            self._cp_start = time.perf_counter()

        self._handles = [tts.talker.model.codec_embedding.register_forward_pre_hook(predictor_start)]
        for m in (tts.talker, tts.talker.codec_head):
            self._handles += [m.register_forward_pre_hook(talker_pre), m.register_forward_hook(talker_post)]

    def reset(self) -> None:
        self.talker = self.cp = 0.0
        self.talker_steps = self.cp_calls = 0
        self._cp_start = None

    def close(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


def _run_frames(tts, text: str, kw: dict, n: int, on_start=None) -> tuple[float, float, torch.Tensor]:
    """(seconds for the prompt, prefill and frame 0, seconds for frames 1..n-1, all codes [n, 16] on
    the CPU). The steady-state clock starts after frame 0."""
    _sync(tts.device)
    t = time.perf_counter()
    it = tts.iter_frames(text, greedy=True, seed=0, max_frames=n, min_new_tokens=NO_EOS, **kw)
    frames = [next(it)]
    _sync(tts.device)
    first_s = time.perf_counter() - t
    if on_start is not None:
        on_start()
    t = time.perf_counter()
    for f in it:
        frames.append(f)
    _sync(tts.device)
    return first_s, time.perf_counter() - t, torch.stack(frames).cpu()


def _ttfa(tts, text: str, kw: dict) -> float:
    """Seconds from the ``stream`` call to its first audio chunk (first chunk of one frame)."""
    t = time.perf_counter()
    stream = tts.stream(text, schedule=(1,), greedy=True, max_frames=2, guard=False, **kw)
    try:
        next(stream)
        return time.perf_counter() - t
    finally:
        stream.close()


def run_bench(model: str, random_weights: bool = False, device: str = "cpu", dtype: str | None = None,
              frames: int = 25, batch: int = 1, warmup: int = 3, threads: int | None = None, seed: int = 0,
              text: str = DEFAULT_TEXT, concurrency: list[int] | None = None) -> dict:
    """Benchmark one model; returns a JSON-ready dict (see the module docstring and docs/benchmarks.md)."""
    from ..engine.load import load_tts, parse_device, parse_precision, resolve_model_folder

    if frames < 3:
        raise InputError("--frames must be at least 3")
    if batch < 1:
        raise InputError("--batch must be at least 1")
    dev = parse_device(device)
    torch_dtype, quantize = parse_precision(dtype)
    if quantize and dev.type != "cpu":
        raise InputError(f"--dtype {quantize} is a CPU mode; on CUDA use bfloat16 or float32")
    if threads is not None:
        if threads < 1:
            raise InputError("--threads must be at least 1")
        torch.set_num_threads(threads)
    if dev.type == "cuda":
        torch.cuda.init()  # reset_peak_memory_stats refuses an indexed device before initialisation
        torch.cuda.reset_peak_memory_stats(dev)

    t0 = time.perf_counter()
    if random_weights:
        tts = load_random(model, dev, torch_dtype, quantize, seed)
    else:
        folder = resolve_model_folder(model, download_missing=False)
        tts = load_tts(folder, dev, torch_dtype, quantize)
        tts.decoder  # noqa: B018 - loaded here so that load_s covers the codec too
    _sync(dev)
    load_s = time.perf_counter() - t0

    kw = request_options(tts)
    prompt = tts.prompt(text, **kw)
    if dev.type == "cuda":
        warmup = max(warmup, frames)  # see the warm-up below
    out: dict = {
        "model": model, "random_weights": random_weights, "model_type": tts.model_type,
        "device": dev.type, "device_name": device_name(dev), "dtype": str(tts.dtype).replace("torch.", ""),
        "quantize": tts.quantize, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "frames": frames, "batch": batch, "warmup_frames": warmup, "prompt_rows": int(prompt.embeds.shape[0]),
        "load_s": load_s,
    }

    # Warm-up: first calls allocate caches, pick kernels and (CUDA) capture graphs. On CUDA it runs
    # the measured frame count: the cache is sized for it and every bucket's graph is captured
    # (a shorter warm-up would leave re-allocation and captures inside the timed run).
    t = time.perf_counter()
    _run_frames(tts, text, kw, max(2, warmup))
    _sync(dev)
    out["warmup_s"] = time.perf_counter() - t

    if batch > 1:
        out.update(_bench_batch(tts, text, kw, frames, batch))
    else:
        timer = _PartTimer(tts, dev)
        try:
            if dev.type == "cuda":  # the synchronizing split run must not slow the clean one
                timer.close()
                first_s, lm_s, codes = _run_frames(tts, text, kw, frames)
                timer = _PartTimer(tts, dev)
                _, split_s, _ = _run_frames(tts, text, kw, frames, on_start=timer.reset)
            else:  # hooks cost microseconds here: one run gives both
                first_s, lm_s, codes = _run_frames(tts, text, kw, frames, on_start=timer.reset)
                split_s = lm_s
        finally:
            timer.close()
        # In the window: frames 1..n-1, i.e. n-1 code-predictor calls and n-2 talker steps.
        n_steady = frames - 1
        frame_ms = 1000 * lm_s / n_steady
        talker_ms = 1000 * timer.talker / timer.talker_steps if timer.talker_steps else None
        cp_ms = 1000 * timer.cp / timer.cp_calls if timer.cp_calls else None
        host_ms = None
        if talker_ms is not None and cp_ms is not None:
            # The last frame's predictor work is not in cp (no talker step closes it): add its average.
            host_ms = max(0.0, (1000 * (split_s - timer.talker - timer.cp) - cp_ms) / n_steady)
        if dev.type == "cuda":  # the first streaming calls capture the codec's graphs
            tts.decode_for(codes)
            _sync(dev)
        t = time.perf_counter()
        tts.decode_for(codes)  # as synth decodes: the streaming decoder on the stream's schedule
        codec_ms = 1000 * (time.perf_counter() - t) / frames
        total_ms = frame_ms + codec_ms
        codec_s = codec_ms * frames / 1000
        out.update({
            # One whole utterance as `synth` makes it: prefill, all frames, decode.
            "generate_s": first_s + lm_s, "e2e_s": first_s + lm_s + codec_s,
            "e2e_frames_per_s": frames / (first_s + lm_s), "e2e_xrt": frames * FRAME_SECONDS / (first_s + lm_s + codec_s),
            "frames_per_s": 1000 / frame_ms,
            "xrt": 1000 * FRAME_SECONDS / total_ms,
            "ms_per_frame": {"talker": talker_ms, "code_predictor": cp_ms, "codec": codec_ms, "host": host_ms,
                             "talker_and_code_predictor": frame_ms, "total": total_ms},
        })
        if dev.type == "cuda":
            _ttfa(tts, text, kw)  # warm: graphs for the prompt's cache bucket and the 1-frame push
        out["ttfa_ms"] = 1000 * _ttfa(tts, text, kw)
        out["ttfa_method"] = "stream, first chunk of 1 frame"

    # CUDA graphs are captured on first use: per KV bucket for the frame step, per state and push
    # length for the streaming codec.
    out["capture_s"] = tts.graph_capture_seconds() if dev.type == "cuda" else 0.0
    bw = copy_bandwidth(dev)
    wb = weight_bytes_per_frame(tts)
    out["weight_bytes_per_frame"] = wb
    out["copy_gb_s"] = bw / 1e9
    out["floor_ms_per_frame"] = 1000 * wb / bw
    per_frame = out["ms_per_frame"]["talker_and_code_predictor"]  # one step of all `batch` streams
    out["floor_fraction"] = out["floor_ms_per_frame"] / per_frame if per_frame else None
    if concurrency:
        out["concurrency"] = [concurrency_level(tts, text, kw, frames, n) for n in concurrency]
    out["peak_rss_mb"] = peak_rss_mb()
    out["peak_cuda_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else 0.0
    return out


def concurrency_level(tts, text: str, kw: dict, frames: int, n: int, stagger_s: float = 0.1) -> dict:
    """``n`` requests on one scheduler (max_batch n), arriving ``stagger_s`` apart, each streamed to
    the end by its own thread: aggregate x real time (audio seconds per wall second, codec included),
    aggregate frames per second, and the time from each submit to its first audio (p50, p95)."""
    import threading

    from ..engine.scheduler import Scheduler

    opts = dict(seed=0, max_frames=frames, min_new_tokens=NO_EOS, guard=False, **kw)
    ttfa, audio, made, errors = [], [], [], []

    def one(i: int, sched) -> None:
        time.sleep(i * stagger_s)
        t = time.perf_counter()
        first = None
        samples = 0
        try:
            h = sched.submit(text, **dict(opts, seed=i))
            for chunk in h:
                if first is None:
                    first = time.perf_counter() - t
                samples += len(chunk)
            made.append(h.result.frames)
            audio.append(samples / tts.sample_rate)
            ttfa.append(first)
        except Exception as e:  # noqa: BLE001 (reported with the level)
            errors.append(f"{type(e).__name__}: {e}")

    with Scheduler(tts, max_batch=n, max_queue=n) as sched:
        # CUDA: every lane and KV bucket's graph the run uses (a prompt of up to 512 rows), outside the timing.
        sched.warm_up(text, slots=frames + 512, **opts)
        one(0, sched)  # warm: this batch size's caches
        ttfa.clear(), audio.clear(), made.clear()
        threads = [threading.Thread(target=one, args=(i, sched)) for i in range(n)]
        before = sched.frame_counts
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        counts = {k: v - before[k] for k, v in sched.frame_counts.items()}
    if errors:
        raise RuntimeError(f"concurrency {n}: {errors[0]}")
    ms = sorted(1000 * t for t in ttfa)
    return {"concurrency": n, "requests": n, "frames_each": frames, "stagger_s": stagger_s, "wall_s": wall,
            "aggregate_xrt": sum(audio) / wall, "aggregate_frames_per_s": sum(made) / wall,
            "ttfa_ms_p50": percentile(ms, 50), "ttfa_ms_p95": percentile(ms, 95),
            "graphed_share": counts["graphed_frames"] / max(1, counts["frames"])}  # frames run as one CUDA-graph replay


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile of an ascending list."""
    k = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[k]


def _bench_batch(tts, text: str, kw: dict, frames: int, batch: int) -> dict:
    """``batch`` copies of the prompt generated together (TTS.generate_codes_batch)."""
    texts = [text] * batch
    opts = dict(greedy=True, seed=0, min_new_tokens=NO_EOS, **kw)
    # Warm this batch size (on CUDA with the measured frame count: cache size and every graph).
    tts.generate_codes_batch(texts, max_frames=frames if tts.device.type == "cuda" else 2, **opts)
    _sync(tts.device)
    t = time.perf_counter()
    results = tts.generate_codes_batch(texts, max_frames=frames, **opts)
    _sync(tts.device)
    lm_s = time.perf_counter() - t
    made = sum(r.frames for r in results)
    t = time.perf_counter()
    tts.decode_for(results[0].codes)
    codec_ms = 1000 * (time.perf_counter() - t) / max(1, results[0].frames)
    frame_ms = 1000 * lm_s / max(1, made)  # per frame of one stream, amortized over the batch
    return {
        "frames_per_s": made / lm_s,  # aggregate over the batch (prefill included)
        "xrt": 1000 * FRAME_SECONDS / (frame_ms + codec_ms),
        "ms_per_frame": {"talker": None, "code_predictor": None, "codec": codec_ms, "host": None,
                         "talker_and_code_predictor": frame_ms * batch, "total": frame_ms + codec_ms},
        "ttfa_ms": None, "ttfa_method": None,
    }


def to_json(result: dict) -> str:
    return json.dumps(result, sort_keys=False)


def summary_lines(r: dict) -> list[str]:
    """A human-readable report of ``run_bench``'s result."""
    m = r["ms_per_frame"]

    def ms(v):
        return "n/a" if v is None else f"{v:.1f} ms"

    prec = r["dtype"] + (f" + {r['quantize']} weights" if r.get("quantize") else "")
    lines = [
        f"{r['model']}{' (random weights)' if r['random_weights'] else ''} on {r['device_name']}, {prec}, "
        f"batch {r['batch']}, {r['frames']} frames",
        f"per frame: talker {ms(m['talker'])}, code predictor {ms(m['code_predictor'])}, host {ms(m['host'])}, "
        f"codec {ms(m['codec'])}",
        f"speed: {r['frames_per_s']:.2f} frames/s (talker + code predictor), {r['xrt']:.2f}x real time end to end",
        f"time to first audio: {ms(r['ttfa_ms'])}" + (f" ({r['ttfa_method']})" if r.get("ttfa_method") else ""),
        f"load {r['load_s']:.1f} s, capture {r['capture_s']:.1f} s, peak RSS {r['peak_rss_mb']:.0f} MB, "
        f"peak CUDA {r['peak_cuda_mb']:.0f} MB",
        f"bandwidth floor: {r['weight_bytes_per_frame'] / 1e9:.2f} GB/frame at {r['copy_gb_s']:.1f} GB/s copy = "
        f"{r['floor_ms_per_frame']:.1f} ms/frame; reached {100 * (r['floor_fraction'] or 0):.0f}%",
    ]
    for c in r.get("concurrency", []):
        lines.append(f"concurrency {c['concurrency']}: {c['aggregate_xrt']:.2f}x real time in aggregate, "
                     f"{c['aggregate_frames_per_s']:.1f} frames/s, time to first audio p50 {c['ttfa_ms_p50']:.0f} ms, "
                     f"p95 {c['ttfa_ms_p95']:.0f} ms ({c['requests']} requests of {c['frames_each']} frames, "
                     f"{c['stagger_s']:g} s apart)"
                     + (f"; {100 * c['graphed_share']:.0f}% of batch frames graphed" if c.get("graphed_share") else ""))
    return lines
