"""Voice-clone front ends with the official qwen-tts package (run with the reference venv's python).

    HF_HUB_OFFLINE=1 REFVENV/bin/python scripts/reference_clone_driver.py SIGNALS.npz OUT.npz \
        [--model NAME=MODEL_DIR ...] [--tokenizer NAME=TOKENIZER_DIR ...]

SIGNALS.npz holds mono float32 waveforms at 24 kHz. For every Base model folder and every signal,
OUT.npz gets (keys ``NAME/<what>/<signal>``):

  codes     int64 [T, 16]  ``model.speech_tokenizer.encode(wav, sr=24000)`` (the codec encoder)
  latent    float32 [C, T] input of the split RVQ (the downsampling conv's output), via a hook
  xvector   float32 [enc_dim]  ``model.extract_speaker_embedding(wav, sr=24000)``

(a --tokenizer folder, e.g. Qwen3-TTS-Tokenizer-12Hz, gets only codes and latent), plus
``mel/<signal>`` (the reference's ``mel_spectrogram`` with the arguments the speaker encoder
uses, [frames, 128]) and ``librosa_mel_fb`` (``librosa.filters.mel(sr=24000, n_fft=1024,
n_mels=128, fmin=0, fmax=12000)``). Everything runs in float32 on the CPU. A JSON line with
versions and timings goes to stdout. This file must not import qwen3tts_cli: it runs in the
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
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SR = 24000


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("signals_npz")
    ap.add_argument("out_npz")
    ap.add_argument("--model", action="append", default=[], metavar="NAME=DIR",
                    help="a Base model folder (repeatable)")
    ap.add_argument("--tokenizer", action="append", default=[], metavar="NAME=DIR",
                    help="a speech-tokenizer folder: codes and latent only (repeatable)")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args(argv)

    import librosa
    import numpy as np
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    qwen_tts = import_qwen_tts()
    from importlib.metadata import version

    from qwen_tts.core.models.modeling_qwen3_tts import mel_spectrogram

    with np.load(args.signals_npz, allow_pickle=False) as src:
        signals = {k: np.asarray(src[k], dtype=np.float32) for k in src.files}

    out: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    out["librosa_mel_fb"] = librosa.filters.mel(sr=SR, n_fft=1024, n_mels=128, fmin=0, fmax=12000)
    for name, wav in signals.items():
        # The exact call extract_speaker_embedding makes, before the transpose to [frames, 128].
        mel = mel_spectrogram(torch.from_numpy(wav).unsqueeze(0), n_fft=1024, num_mels=128, sampling_rate=SR,
                              hop_size=256, win_size=1024, fmin=0, fmax=12000)
        out[f"mel/{name}"] = mel[0].transpose(0, 1).numpy().astype(np.float32)

    for spec in args.model + args.tokenizer:
        tag, _, folder = spec.partition("=")
        if not folder:
            ap.error(f"--model/--tokenizer want NAME=DIR, got {spec!r}")
        t0 = time.perf_counter()
        if spec in args.model:
            tts = qwen_tts.Qwen3TTSModel.from_pretrained(folder, dtype=torch.float32)
            model = tts.model
            tok = model.speech_tokenizer
        else:
            tts = model = None
            tok = qwen_tts.Qwen3TTSTokenizer.from_pretrained(folder, dtype=torch.float32)
        timings[f"{tag}/load"] = round(time.perf_counter() - t0, 3)
        latent = {}
        hook = tok.model.encoder.downsample.register_forward_hook(
            lambda _m, _i, o: latent.__setitem__("x", o.detach().float().cpu().numpy()))
        for name, wav in signals.items():
            t0 = time.perf_counter()
            enc = tok.encode(wav, sr=SR)
            timings[f"{tag}/encode/{name}"] = round(time.perf_counter() - t0, 3)
            out[f"{tag}/codes/{name}"] = enc.audio_codes[0].cpu().numpy().astype(np.int64)
            out[f"{tag}/latent/{name}"] = latent["x"][0].astype(np.float32)
            if model is None:
                continue
            t0 = time.perf_counter()
            with torch.inference_mode():
                xvec = model.extract_speaker_embedding(wav, sr=SR)
            timings[f"{tag}/xvector/{name}"] = round(time.perf_counter() - t0, 3)
            out[f"{tag}/xvector/{name}"] = xvec.float().cpu().numpy()
        hook.remove()
        del tts, model, tok

    tmp = args.out_npz + ".partial.npz"
    np.savez(tmp, **out)
    os.replace(tmp, args.out_npz)
    print(json.dumps({"qwen_tts": version("qwen-tts"), "transformers": version("transformers"),
                      "torch": torch.__version__, "librosa": librosa.__version__, "timings": timings}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
