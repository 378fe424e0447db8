#!/usr/bin/env python3
"""Official reference vs this engine on the same random real-shape checkpoint, same frame count.

    python scripts/bench_vs_reference.py [--model 0.6B-CustomVoice] [--frames 25] [--dtypes float32,int8]

Builds the checkpoint if it is missing (``make_checkpoint.py --size full --seed 0`` layout, about
2.5 GB for 0.6B), then runs, one after the other so that they do not compete for the CPU:
the reference (scripts/reference_bench_driver.py in its own venv, fp32, greedy, EOS unreachable)
and ``qwen3tts bench --json`` once per dtype. Each side times one whole utterance after a
warm-up: prefill + all frames (frames/s) and the same plus the codec decode (end-to-end x real
time; the reference's offline decode, and ours as synth does it: the streaming decoder on the stream
schedule). Prints both and our/reference ratios; ``--json FILE`` also saves everything.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from refenv import reference_python  # noqa: E402


def last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON object in the output")


def run(cmd: list[str], env: dict | None = None) -> dict:
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-3000:])
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(cmd)}")
    return last_json(proc.stdout)


def ensure_checkpoint(model: str, folder: Path) -> Path:
    from qwen3tts_cli.io.checkpoint import build_checkpoint
    from qwen3tts_cli.io.manifest import MANIFEST_NAME

    if (folder / MANIFEST_NAME).is_file():
        return folder
    print(f"building the random real-shape checkpoint {folder} (once) ...", file=sys.stderr)
    t = time.perf_counter()
    build_checkpoint(model, "full", 0, folder)
    print(f"  done in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return folder


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="0.6B-CustomVoice", help="official short name (CustomVoice/VoiceDesign)")
    ap.add_argument("--checkpoint", type=Path, default=None,
                    help="checkpoint folder (default: $TMPDIR/qwen3tts-bench/<model>-full-seed0, built if missing)")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--dtypes", default="float32,int8", help="our precisions, comma-separated")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads for both (default: torch's choice)")
    ap.add_argument("--refvenv", default=None, help="the reference venv or its python (default /work/refvenv)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--json", type=Path, default=None, help="also write all results to this file")
    a = ap.parse_args(argv)

    folder = a.checkpoint or Path(tempfile.gettempdir()) / "qwen3tts-bench" / f"{a.model}-full-seed0"
    ensure_checkpoint(a.model, folder)
    threads = ["--threads", str(a.threads)] if a.threads else []
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")

    results: dict = {"checkpoint": str(folder), "frames": a.frames, "ours": {}}
    if not a.skip_reference:
        print("reference (qwen-tts 0.1.1, float32) ...", file=sys.stderr)
        results["reference"] = run([reference_python(a.refvenv), str(HERE / "reference_bench_driver.py"),
                                    str(folder), "--frames", str(a.frames), *threads], env)
    for dtype in [d.strip() for d in a.dtypes.split(",") if d.strip()]:
        print(f"ours ({dtype}) ...", file=sys.stderr)
        results["ours"][dtype] = run([sys.executable, "-m", "qwen3tts_cli.cli", "bench", "-m", str(folder),
                                      "--dtype", dtype, "--frames", str(a.frames), "--json", *threads], env)

    ref = results.get("reference")
    rows = [("reference fp32", ref)] if ref else []
    rows += [(f"ours {d}", r) for d, r in results["ours"].items()]
    print(f"\n{a.model}, {a.frames} frames, {folder}")
    print(f"{'':16} {'frames/s':>9} {'codec ms/fr':>11} {'e2e s':>7} {'x RT':>6} {'fps ratio':>9} {'xRT ratio':>9}")
    for name, r in rows:
        fps, xrt = r["e2e_frames_per_s"], r["e2e_xrt"]
        codec = r.get("codec_ms_per_frame", (r.get("ms_per_frame") or {}).get("codec"))
        ratio = (f"{fps / ref['e2e_frames_per_s']:9.2f} {xrt / ref['e2e_xrt']:9.2f}" if ref else "")
        print(f"{name:16} {fps:9.2f} {codec:11.1f} {r['e2e_s']:7.2f} {xrt:6.3f} {ratio}")
    if a.json:
        a.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
