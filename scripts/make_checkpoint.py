#!/usr/bin/env python3
"""Write a random-weight Qwen3-TTS checkpoint in the exact official layout.

    python scripts/make_checkpoint.py --model 0.6B-CustomVoice --size tiny --seed 0 OUT_DIR

--size full reproduces the published configs, tensor names/shapes/dtypes and file sizes;
--size tiny keeps the structure, vocab sizes and special ids with small widths (for tests).
The same seed gives byte-identical files. --dtype F32|F16, --shards N and --finetune-speaker NAME
(a Base model in the official fine-tuning script's layout) write the forms users bring.
"""

import argparse
import sys
import tempfile
import time

from qwen3tts_cli.io.checkpoint import MODELS, SIZES, build_checkpoint, rewrite_checkpoint


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", required=True, choices=MODELS)
    ap.add_argument("--size", default="tiny", choices=SIZES)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dtype", choices=("F32", "F16", "BF16"), help="store the model weights in this dtype")
    ap.add_argument("--shards", type=int, default=1, help="split the model weights over N files with an index")
    ap.add_argument("--finetune-speaker", metavar="NAME",
                    help="Base models: the layout of the official fine-tuning script, with this speaker")
    ap.add_argument("out_dir")
    a = ap.parse_args(argv)
    t = time.perf_counter()
    try:
        if a.dtype is None and a.shards == 1 and a.finetune_speaker is None:
            out = build_checkpoint(a.model, a.size, a.seed, a.out_dir)
        else:
            with tempfile.TemporaryDirectory() as tmp:
                base = build_checkpoint(a.model, a.size, a.seed, tmp)
                out = rewrite_checkpoint(base, a.out_dir, dtype=a.dtype, shards=a.shards,
                                         finetune_speaker=a.finetune_speaker, seed=a.seed)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {a.model} ({a.size}, seed {a.seed}) to {out} in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
