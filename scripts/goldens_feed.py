#!/usr/bin/env python3
"""Regenerate the text-feed goldens: the official streaming layout (non_streaming_mode=False) on
whole texts, which a text feed must reproduce whatever pieces the text arrives in.

    python scripts/goldens_feed.py [--refvenv PY] [--out DIR] [--only NAME ...] [--keep DIR]

1. builds tiny checkpoints (seed 0) with qwen3tts_cli.io.checkpoint.build_checkpoint, and for the
   early-end case a copy whose end-token row is scaled (tests/feed_goldens.py: scale_eos_row);
2. runs scripts/reference_driver.py under the reference's Python, greedy, float32, offline;
3. writes tests/fixtures/goldens/feed/<case>.json and <case>.npz (codes, talker logits).

Every text tokenizes the same under both split regexes (checked here), so our default tokenizer
gives the reference's ids. The ICL clone uses the "voice" signal of the clone goldens.
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
sys.path.insert(0, str(ROOT / "tests"))  # the goldens' helpers, shared with the tests

DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "feed"
DRIVER = ROOT / "scripts" / "reference_driver.py"
SEED = 0
EOS_FACTOR = 2.0  # on the tiny 0.6B CustomVoice (seed 0) this ends the utterance at frame 10 of 28 text ids

CASES = [
    dict(name="cv06_en", model="0.6B-CustomVoice", method="custom_voice", speaker="vivian", language="english",
         text="Hello there! The quick brown fox, it's 1999, jumps over the lazy dog.", max_new_tokens=61),
    dict(name="cv06_zh", model="0.6B-CustomVoice", method="custom_voice", speaker="serena", language="chinese",
         text="今天天气很好，我们去公园散步吧。明天见！", max_new_tokens=51),
    dict(name="vd17_en", model="1.7B-VoiceDesign", method="voice_design", language="english",
         instruct="A deep, calm male voice speaking slowly.",
         text="Welcome to the evening news. Tonight: rain, then sun.", max_new_tokens=51),
    dict(name="cv17_instruct", model="1.7B-CustomVoice", method="custom_voice", speaker="aiden", language="auto",
         instruct="Speak in a cheerful, excited tone.",
         text="I can't believe we actually won the game! See you tomorrow.", max_new_tokens=41),
    # A 2 s reference: 26 reference rows against 5 transcript ids, so the prompt holds the first 21
    # text ids and the other 30 ride along with the frames.
    dict(name="icl06_en", model="0.6B-Base", method="voice_clone", language="english", signal="chirp",
         ref_text="A short reference.",
         text="Nice to meet you. How are you today? I hope the weather is fine where you are, and that the "
              "trains run on time, because tomorrow we travel north to see the mountains and the lakes.",
         max_new_tokens=61),
    dict(name="cv06_early_end", model="0.6B-CustomVoice", method="custom_voice", speaker="ryan", language="english",
         eos_factor=EOS_FACTOR,
         text="Once upon a time there was a little robot who loved to sing songs about the sea, the sky and "
              "the stars above the quiet town.", max_new_tokens=100),
]


def _check_regexes(case: dict, ckpt: Path, rec: dict) -> None:
    from qwen3tts_cli.engine.prompt import assistant_text
    from qwen3tts_cli.text.tokenizer import TextTokenizer

    templ = assistant_text(case["text"])
    for regex in ("qwen2", "local-path"):
        if TextTokenizer.from_folder(ckpt, regex).encode(templ) != rec["target_ids"]:
            raise SystemExit(f"{case['name']}: the {regex} tokenization differs from the reference's")


def main(argv=None) -> int:
    from refenv import add_golden_options, reference_python, select_cases

    from feed_goldens import scale_eos_row

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_golden_options(ap, DEFAULT_OUT, cases=True)
    args = ap.parse_args(argv)

    from qwen3tts_cli.io.checkpoint import build_checkpoint

    py = reference_python(args.refvenv)
    cases = select_cases(CASES, args.only)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="qwen3tts-goldens-feed-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        driver_cases, ckpts = [], {}
        for c in cases:
            key = (c["model"], c.get("eos_factor"))
            if key not in ckpts:
                base = work / f"tiny-{c['model']}-{SEED}"
                if not base.exists():
                    build_checkpoint(c["model"], "tiny", SEED, base)
                ckpts[key] = base if c.get("eos_factor") is None else scale_eos_row(
                    base, work / f"tiny-{c['model']}-{SEED}-eos{c['eos_factor']}", c["eos_factor"])
            d = dict(name=c["name"], checkpoint=str(ckpts[key]), method=c["method"], text=c["text"],
                     speaker=c.get("speaker"), language=c["language"], instruct=c.get("instruct"),
                     non_streaming_mode=False, max_new_tokens=c["max_new_tokens"])
            if c["method"] == "voice_clone":
                from clone_goldens import load_goldens

                signals, _ = load_goldens()
                wav = work / f"{c['signal']}.npy"
                np.save(wav, signals[c["signal"]])
                d.update(ref_audio=str(wav), ref_text=c["ref_text"], xvector_only=False)
            driver_cases.append(d)
        spec = work / "cases.json"
        spec.write_text(json.dumps(driver_cases, ensure_ascii=False, indent=1), encoding="utf-8")
        raw = work / "raw"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
        subprocess.run([py, str(DRIVER), str(spec), str(raw)], check=True, env=env)

        for c in cases:
            rec = json.loads((raw / f"{c['name']}.json").read_text(encoding="utf-8"))
            arrays = np.load(raw / f"{c['name']}.npz")
            _check_regexes(c, ckpts[c["model"], c.get("eos_factor")], rec)
            text_ids = rec["target_ids"][3:-5]
            golden = {
                "case": c["name"], "model": c["model"], "size": "tiny", "seed": SEED, "method": c["method"],
                "request": {k: c.get(k) for k in ("text", "speaker", "language", "instruct")},
                "eos_factor": c.get("eos_factor"),
                "signal": c.get("signal"), "ref_text": c.get("ref_text"),
                "reference_max_new_tokens": c["max_new_tokens"],
                "frames": rec["frames"], "eos": rec["eos"], "text_ids": len(text_ids),
                "target_ids": rec["target_ids"],
                "dtype": rec["dtype"], "versions": rec["versions"],
                "generated_by": "python scripts/goldens_feed.py",
            }
            if c.get("eos_factor") is not None and not (rec["eos"] and rec["frames"] < len(text_ids)):
                raise SystemExit(f"{c['name']}: meant to end before its text is read, but made {rec['frames']} "
                                 f"frames for {len(text_ids)} text ids (eos={rec['eos']})")
            (out / f"{c['name']}.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n",
                                                   encoding="utf-8")
            np.savez_compressed(out / f"{c['name']}.npz", codes=arrays["codes"].astype(np.int64),
                                talker_logits=arrays["talker_logits"][:4].astype(np.float32))
            print(f"{c['name']}: {rec['frames']} frames, eos={rec['eos']}, {len(text_ids)} text ids")
    return 0


if __name__ == "__main__":
    sys.exit(main())
