#!/usr/bin/env python3
"""The speech server under load: time to first audio byte and aggregate x real time per concurrency.

    python scripts/bench_server.py -m MODEL [--dtype w8a8] [--levels 1,4,8] [--frames 25] [--requests 2]

Starts `qwen3tts serve`'s app in this process (uvicorn on loopback, --max-batch = the largest
level), then for each level N runs N client threads, each streaming `--requests` pcm responses
(up to `max_frames` frames each, sampled; the audio counted is what arrives) over HTTP. It reports the time from sending a request to its
first audio byte (p50, p95) and the audio seconds received per wall second over all clients.
"""

from __future__ import annotations

import argparse
import socket
import threading
import time


def main(argv=None) -> int:
    import httpx
    import uvicorn

    from qwen3tts_cli.bench.speed import percentile
    from qwen3tts_cli.engine import load_tts
    from qwen3tts_cli.engine.scheduler import Scheduler
    from qwen3tts_cli.server.app import ServerSettings, create_app

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--levels", default="1,4,8")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--requests", type=int, default=2, help="requests per client")
    a = ap.parse_args(argv)
    levels = [int(x) for x in a.levels.split(",")]
    tts = load_tts(a.model, device=a.device, dtype=a.dtype)
    tts.decoder  # noqa: B018
    sched = Scheduler(tts, max_batch=max(levels), max_queue=max(levels))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(create_app(tts, sched, ServerSettings("m")), host="127.0.0.1", port=port,
                                           log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.05)
    url = f"http://127.0.0.1:{port}/v1/audio/speech"
    voice = {"voice": tts.default_speaker} if tts.model_type == "custom_voice" else {
        "instructions": "A calm, clear voice."}
    body = {"model": "m", "input": "Hello, this is a small test of the text to speech server, spoken at an even pace.",
            "response_format": "pcm", "max_frames": a.frames, "language": "english", **voice}

    def one(ttfa, audio):
        t = time.perf_counter()
        first, n = None, 0
        with httpx.stream("POST", url, json={**body, "seed": len(ttfa)}, timeout=600) as r:
            for piece in r.iter_bytes():
                if piece and first is None:
                    first = time.perf_counter() - t
                n += len(piece)
        ttfa.append(first)
        audio.append(n / 2 / 24000)

    one([], [])  # warm
    for n in levels:
        ttfa, audio = [], []

        def client():
            for _ in range(a.requests):
                one(ttfa, audio)

        threads = [threading.Thread(target=client) for _ in range(n)]
        t0 = time.perf_counter()
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        wall = time.perf_counter() - t0
        ms = sorted(1000 * x for x in ttfa)
        print(f"concurrency {n}: {sum(audio) / wall:.2f}x real time in aggregate, TTFA p50 "
              f"{percentile(ms, 50):.0f} ms, p95 {percentile(ms, 95):.0f} ms ({len(ms)} requests of {a.frames} frames)", flush=True)
    server.should_exit = True
    sched.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
