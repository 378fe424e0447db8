#!/usr/bin/env python3
"""`qwen3tts bulk` throughput: rows/s and hours of audio per hour, in this process and on a local
Ray cluster with 1 and 2 replicas.

    python scripts/bench_bulk.py -m MODEL [--dtype w8a8] [--rows 16] [--max-frames 40] [--batch-size 2]
                                 [--runs local,ray1,ray2]

Each run is the real command on a fresh output folder (greedy, every row capped at --max-frames).
Two rates are reported: over the whole command (model loads and Ray start included), and steady
state, between the first and the last row written (from results.jsonl). Run on a quiet machine;
the figures go to docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORDS = ("the quick brown fox jumps over a lazy dog while seven bright stars shine above the quiet old harbour "
         "town").split()


def manifest(folder: Path, rows: int) -> Path:
    path = folder / "rows.jsonl"
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            words = [WORDS[(i * 7 + k) % len(WORDS)] for k in range(8 + i % 5)]
            f.write(json.dumps({"id": f"row-{i:04d}", "text": " ".join(words).capitalize() + "."}) + "\n")
    return path


def run(model: str, rows_file: Path, out: Path, flags: list[str]) -> dict:
    cmd = [sys.executable, "-m", "qwen3tts_cli.cli", "bulk", str(rows_file), "-m", model, "-d", str(out), "-q",
           *flags]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{p.stderr}")
    lines = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    for x in lines:
        x["t"] = dt.datetime.fromisoformat(x["time"].replace("Z", "+00:00")).timestamp()
    lines.sort(key=lambda x: x["t"])
    audio = sum(x["seconds"] for x in lines)
    # Steady state: from the first rows written (a Ray batch's rows arrive together) to the last;
    # the rows of that first arrival are the warm-up and are left out.
    first = [x for x in lines if x["t"] <= lines[0]["t"] + 0.05]
    span = lines[-1]["t"] - lines[0]["t"]
    n = len(lines)
    rest_audio = audio - sum(x["seconds"] for x in first)
    return {"rows": n, "audio_s": audio, "wall_s": wall, "rows_per_s": n / wall, "audio_h_per_h": audio / wall,
            "steady_rows_per_s": (n - len(first)) / span if span > 0 else float("nan"),
            "steady_audio_h_per_h": rest_audio / span if span > 0 else float("nan")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--rows", type=int, default=16)
    ap.add_argument("--max-frames", type=int, default=40)
    ap.add_argument("-b", "--batch-size", type=int, default=2)
    ap.add_argument("--runs", default="local,ray1,ray2")
    a = ap.parse_args()
    cores = os.cpu_count() or 1
    common = ["--greedy", "--device", "cpu", "--max-frames", str(a.max_frames), "-b", str(a.batch_size),
              *(["--dtype", a.dtype] if a.dtype else [])]
    runs = {"local": [], "ray1": ["--ray", "local", "--replicas", "1", "--cpus-per-replica", str(cores)],
            "ray2": ["--ray", "local", "--replicas", "2", "--cpus-per-replica", str(max(1, cores // 2))]}
    print(f"model {a.model}, dtype {a.dtype or 'float32'}, {a.rows} rows of {a.max_frames} frames at most, "
          f"batch size {a.batch_size}, {cores} cores")
    with tempfile.TemporaryDirectory() as tmp:
        rows_file = manifest(Path(tmp), a.rows)
        for name in a.runs.split(","):
            r = run(a.model, rows_file, Path(tmp) / name, common + runs[name])
            print(f"{name:6s} {r['rows']} rows, {r['audio_s']:.1f} s audio, wall {r['wall_s']:.1f} s: "
                  f"{r['rows_per_s']:.3f} rows/s, {r['audio_h_per_h']:.3f} audio h/h; steady "
                  f"{r['steady_rows_per_s']:.3f} rows/s, {r['steady_audio_h_per_h']:.3f} audio h/h")


if __name__ == "__main__":
    try:
        main()
    except RuntimeError as e:
        raise SystemExit(f"error: {e}") from None
