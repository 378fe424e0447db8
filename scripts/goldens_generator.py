#!/usr/bin/env python3
"""Regenerate the generator goldens: official-reference outputs on tiny random checkpoints.

    python scripts/goldens_generator.py [--refvenv PY] [--out DIR] [--only NAME ...] [--keep DIR]

1. builds tiny checkpoints (seed 0) of 0.6B-CustomVoice, 1.7B-CustomVoice and 1.7B-VoiceDesign
   with qwen3tts_cli.checkpoint.build_checkpoint;
2. runs scripts/reference_driver.py under the reference's Python (--refvenv, else $QWEN3TTS_REFVENV,
   else /work/refvenv/bin/python) offline, greedy, float32;
3. writes tests/fixtures/goldens/generator/<case>.json and <case>.npz.

The reference loads its text tokenizer from a local folder, and then uses the "local-path" split
regex, not Qwen2's (reference-architecture.md §2.8). Every parity case uses a text on which both
regexes give the same ids (checked here, recorded as "regexes_agree"); one case ("regex_diff")
records a text where they differ and is only used to test the tokenizer and the prompt.
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
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "generator"
DRIVER = ROOT / "scripts" / "reference_driver.py"
SEED = 0
FRAMES_40 = 41  # the reference returns max_new_tokens - 1 frames without EOS: 40 frames
TALKER_LOGIT_STEPS = 4  # steps of raw codec_head logits kept per case (the codes cover all frames)

CASES = [
    # name, model, method, text, speaker, language, instruct, non_streaming_mode, max_new_tokens, extra
    dict(name="cv06_en_auto", model="0.6B-CustomVoice", method="custom_voice",
         text="Hello world, this is a simple test.", speaker="ryan", language="auto",
         non_streaming_mode=None, max_new_tokens=FRAMES_40, cp_logits=True),
    dict(name="cv06_en_english_streaming", model="0.6B-CustomVoice", method="custom_voice",
         text="The quick brown fox jumps over the lazy dog.", speaker="vivian", language="english",
         non_streaming_mode=False, max_new_tokens=FRAMES_40),
    dict(name="cv06_zh_chinese", model="0.6B-CustomVoice", method="custom_voice",
         text="今天天气很好，我们去公园散步吧。", speaker="serena", language="chinese",
         non_streaming_mode=True, max_new_tokens=FRAMES_40),
    dict(name="cv06_zh_auto_streaming", model="0.6B-CustomVoice", method="custom_voice",
         text="今天天气很好，我们去公园散步吧。", speaker="uncle_fu", language="Auto",
         non_streaming_mode=False, max_new_tokens=FRAMES_40),
    dict(name="cv06_dialect_dylan_auto", model="0.6B-CustomVoice", method="custom_voice",
         text="我们明天一起去北京吃烤鸭。", speaker="Dylan", language="auto",
         non_streaming_mode=True, max_new_tokens=FRAMES_40),
    dict(name="cv06_dialect_eric_chinese_streaming", model="0.6B-CustomVoice", method="custom_voice",
         text="这个地方的火锅真好吃。", speaker="eric", language="chinese",
         non_streaming_mode=False, max_new_tokens=FRAMES_40),
    dict(name="cv06_instruct_dropped", model="0.6B-CustomVoice", method="custom_voice",
         text="Good morning everyone.", speaker="aiden", language="english",
         instruct="Speak very slowly and sadly.", non_streaming_mode=None, max_new_tokens=FRAMES_40),
    # Long enough to stop on EOS if the random model ever picks it; otherwise it hits the cap.
    dict(name="cv06_long_streaming", model="0.6B-CustomVoice", method="custom_voice",
         text="Once upon a time, there was a little robot who loved to sing.", speaker="ryan",
         language="english", non_streaming_mode=False, max_new_tokens=100),
    dict(name="cv17_instruct_en", model="1.7B-CustomVoice", method="custom_voice",
         text="I can't believe we actually won the game!", speaker="aiden", language="english",
         instruct="Speak in a cheerful, excited tone.", non_streaming_mode=True, max_new_tokens=FRAMES_40,
         cp_logits=True),
    dict(name="cv17_instruct_dialect_streaming", model="1.7B-CustomVoice", method="custom_voice",
         text="这个地方的火锅真好吃。", speaker="eric", language="chinese",
         instruct="用轻松的语气说。", non_streaming_mode=False, max_new_tokens=FRAMES_40),
    dict(name="cv17_ko_auto", model="1.7B-CustomVoice", method="custom_voice",
         text="안녕하세요, 만나서 반갑습니다.", speaker="sohee", language="auto",
         non_streaming_mode=None, max_new_tokens=FRAMES_40),
    dict(name="vd17_en", model="1.7B-VoiceDesign", method="voice_design",
         text="Welcome to the evening news.", language="english",
         instruct="A deep, calm male voice speaking slowly.", non_streaming_mode=None, max_new_tokens=FRAMES_40,
         cp_logits=True),
    dict(name="vd17_auto_streaming", model="1.7B-VoiceDesign", method="voice_design",
         text="Bonjour tout le monde, comment allez-vous?", language="auto",
         instruct="A bright young female voice.", non_streaming_mode=False, max_new_tokens=FRAMES_40),
    dict(name="cv06_mixed_auto", model="0.6B-CustomVoice", method="custom_voice",
         text="今天我们学习 machine learning 的基础知识, OK?", speaker="vivian", language="auto",
         non_streaming_mode=None, max_new_tokens=FRAMES_40),
    dict(name="cv17_mixed_english_streaming", model="1.7B-CustomVoice", method="custom_voice",
         text="Please send the report to 王经理 before Friday.", speaker="ryan", language="english",
         instruct="Calm and professional.", non_streaming_mode=False, max_new_tokens=FRAMES_40),
    # The full-size (published shapes) random checkpoint: 16 frames (a slow test).
    dict(name="cv06_full_en", model="0.6B-CustomVoice", size="full", method="custom_voice",
         text="Hello world, this is a simple test.", speaker="ryan", language="english",
         non_streaming_mode=None, max_new_tokens=17),
    # The two split regexes disagree on this text; not a parity case (see the module docstring).
    dict(name="regex_diff", model="0.6B-CustomVoice", method="custom_voice",
         text="HelloWorld: my iPhone is at McDonald's.", speaker="ryan", language="english",
         non_streaming_mode=None, max_new_tokens=4, parity=False),
]


def _check_regexes(case: dict, ckpt: Path, rec: dict) -> bool:
    """Our local-path ids must equal the reference's; returns whether qwen2 gives the same ids."""
    from qwen3tts_cli.engine.prompt import assistant_text, instruct_text
    from qwen3tts_cli.text.tokenizer import TextTokenizer

    pairs = [(assistant_text(case["text"]), rec["target_ids"])]
    if rec.get("instruct_ids"):
        pairs.append((instruct_text(case["instruct"]), rec["instruct_ids"]))
    agree = True
    for templ, ref_ids in pairs:
        qwen2 = TextTokenizer.from_folder(ckpt, "qwen2").encode(templ)
        local = TextTokenizer.from_folder(ckpt, "local-path").encode(templ)
        if local != ref_ids:
            raise SystemExit(f"{case['name']}: our local-path tokenization differs from the reference's")
        agree = agree and qwen2 == local
    if case.get("parity", True) and not agree:
        raise SystemExit(f"{case['name']}: the two split regexes disagree on a parity case's text")
    if not case.get("parity", True) and agree:
        raise SystemExit(f"{case['name']}: meant to show a regex difference, but both agree")
    return agree


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

    with tempfile.TemporaryDirectory(prefix="qwen3tts-goldens-") as tmp:
        work = Path(args.keep or tmp)
        work.mkdir(parents=True, exist_ok=True)
        ckpts = {}
        for model, size in sorted({(c["model"], c.get("size", "tiny")) for c in cases}):
            folder = work / f"{size}-{model}-{SEED}"
            ckpts[model, size] = build_checkpoint(model, size, SEED, folder)
        driver_cases = []
        for c in cases:
            driver_cases.append(dict(name=c["name"], checkpoint=str(ckpts[c["model"], c.get("size", "tiny")]), method=c["method"],
                                     text=c["text"], speaker=c.get("speaker"), language=c["language"],
                                     instruct=c.get("instruct"), non_streaming_mode=c["non_streaming_mode"],
                                     max_new_tokens=c["max_new_tokens"]))
        spec = work / "cases.json"
        spec.write_text(json.dumps(driver_cases, ensure_ascii=False, indent=1), encoding="utf-8")
        raw = work / "raw"
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", PYTHONWARNINGS="ignore")
        subprocess.run([py, str(DRIVER), str(spec), str(raw)], check=True, env=env)

        for c in cases:
            rec = json.loads((raw / f"{c['name']}.json").read_text(encoding="utf-8"))
            arrays = np.load(raw / f"{c['name']}.npz")
            agree = _check_regexes(c, ckpts[c["model"], c.get("size", "tiny")], rec)
            n = c["max_new_tokens"]
            frames = rec["frames"]
            golden = {
                "case": c["name"],
                "model": c["model"],
                "size": c.get("size", "tiny"),
                "seed": SEED,
                "method": c["method"],
                "request": {k: c.get(k) for k in ("text", "speaker", "language", "instruct", "non_streaming_mode")},
                "parity": c.get("parity", True),
                "regex": "local-path",
                "regexes_agree": agree,
                "reference_max_new_tokens": n,
                "frames": frames,
                "eos": rec["eos"],
                # What our engine must be asked for to return the same frames: the reference drops
                # the last frame when it stops on max_new_tokens (§5.3).
                "compare_max_frames": frames,
                "talker_logit_steps": min(TALKER_LOGIT_STEPS, rec["talker_steps"]),
                "cp_logits_frame0": bool(c.get("cp_logits", False)),
                "target_ids": rec["target_ids"],
                # Only what the model embedded: 0.6B CustomVoice drops the instruction.
                "instruct_ids": rec["instruct_ids"] if rec.get("instruct_ids") in rec["text_lookups"] else None,
                "instruct_dropped": bool(rec.get("instruct_ids")) and rec["instruct_ids"] not in rec["text_lookups"],
                "text_lookups": rec["text_lookups"],
                "split_regex": rec["split_regex"],
                "dtype": rec["dtype"],
                "attn_implementation": rec["attn"],
                "versions": rec["versions"],
                "generated_by": "python scripts/goldens_generator.py",
            }
            assert frames == n - 1 or rec["eos"], (c["name"], frames, n)
            data = dict(codes=arrays["codes"].astype(np.int64),
                        talker_logits=arrays["talker_logits"][:golden["talker_logit_steps"]].astype(np.float32),
                        prefill_embeds=arrays["prefill_embeds"].astype(np.float32),
                        trailing=arrays["trailing"].astype(np.float32),
                        pad=arrays["pad"].astype(np.float32))
            if golden["cp_logits_frame0"]:
                data["cp_logits"] = arrays["cp_logits"][0].astype(np.float32)
            np.savez_compressed(out / f"{c['name']}.npz", **data)
            (out / f"{c['name']}.json").write_text(json.dumps(golden, ensure_ascii=False, indent=1) + "\n",
                                                   encoding="utf-8")
            print(f"{c['name']}: {frames} frames (eos={rec['eos']}), regexes agree={agree}")
    total = sum(p.stat().st_size for p in out.iterdir())
    print(f"goldens in {out}: {total / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
