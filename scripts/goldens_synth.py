#!/usr/bin/env python3
"""Regenerate the end-to-end synthesis goldens: the official wrapper's waveform on tiny checkpoints.

    python scripts/goldens_synth.py [--refvenv PY] [--out DIR] [--only NAME ...] [--keep DIR]

1. builds tiny checkpoints (seed 0) with qwen3tts_cli.checkpoint.build_checkpoint;
2. runs scripts/reference_driver.py under the reference's Python (--refvenv, else $QWEN3TTS_REFVENV,
   else /work/refvenv/bin/python) offline, greedy, float32: `generate_custom_voice` /
   `generate_voice_design`, whose returned waveform the driver saves;
3. writes tests/fixtures/goldens/synth/<case>.json (request, versions, frame counts) and
   <case>.npz (wav float32 [frames * 1920], codes int64 [frames, 16]).

The reference's max_new_tokens=N yields N-1 frames when it does not stop on EOS; ours gives N for
max_frames=N, so the tests ask for the golden's "compare_max_frames". Texts are ones on which the
reference's local-folder split regex and our Qwen2 regex give the same ids (checked here).
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
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "synth"
DRIVER = ROOT / "scripts" / "reference_driver.py"
SEED = 0

CASES = [
    # Short enough for small goldens: each utterance is one decoder chunk (< 300 frames); the
    # chunk grid itself is covered by the codec goldens.
    dict(name="cv06_en_ryan", model="0.6B-CustomVoice", method="custom_voice",
         text="Hello world, this is a simple test.", speaker="ryan", language="english",
         instruct=None, non_streaming_mode=None, max_new_tokens=21),
    dict(name="cv06_zh_streaming", model="0.6B-CustomVoice", method="custom_voice",
         text="今天天气很好，我们去公园散步吧。", speaker="serena", language="chinese",
         instruct=None, non_streaming_mode=False, max_new_tokens=13),
    dict(name="vd17_en", model="1.7B-VoiceDesign", method="voice_design",
         text="Welcome to the evening news.", speaker=None, language="english",
         instruct="A deep, calm male voice speaking slowly.", non_streaming_mode=None, max_new_tokens=13),
]


def check_tokenization(case: dict, ckpt: Path, rec: dict) -> None:
    """Our tokenizer (both regexes) must give the ids the reference embedded."""
    from qwen3tts_cli.engine.prompt import assistant_text, instruct_text
    from qwen3tts_cli.text.tokenizer import TextTokenizer

    pairs = [(assistant_text(case["text"]), rec["target_ids"])]
    if rec.get("instruct_ids"):
        pairs.append((instruct_text(case["instruct"]), rec["instruct_ids"]))
    for templ, ref_ids in pairs:
        for regex in ("qwen2", "local-path"):
            if TextTokenizer.from_folder(ckpt, regex).encode(templ) != ref_ids:
                raise SystemExit(f"{case['name']}: {regex} tokenization differs from the reference's; pick a "
                                 "text on which both split regexes agree")


def main(argv=None) -> int:
    from refenv import add_golden_options, reference_python, select_cases  # scripts/ is on sys.path when run as a script

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_golden_options(ap, DEFAULT_OUT, cases=True)
    args = ap.parse_args(argv)

    from qwen3tts_cli.io.checkpoint import build_checkpoint

    py = reference_python(args.refvenv)
    cases = select_cases(CASES, args.only)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory(prefix="qwen3tts-goldens-synth-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpts = {m: build_checkpoint(m, "tiny", SEED, work / f"tiny-{m}-{SEED}")
                 for m in sorted({c["model"] for c in cases})}
        spec = [dict(name=c["name"], checkpoint=str(ckpts[c["model"]]), method=c["method"], text=c["text"],
                     speaker=c["speaker"], language=c["language"], instruct=c["instruct"],
                     non_streaming_mode=c["non_streaming_mode"], max_new_tokens=c["max_new_tokens"])
                for c in cases]
        spec_file = work / "synth_cases.json"
        spec_file.write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")
        raw = work / "raw_synth"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
        subprocess.run([py, str(DRIVER), str(spec_file), str(raw)], check=True, env=env)

        for c in cases:
            rec = json.loads((raw / f"{c['name']}.json").read_text(encoding="utf-8"))
            arrays = np.load(raw / f"{c['name']}.npz")
            check_tokenization(c, ckpts[c["model"]], rec)
            codes = arrays["codes"].astype(np.int64)
            wav = arrays["wav"].astype(np.float32)
            frames = int(codes.shape[0])
            if not (rec["eos"] or frames == c["max_new_tokens"] - 1):
                raise SystemExit(f"{c['name']}: {frames} frames for max_new_tokens={c['max_new_tokens']}")
            if rec["sample_rate"] != 24000 or wav.shape != (frames * 1920,):
                raise SystemExit(f"{c['name']}: unexpected waveform {wav.shape} at {rec['sample_rate']} Hz")
            golden = {
                "case": c["name"],
                "model": c["model"],
                "size": "tiny",
                "seed": SEED,
                "method": c["method"],
                "request": {k: c[k] for k in ("text", "speaker", "language", "instruct", "non_streaming_mode")},
                "greedy": True,
                "reference_max_new_tokens": c["max_new_tokens"],
                "frames": frames,
                "eos": rec["eos"],
                # Ours gives exactly max_frames frames; the reference one fewer than max_new_tokens.
                "compare_max_frames": frames,
                "sample_rate": rec["sample_rate"],
                "samples": int(wav.shape[0]),
                "peak": float(np.abs(wav).max()),
                "dtype": rec["dtype"],
                "attn_implementation": rec["attn"],
                "versions": rec["versions"],
                "generated_by": "python scripts/goldens_synth.py",
            }
            np.savez_compressed(out / f"{c['name']}.npz", wav=wav, codes=codes)
            (out / f"{c['name']}.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n",
                                                   encoding="utf-8")
            print(f"{c['name']}: {frames} frames (eos={rec['eos']}), {wav.shape[0]} samples, "
                  f"peak {golden['peak']:.3f}")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"goldens in {out}: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
