#!/usr/bin/env python3
"""Accuracy cost of the reduced-precision CPU modes: greedy codes and talker logits vs fp32.

    python scripts/precision_accuracy.py CKPT [--frames 50] [--dtypes bfloat16,int8]

CKPT: a model folder, e.g. the random real-shape one from
``python scripts/make_checkpoint.py --model 0.6B-CustomVoice --size full OUT``. Prints one JSON
object per dtype (see qwen3tts_cli.bench.accuracy.precision_error for the fields).
"""

import argparse
import json
import sys

from qwen3tts_cli.bench.accuracy import precision_error
from qwen3tts_cli.engine import load_tts, parse_precision


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--frames", type=int, default=50)
    ap.add_argument("--dtypes", default="bfloat16,int8")
    a = ap.parse_args(argv)
    reference = load_tts(a.checkpoint, "cpu", "float32")
    for name in a.dtypes.split(","):
        dtype, quantize = parse_precision(name.strip())
        candidate = load_tts(a.checkpoint, "cpu", dtype, quantize)
        print(json.dumps({"dtype": name.strip(), **precision_error(reference, candidate, frames=a.frames)}), flush=True)
        del candidate
    return 0


if __name__ == "__main__":
    sys.exit(main())
