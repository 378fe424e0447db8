#!/usr/bin/env python3
"""Regenerate the sample-rate goldens: the official reference on recordings at 8 to 96 kHz, mono and stereo.

    python scripts/goldens_rates.py [--refvenv PY] [--out DIR] [--keep DIR]

1. builds the tiny 0.6B-Base checkpoint (seed 0) and writes the test recordings of
   tests/audio_clips.py (16-bit WAV at 8, 16, 22.05, 44.1, 48 and 96 kHz, mono and stereo);
2. runs scripts/reference_rates_driver.py under the reference's Python: each file through the
   speech tokenizer (`encode`) and the voice-clone front end (reference codes, speaker embedding),
   and greedy ICL `generate_voice_clone` from three of them;
3. writes tests/fixtures/goldens/rates/{reference.npz, meta.json}.
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
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "rates"
DRIVER = ROOT / "scripts" / "reference_rates_driver.py"
MODEL, SEED = "0.6B-Base", 0
REF_TEXT = "This is a short sample of my own voice."
CLONE = [dict(name="icl_44100_stereo", clip="44100_stereo", text="Nice to meet you.", language="english",
              max_new_tokens=7),
         dict(name="icl_16000_mono", clip="16000_mono", text="See you tomorrow at noon.", language="auto",
              max_new_tokens=7),
         dict(name="icl_48000_mono", clip="48000_mono", text="The weather is lovely.", language="english",
              max_new_tokens=7)]


def main(argv=None) -> int:
    from refenv import add_golden_options, reference_python  # scripts/ is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_golden_options(ap, DEFAULT_OUT)
    args = ap.parse_args(argv)
    sys.path.insert(0, str(ROOT / "tests"))
    from audio_clips import write_clips

    from qwen3tts_cli.io.checkpoint import build_checkpoint

    py = reference_python(args.refvenv)
    with tempfile.TemporaryDirectory(prefix="qwen3tts-goldens-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpt = work / f"tiny-{MODEL}-{SEED}"
        if not ckpt.exists():
            build_checkpoint(MODEL, "tiny", SEED, ckpt)
        clips = write_clips(work / "clips")
        spec = work / "cases.json"
        spec.write_text(json.dumps({"clips": {k: str(v) for k, v in clips.items()}, "ref_text": REF_TEXT,
                                    "clone": CLONE}, indent=1), encoding="utf-8")
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
        subprocess.run([py, str(DRIVER), str(ckpt), str(spec), str(work / "ref.npz")], check=True, env=env)
        with np.load(work / "ref.npz") as z:
            ref = {k: z[k] for k in z.files}
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(out / "reference.npz", **{k: v.astype(np.int16) if v.dtype == np.int64 else v
                                                       for k, v in ref.items()})
        manifest = json.loads((ckpt / ".qwen3tts-manifest.json").read_text())
        meta = {"model": MODEL, "seed": SEED, "size": "tiny", "ref_text": REF_TEXT, "clips": sorted(clips),
                "clone": [dict(c, frames=int(ref[f"clone/{c['name']}"].shape[0])) for c in CLONE],
                "model.safetensors sha256": manifest["files"]["model.safetensors"]["sha256"],
                "generated_by": "python scripts/goldens_rates.py", "greedy": True, "dtype": "float32"}
        (out / "meta.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {out}: {len(clips)} clips, {len(CLONE)} clone cases")
    return 0


if __name__ == "__main__":
    sys.exit(main())
