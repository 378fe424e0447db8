#!/usr/bin/env python3
"""Text feeds (`stream - --incremental`): first audio after the first word, and the text track's
lead over a long feed.

    python scripts/bench_feed.py -m MODEL [--dtype w8a8] [--device cpu] [--runs 7] [--words 500] [--json]

* latency: the model warm (one run first), a fresh feed per run; the clock starts when the first
  word and the space after it are pushed ("Hello ": the space is what tells the tokenizer the word
  is complete) and stops at the first audio chunk. The rest of the text follows at once. Median,
  min and max over --runs.
* long feed: --words words of sentences pushed as fast as they come (the text far ahead of the
  speech), default sampling, default runaway guard; reports utterances, frames, text tokens and
  frames per text token, overall and per utterance (the long-input cut restarts an utterance at a
  sentence end past max_chars: 300).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time

WORDS = ("the quick brown fox jumps over lazy dog while every morning people walk along river past old "
         "houses and small gardens where children play under tall trees near quiet roads").split()


def sentences(n_words: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out, words = [], 0
    while words < n_words:
        k = min(rng.randint(6, 16), n_words - words)
        s = " ".join(rng.choice(WORDS) for _ in range(k))
        out.append(s[0].upper() + s[1:] + rng.choice([".", ".", ".", "?", "!"]))
        words += k
    return " ".join(out)


def first_audio_after_first_word(tts, speaker, max_frames: int) -> float:
    feed = tts.text_feed()
    stream = tts.stream(feed, speaker=speaker, max_frames=max_frames, seed=0)
    got = threading.Event()
    t = {}

    def consume():
        for chunk in stream:
            if "first" not in t:
                t["first"] = time.perf_counter()
                got.set()

    th = threading.Thread(target=consume)
    th.start()
    time.sleep(0.05)  # the consumer is waiting for text
    t0 = time.perf_counter()
    feed.push("Hello ")
    got.wait(120)
    feed.push("there, this is a quick test of the first audio.")
    feed.close()
    th.join()
    return t["first"] - t0


def long_feed(tts, speaker, n_words: int) -> dict:
    text = sentences(n_words)
    feed = tts.text_feed()
    stream = tts.stream(feed, speaker=speaker, seed=0)
    t0 = time.perf_counter()
    for w in text.split(" "):
        feed.push(w + " ")
    feed.close()
    samples = sum(len(c) for c in stream)
    dt = time.perf_counter() - t0
    r = stream.result
    per = []
    for txt, n in zip(r.texts, r.chunk_frames):
        ids = len(tts.tokenizer.encode(txt.strip())) if txt.strip() else 0
        per.append({"text_tokens": ids, "frames": n, "frames_per_token": round(n / ids, 3) if ids else None})
    return {"words": n_words, "text_tokens": len(feed.ids), "utterances": r.chunks, "frames": r.frames,
            "frames_per_text_token": round(r.frames / max(len(feed.ids), 1), 3), "audio_s": round(samples / 24000, 2),
            "wall_s": round(dt, 2), "stop_reason": r.stop_reason, "truncated": r.truncated, "per_utterance": per}


def main(argv=None) -> int:
    import torch

    from qwen3tts_cli.engine import load_tts

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default=None)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--words", type=int, default=500)
    ap.add_argument("--speaker", default=None)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    tts = load_tts(args.model, device=args.device, dtype=args.dtype)
    tts.decoder  # noqa: B018
    load_s = time.perf_counter() - t0
    speaker = args.speaker or tts.default_speaker
    first_audio_after_first_word(tts, speaker, 12)  # warm-up
    lat = [first_audio_after_first_word(tts, speaker, 12) for _ in range(args.runs)]
    report = {"model": args.model, "device": args.device, "dtype": args.dtype or str(tts.dtype), "load_s": round(load_s, 2),
              "torch_threads": torch.get_num_threads(),
              "first_audio_after_first_word_ms": {"median": round(statistics.median(lat) * 1000, 1),
                                                  "min": round(min(lat) * 1000, 1), "max": round(max(lat) * 1000, 1),
                                                  "runs": len(lat)}}
    if args.words:
        report["long_feed"] = long_feed(tts, speaker, args.words)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        f = report["first_audio_after_first_word_ms"]
        print(f"first audio after the first word: median {f['median']} ms (min {f['min']}, max {f['max']}, "
              f"{f['runs']} runs), {report['dtype']}, {report['torch_threads']} threads")
        if "long_feed" in report:
            lf = report["long_feed"]
            print(f"long feed: {lf['words']} words, {lf['text_tokens']} text tokens, {lf['utterances']} utterances, "
                  f"{lf['frames']} frames: {lf['frames_per_text_token']} frames per text token; "
                  f"{lf['audio_s']} s of audio in {lf['wall_s']} s; stop: {lf['stop_reason']}")
            for i, u in enumerate(lf["per_utterance"], 1):
                print(f"  utterance {i}: {u['text_tokens']} text tokens, {u['frames']} frames "
                      f"({u['frames_per_token']} per token)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
