"""Decode codec codes with the official qwen-tts package (run with the reference venv's python).

    HF_HUB_OFFLINE=1 REFVENV/bin/python scripts/reference_codec_driver.py TOKENIZER_DIR IN.npz OUT.npz

IN.npz holds integer arrays [T, 16]; OUT.npz gets one float32 waveform per input name, decoded by
``Qwen3TTSTokenizer.from_pretrained(TOKENIZER_DIR, dtype=float32).decode`` on the CPU. A JSON line
with versions and timings goes to stdout. This file must not import qwen3tts_cli: it runs in the
reference's environment, not ours.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from refenv import import_qwen_tts

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("tokenizer_dir")
    ap.add_argument("codes_npz")
    ap.add_argument("out_npz")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    qwen_tts = import_qwen_tts()
    import transformers
    from importlib.metadata import version

    t0 = time.perf_counter()
    tok = qwen_tts.Qwen3TTSTokenizer.from_pretrained(args.tokenizer_dir, dtype=torch.float32)
    load_s = time.perf_counter() - t0
    model = tok.model
    attn = getattr(model.config.decoder_config, "_attn_implementation", None) or \
        getattr(model.config, "_attn_implementation", None)

    wavs, timings = {}, {}
    with np.load(args.codes_npz, allow_pickle=False) as src:
        for name in src.files:
            codes = src[name].astype(np.int64)
            t0 = time.perf_counter()
            # The documented minimal form: a list of {"audio_codes": [T, 16]}.
            out, sr = tok.decode([{"audio_codes": codes}])
            timings[name] = round(time.perf_counter() - t0, 3)
            wav = np.asarray(out[0], dtype=np.float32)
            if sr != 24000:
                raise SystemExit(f"unexpected sample rate {sr}")
            wavs[name] = wav
    np.savez(args.out_npz, **wavs)
    print(json.dumps({
        "qwen_tts": version("qwen-tts"),
        "transformers": transformers.__version__,
        "torch": torch.__version__,
        "numpy": np.__version__,
        "dtype": str(next(model.parameters()).dtype),
        "attn_implementation": attn,
        "threads": torch.get_num_threads(),
        "load_s": round(load_s, 3),
        "decode_s": timings,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
