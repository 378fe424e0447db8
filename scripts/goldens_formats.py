#!/usr/bin/env python3
"""Regenerate the checkpoint-format goldens: the official reference on checkpoints as users bring them.

    python scripts/goldens_formats.py [--refvenv PY] [--out DIR] [--only NAME ...] [--keep DIR]

1. builds tiny checkpoints (seed 0) and rewrites them with qwen3tts_cli.io.checkpoint.rewrite_checkpoint:
   the 0.6B CustomVoice weights in float32, and in float16 split over two shards with an index;
   the 0.6B Base model in the official fine-tuning script's layout (one speaker "my_voice" at
   codec id 3000, speaker encoder dropped), as one file and as three shards;
2. runs scripts/reference_driver.py (qwen-tts 0.1.1, offline, greedy, float32) on each;
3. writes tests/fixtures/goldens/formats/<case>.json and <case>.npz: the codes and the first
   talker logits.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "formats"
DRIVER = ROOT / "scripts" / "reference_driver.py"
SEED = 0
MAX_NEW_TOKENS = 25  # 24 frames unless EOS
TALKER_LOGIT_STEPS = 4

# name -> (official model, rewrite_checkpoint options, speaker, text, language)
CASES = {
    "cv06_f32": ("0.6B-CustomVoice", dict(dtype="F32"), "ryan", "Hello world, this is a simple test.", "english"),
    "cv06_f16_sharded": ("0.6B-CustomVoice", dict(dtype="F16", shards=2), "vivian",
                         "The quick brown fox jumps over the lazy dog.", "auto"),
    "ft06_my_voice": ("0.6B-Base", dict(finetune_speaker="my_voice"), "my_voice",
                      "Good morning, this is my own voice.", "english"),
    "ft06_my_voice_sharded": ("0.6B-Base", dict(finetune_speaker="my_voice", shards=3), "my_voice",
                              "今天天气很好，我们去公园散步吧。", "chinese"),
}


def main(argv=None) -> int:
    from refenv import add_golden_options, reference_python, select_cases  # scripts/ is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_golden_options(ap, DEFAULT_OUT, cases=True)
    args = ap.parse_args(argv)

    from qwen3tts_cli.io.checkpoint import build_checkpoint, rewrite_checkpoint

    py = reference_python(args.refvenv)
    names = select_cases(list(CASES), args.only, name=lambda n: n)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qwen3tts-goldens-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        driver_cases = []
        for name in names:
            model, options, speaker, text, language = CASES[name]
            base = work / f"tiny-{model}-{SEED}"
            if not base.exists():
                build_checkpoint(model, "tiny", SEED, base)
            folder = rewrite_checkpoint(base, work / name, seed=SEED, **options)
            driver_cases.append(dict(name=name, checkpoint=str(folder), method="custom_voice", text=text,
                                     speaker=speaker, language=language, instruct=None, non_streaming_mode=None,
                                     max_new_tokens=MAX_NEW_TOKENS))
        spec = work / "cases.json"
        spec.write_text(json.dumps(driver_cases, ensure_ascii=False, indent=1), encoding="utf-8")
        raw = work / "raw"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
        subprocess.run([py, str(DRIVER), str(spec), str(raw)], check=True, env=env)
        for name in names:
            model, options, speaker, text, language = CASES[name]
            rec = json.loads((raw / f"{name}.json").read_text(encoding="utf-8"))
            arrays = np.load(raw / f"{name}.npz")
            steps = min(TALKER_LOGIT_STEPS, rec["talker_steps"])
            golden = {
                "case": name, "model": model, "seed": SEED, "rewrite": options,
                "request": dict(text=text, speaker=speaker, language=language),
                "frames": rec["frames"], "eos": rec["eos"], "talker_logit_steps": steps,
                "target_ids": rec["target_ids"], "dtype": rec["dtype"], "versions": rec["versions"],
                "generated_by": "python scripts/goldens_formats.py",
            }
            np.savez_compressed(out / f"{name}.npz", codes=arrays["codes"].astype(np.int64),
                                talker_logits=arrays["talker_logits"][:steps].astype(np.float32))
            (out / f"{name}.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            print(f"{name}: {rec['frames']} frames (eos={rec['eos']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
