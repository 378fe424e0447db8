#!/usr/bin/env python3
"""Regenerate the codec-decoder goldens: official-reference waveforms on random checkpoints.

    python scripts/goldens_codec.py [--refvenv PY] [--out DIR] [--sizes tiny full] [--keep DIR]

1. builds Qwen3-TTS-Tokenizer-12Hz checkpoints (tiny and full, seed 0) with
   qwen3tts_cli.checkpoint.build_checkpoint;
2. draws random codes (seeded) of 1, 7, 100 and 330 frames: 330 crosses the 300-frame chunk
   boundary of the official decode grid;
3. decodes them with scripts/reference_codec_driver.py under the reference's Python (--refvenv,
   else $QWEN3TTS_REFVENV, else /work/refvenv/bin/python), offline, float32, CPU;
4. writes tests/fixtures/goldens/codec/codes.npz (int16 [T, 16] per case), wav_<size>.npz
   (float32 waveforms) and meta.json (versions, checkpoint hashes, the command, timings).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # runnable as a plain script from a checkout
    sys.path.insert(0, str(ROOT))

DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "codec"
DRIVER = ROOT / "scripts" / "reference_codec_driver.py"
CHECKPOINT_SEED = 0
CODES_SEED = 20240412
FRAMES = (1, 7, 100, 330)
SIZES = ("tiny", "full")


def case_name(frames: int) -> str:
    return f"f{frames}"


def make_codes(seed: int = CODES_SEED) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {case_name(t): rng.integers(0, 2048, size=(t, 16)).astype(np.int16) for t in FRAMES}


def main(argv=None) -> int:
    from refenv import add_golden_options, reference_python  # scripts/ is on sys.path when run as a script

    ap = argparse.ArgumentParser(description="Regenerate the codec-decoder goldens with the official reference.")
    add_golden_options(ap, DEFAULT_OUT)
    ap.add_argument("--sizes", nargs="+", choices=SIZES, default=list(SIZES))
    args = ap.parse_args(argv)

    from qwen3tts_cli.io.checkpoint import build_checkpoint

    python = reference_python(args.refvenv)

    args.out.mkdir(parents=True, exist_ok=True)
    codes = make_codes()
    work_ctx = tempfile.TemporaryDirectory(prefix="codec-goldens-") if args.keep is None else None
    work = Path(work_ctx.name) if work_ctx else args.keep
    work.mkdir(parents=True, exist_ok=True)
    meta: dict = {
        "what": "official Qwen3TTSTokenizer.decode (float32, CPU) of random codes on random checkpoints",
        "command": " ".join(["python", "scripts/goldens_codec.py",
                             *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))]),
        "driver": "scripts/reference_codec_driver.py",
        "checkpoint": {"model": "Tokenizer-12Hz", "seed": CHECKPOINT_SEED},
        "codes_seed": CODES_SEED,
        "frames": list(FRAMES),
        "sizes": {},
    }
    try:
        codes_in = work / "codes.npz"
        np.savez(codes_in, **{k: v.astype(np.int64) for k, v in codes.items()})
        for size in args.sizes:
            ckpt = work / f"tokenizer-{size}"
            t0 = time.perf_counter()
            build_checkpoint("Tokenizer-12Hz", size, CHECKPOINT_SEED, ckpt)
            build_s = time.perf_counter() - t0
            manifest = json.loads((ckpt / ".qwen3tts-manifest.json").read_text())
            raw = work / f"wav_{size}.raw.npz"
            env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            cmd = [python, str(DRIVER), str(ckpt), str(codes_in), str(raw)]
            print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
            proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
            if proc.returncode != 0:
                print(proc.stderr[-4000:], file=sys.stderr)
                print(f"error: reference driver failed for {size} (exit {proc.returncode})", file=sys.stderr)
                return 1
            info = json.loads(proc.stdout.strip().splitlines()[-1])
            with np.load(raw) as z:
                wavs = {k: z[k].astype(np.float32) for k in z.files}
            for name, c in codes.items():
                if wavs[name].shape != (c.shape[0] * 1920,):
                    print(f"error: {size}/{name}: reference gave {wavs[name].shape} samples", file=sys.stderr)
                    return 1
            np.savez_compressed(args.out / f"wav_{size}.npz", **wavs)
            meta["sizes"][size] = {
                "build_s": round(build_s, 2),
                "model.safetensors sha256": manifest["files"]["model.safetensors"]["sha256"],
                "config.json sha256": manifest["files"]["config.json"]["sha256"],
                "reference": info,
                "rms": {k: float(np.sqrt(np.mean(v.astype(np.float64) ** 2))) for k, v in wavs.items()},
            }
            print(f"{size}: decoded {', '.join(codes)} in {info['decode_s']} s", file=sys.stderr)
        np.savez_compressed(args.out / "codes.npz", **codes)
        old = args.out / "meta.json"
        if set(args.sizes) != set(SIZES) and old.is_file():  # keep the other size's record
            prev = json.loads(old.read_text())
            meta["sizes"] = {**prev.get("sizes", {}), **meta["sizes"]}
        (args.out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
