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
n_mels=128, fmin=0, fmax=12000)``).

With ``--cases CASES.json`` (a list of objects: name, model (a --model NAME), signal, text,
language, ref_text, xvector_only, max_new_tokens) every case also runs the whole official voice
clone, greedy (do_sample=False, subtalker_dosample=False): ``generate_voice_clone(text, language,
ref_audio=(signal, 24000), ref_text, x_vector_only_mode, max_new_tokens)``, recording
``clone/<case>/codes`` (the generated codes, seen at the speech tokenizer's decode call, without
the reference codes that ICL decodes in front), ``clone/<case>/wav`` (the returned waveform) and
``clone/<case>/target_ids`` / ``ref_ids`` (the prompt token ids). Everything runs in float32 on the CPU. A JSON line with
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
    ap.add_argument("--cases", default=None, help="JSON list of end-to-end voice-clone cases")
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

    cases = []
    if args.cases:
        with open(args.cases, encoding="utf-8") as f:
            cases = json.load(f)
    out: dict[str, np.ndarray] = {}
    timings: dict[str, float] = {}
    case_info: dict[str, dict] = {}
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
        for case in [c for c in cases if c["model"] == tag]:
            t0 = time.perf_counter()
            out.update(clone_case(tts, case, signals[case["signal"]], np, torch))
            timings[f"clone/{case['name']}"] = round(time.perf_counter() - t0, 3)
            case_info[case["name"]] = {"frames": int(out[f"clone/{case['name']}/codes"].shape[0])}
        del tts, model, tok

    tmp = args.out_npz + ".partial.npz"
    np.savez(tmp, **out)
    os.replace(tmp, args.out_npz)
    print(json.dumps({"qwen_tts": version("qwen-tts"), "transformers": version("transformers"),
                      "torch": torch.__version__, "librosa": librosa.__version__, "timings": timings,
                      "clone_cases": case_info}))
    return 0


def clone_case(tts, case: dict, wav, np, torch) -> dict:
    """One greedy generate_voice_clone call; the generated codes are taken at the decode call."""
    st = tts.model.speech_tokenizer
    seen = {}
    original = st.decode

    def decode(encoded, *a, **k):
        seen["codes"] = [e["audio_codes"].detach().cpu().numpy().copy() for e in encoded]
        return original(encoded, *a, **k)

    st.decode = decode
    try:
        wavs, sr = tts.generate_voice_clone(
            text=case["text"], language=case["language"], ref_audio=(wav, 24000),
            ref_text=case.get("ref_text"), x_vector_only_mode=bool(case["xvector_only"]),
            max_new_tokens=int(case["max_new_tokens"]), do_sample=False, subtalker_dosample=False)
    finally:
        st.decode = original
    if sr != 24000:
        raise SystemExit(f"{case['name']}: sample rate {sr}")
    codes = np.asarray(seen["codes"][0], dtype=np.int64)
    ref_frames = 0
    if not case["xvector_only"]:
        ref_frames = int(tts.model.speech_tokenizer.encode(wav, sr=24000).audio_codes[0].shape[0])
    tokenize = lambda s: np.asarray(tts._tokenize_texts([s])[0][0].tolist(), dtype=np.int64)  # noqa: E731
    key = f"clone/{case['name']}"
    res = {f"{key}/codes": codes[ref_frames:], f"{key}/wav": np.asarray(wavs[0], dtype=np.float32),
           f"{key}/target_ids": tokenize(tts._build_assistant_text(case["text"]))}
    if case.get("ref_text"):
        res[f"{key}/ref_ids"] = tokenize(tts._build_ref_text(case["ref_text"]))
    return res


if __name__ == "__main__":
    sys.exit(main())
