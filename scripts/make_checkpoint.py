#!/usr/bin/env python3
"""Write a random-weight Qwen3-TTS checkpoint in the exact official layout.

    python scripts/make_checkpoint.py --model 0.6B-CustomVoice --size tiny --seed 0 OUT_DIR

--size full reproduces the published configs, tensor names/shapes/dtypes and file sizes;
--size tiny keeps the structure, vocab sizes and special ids with small widths (for tests).
The same seed gives byte-identical files.
"""

import argparse
import sys
import time

from qwen3tts_cli.io.checkpoint import MODELS, SIZES, build_checkpoint


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--size", default="tiny", choices=SIZES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("out_dir")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    try:
        out = build_checkpoint(a.model, a.size, a.seed, a.out_dir)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.model} ({a.size}, seed {a.seed}) to {out} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
