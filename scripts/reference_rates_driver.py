#!/usr/bin/env python3
"""Drive the official qwen-tts on audio files at any rate: what `encode` and voice cloning make of them.

Runs in the reference's virtual environment (see refenv.py); scripts/goldens_rates.py starts it.

    REFVENV/bin/python scripts/reference_rates_driver.py MODEL_DIR CASES.json OUT.npz

CASES.json: {"clips": {name: path}, "ref_text": str, "clone": [{name, clip, text, language,
max_new_tokens}]}. For every clip: the speech tokenizer's codes of the file (librosa.load, mean to
mono, librosa.resample to 24 kHz inside the wrapper), and the voice-clone prompt the wrapper makes
from it (reference codes, speaker embedding). For every clone case: greedy generate_voice_clone's
generated codes.
"""

from __future__ import annotations

import json
import os
import sys

from refenv import import_qwen_tts

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 3:
        print(__doc__, file=sys.stderr)
        return 2
    import numpy as np
    import torch

    qwen_tts = import_qwen_tts()
    with open(argv[1], encoding="utf-8") as f:
        spec = json.load(f)
    tts = qwen_tts.Qwen3TTSModel.from_pretrained(argv[0], dtype=torch.float32)
    out = {}
    for name, path in spec["clips"].items():
        out[f"encode/{name}"] = tts.model.speech_tokenizer.encode(path).audio_codes[0].cpu().numpy().astype(np.int64)
        item = tts.create_voice_clone_prompt(ref_audio=path, ref_text=spec["ref_text"], x_vector_only_mode=False)[0]
        out[f"ref_codes/{name}"] = item.ref_code.cpu().numpy().astype(np.int64)
        out[f"xvector/{name}"] = item.ref_spk_embedding.float().cpu().numpy()
    st = tts.model.speech_tokenizer
    for case in spec["clone"]:
        seen = {}
        original = st.decode

        def decode(encoded, *a, **k):
            seen["codes"] = encoded[0]["audio_codes"].detach().cpu().numpy().copy()
            return original(encoded, *a, **k)

        st.decode = decode
        try:
            tts.generate_voice_clone(text=case["text"], language=case["language"], ref_audio=spec["clips"][case["clip"]],
                                     ref_text=spec["ref_text"], x_vector_only_mode=False,
                                     max_new_tokens=int(case["max_new_tokens"]), do_sample=False,
                                     subtalker_dosample=False)
        finally:
            st.decode = original
        ref_frames = out[f"ref_codes/{case['clip']}"].shape[0]
        out[f"clone/{case['name']}"] = seen["codes"][ref_frames:].astype(np.int64)
    np.savez(argv[2], **out)
    print(json.dumps({k: list(v.shape) for k, v in out.items()}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
