#!/usr/bin/env python3
"""Time the official qwen-tts reference on one checkpoint for a fixed number of frames.

Runs in the reference's virtual environment (see refenv.py); bench_vs_reference.py starts it.
Prints one JSON object on stdout.

    HF_HUB_OFFLINE=1 REFVENV/bin/python scripts/reference_bench_driver.py CKPT --frames 25 [--threads 2]

The reference's greedy ``generate_custom_voice`` (or ``generate_voice_design``) runs with
``eos_token_id`` set to the last codec id: that id is inside the range the reference always
suppresses, so generation runs to ``max_new_tokens`` = frames + 1, which yields ``frames`` frames
(reference-architecture.md: N new tokens give N - 1 complete frames). The real EOS id is then an
ordinary code; the frame count actually decoded is reported. The speech tokenizer's decode call
is wrapped on the loaded instance to time it apart from generation. One warm-up call first.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from refenv import import_qwen_tts

TEXT = "Hello, this is a small test of the text to speech model, spoken at an even pace."


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("checkpoint")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--warmup-frames", type=int, default=3)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--text", default=TEXT)
    a = ap.parse_args(argv)

    import torch

    if a.threads:
        torch.set_num_threads(a.threads)
    qwen_tts = import_qwen_tts()
    t = time.perf_counter()
    wrapper = qwen_tts.Qwen3TTSModel.from_pretrained(a.checkpoint, dtype=torch.float32)
    load_s = time.perf_counter() - t
    model = wrapper.model
    vocab = model.config.talker_config.vocab_size

    tokenizer = model.speech_tokenizer
    plain_decode = tokenizer.decode
    seen = {}

    def timed_decode(encoded):
        seen["frames"] = int(encoded[0]["audio_codes"].shape[0])
        t0 = time.perf_counter()
        out = plain_decode(encoded)
        seen["decode_s"] = time.perf_counter() - t0
        return out

    tokenizer.decode = timed_decode

    def call(frames: int) -> dict:
        kw = dict(max_new_tokens=frames + 1, do_sample=False, subtalker_dosample=False, eos_token_id=vocab - 1,
                  language="english")
        t0 = time.perf_counter()
        if model.tts_model_type == "custom_voice":
            wavs, sr = wrapper.generate_custom_voice(text=a.text, speaker="ryan", **kw)
        elif model.tts_model_type == "voice_design":
            wavs, sr = wrapper.generate_voice_design(text=a.text, instruct="A calm, clear voice at an even pace.",
                                                     **kw)
        else:
            raise SystemExit("the benchmark needs a CustomVoice or VoiceDesign checkpoint")
        total = time.perf_counter() - t0
        n = seen["frames"]
        gen = total - seen["decode_s"]
        return {"frames": n, "generate_s": gen, "decode_s": seen["decode_s"], "e2e_s": total,
                "audio_s": len(wavs[0]) / float(sr), "e2e_frames_per_s": n / gen, "e2e_xrt": n * 0.08 / total,
                "codec_ms_per_frame": 1000 * seen["decode_s"] / n}

    call(a.warmup_frames)
    run = call(a.frames)
    run.update(load_s=load_s, threads=torch.get_num_threads(), torch=torch.__version__,
               peak_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0)
    sys.stdout.write(json.dumps(run) + "\n")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    sys.exit(main())
