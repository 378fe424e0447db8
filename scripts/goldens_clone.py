#!/usr/bin/env python3
"""Regenerate the voice-clone front-end goldens: official codec-encoder codes, log-mel and x-vectors.

    python scripts/goldens_clone.py [--refvenv PY] [--out DIR] [--keep DIR]

1. builds tiny checkpoints of 0.6B-Base (seed 0) and 1.7B-Base (seed 1, so that the two codecs
   differ too) with qwen3tts_cli.checkpoint.build_checkpoint;
2. makes the test signals (the recipes below; synthetic ones are stored on the 16-bit grid, and
   "stereo44k" is a 44.1 kHz stereo file read with qwen3tts_cli.io.resample.load_audio and brought
   to 24 kHz with qwen3tts_cli.io.resample.resample: soxr HQ, the reference's own path through librosa;
   clips at other rates go through both pipelines whole in scripts/goldens_rates.py);
3. runs scripts/reference_clone_driver.py under the reference's Python (--refvenv, else
   $QWEN3TTS_REFVENV, else /work/refvenv/bin/python), offline, float32, CPU;
4. writes tests/fixtures/goldens/clone/{signals.npz, reference.npz, meta.json}, and the
   end-to-end voice-clone goldens (CASES: greedy `generate_voice_clone`, x-vector-only and ICL, on
   both models) to e2e.npz: the generated codes and the returned waveform of each case.

The reference's max_new_tokens=N yields N-1 frames when it does not stop on EOS; ours gives N for
max_frames=N, so the tests ask for the case's recorded frame count.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "fixtures" / "goldens" / "clone"
DRIVER = ROOT / "scripts" / "reference_clone_driver.py"
# model -> checkpoint seed
MODELS = {"0.6B-Base": 0, "1.7B-Base": 1}
SR = 24000
SR_STEREO = 44100

# End-to-end cases: few frames keep e2e.npz small; texts on which both split regexes agree.
CASES = [
    dict(name="b06_xvector", model="0.6B-Base", signal="voice", xvector_only=True, ref_text=None,
         text="Good morning, how are you today?", language="english", max_new_tokens=7),
    dict(name="b06_icl", model="0.6B-Base", signal="voice", xvector_only=False,
         ref_text="This is a short sample of my own voice.", text="Nice to meet you.", language="auto",
         max_new_tokens=7),
    dict(name="b17_xvector", model="1.7B-Base", signal="stereo44k", xvector_only=True, ref_text=None,
         text="The weather is lovely.", language="auto", max_new_tokens=7),
    dict(name="b17_icl", model="1.7B-Base", signal="tones_noise", xvector_only=False,
         ref_text="Hello, this is the reference recording.", text="See you tomorrow at noon.",
         language="english", max_new_tokens=7),
]


# ---------------------------------------------------------------------------------------------
# Signal recipes (deterministic; lengths deliberately not multiples of the 1920-sample hop)
# ---------------------------------------------------------------------------------------------

def _fade(x: np.ndarray, sr: int, seconds: float = 0.01) -> np.ndarray:
    n = int(sr * seconds)
    ramp = 0.5 - 0.5 * np.cos(np.pi * np.arange(n) / n)
    x = x.copy()
    x[:n] *= ramp
    x[-n:] *= ramp[::-1]
    return x


def chirp(n: int = 47_777, sr: int = SR) -> np.ndarray:
    """Exponential sweep 80 Hz -> 9 kHz at 0.6."""
    t = np.arange(n) / sr
    dur, f0, f1 = n / sr, 80.0, 9000.0
    k = np.log(f1 / f0)
    return _fade(0.6 * np.sin(2 * np.pi * f0 * dur / k * (np.exp(t / dur * k) - 1)), sr)


def tones_noise(n: int = 60_001, sr: int = SR, seed: int = 1234) -> np.ndarray:
    """Three steady tones with a Hann-shaped Gaussian noise burst (0.8-1.5 s) and one click."""
    t = np.arange(n) / sr
    x = (0.3 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1250 * t + 1.0)
         + 0.1 * np.sin(2 * np.pi * 4100 * t))
    a, b = int(0.8 * sr), int(1.5 * sr)
    burst = np.random.default_rng(seed).standard_normal(b - a) * 0.25
    x[a:b] += burst * np.hanning(b - a)
    x[int(2.1 * sr)] += 0.5
    return _fade(x, sr)


def voice(n: int = 96_123, sr: int = SR, f0_base: float = 120.0, seed: int = 7) -> np.ndarray:
    """Voice-like: a glottal-ish harmonic series with vibrato and a wandering pitch, shaped by
    three formants that move between /a/, /i/ and /u/, in syllables of ~4 Hz with breath noise."""
    t = np.arange(n) / sr
    f0 = f0_base * (1 + 0.2 * np.sin(2 * np.pi * 0.7 * t)) + 3 * np.sin(2 * np.pi * 5.5 * t)
    phase = 2 * np.pi * np.cumsum(f0) / sr
    vowels = np.array([[800, 1200, 2500], [300, 2300, 3000], [350, 800, 2300]], dtype=np.float64)
    pos = (t * 1.3) % 3  # glide through the vowels
    i0 = np.floor(pos).astype(int)
    w = (pos - i0)[:, None]
    formants = vowels[i0] * (1 - w) + vowels[(i0 + 1) % 3] * w
    x = np.zeros(n)
    for k in range(1, 60):
        fk = k * f0
        gain = sum(np.exp(-0.5 * ((fk - formants[:, j]) / (90 + 40 * j)) ** 2) * (0.9 ** j) for j in range(3))
        gain = (gain + 0.05) / k ** 0.7
        x += np.where(fk < 0.45 * sr, gain, 0.0) * np.sin(k * phase)
    syllables = np.clip(np.sin(2 * np.pi * 4.0 * t) * 1.4 + 0.4, 0, 1) ** 2
    x = x * syllables + 0.005 * np.random.default_rng(seed).standard_normal(n)
    return _fade(0.7 * x / np.abs(x).max(), sr)


def short(n: int = 1500, seed: int = 99) -> np.ndarray:
    """Shorter than one frame (1920 samples): one code frame, five mel frames."""
    return 0.3 * np.random.default_rng(seed).standard_normal(n)


def stereo_source(seconds: float = 3.0, sr: int = SR_STEREO, seed: int = 5) -> np.ndarray:
    """[samples, 2] at 44.1 kHz: left a higher voice, right tones (one at 15 kHz, above the
    24 kHz Nyquist, which resampling must remove) and a noise burst."""
    n = int(seconds * sr)
    t = np.arange(n) / sr
    left = voice(n, sr, f0_base=210.0, seed=seed)
    right = 0.2 * np.sin(2 * np.pi * 440 * t) + 0.15 * np.sin(2 * np.pi * 15000 * t)
    a, b = int(1.0 * sr), int(1.6 * sr)
    right[a:b] += np.random.default_rng(seed + 1).standard_normal(b - a) * 0.2 * np.hanning(b - a)
    return np.stack([left, _fade(right, sr)], axis=1).astype(np.float32)


def on_16bit_grid(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x * 32767), -32768, 32767).astype(np.int16)


def stereo44k_to_24k(tmp: Path) -> np.ndarray:
    """The user path: a 44.1 kHz stereo float WAV, read + mixed to mono, resampled to 24 kHz."""
    import soundfile as sf

    from qwen3tts_cli.io.resample import load_audio, resample

    path = tmp / "stereo44k.wav"
    sf.write(str(path), stereo_source(), SR_STEREO, subtype="FLOAT")
    mono, sr = load_audio(path)
    return resample(mono, sr, SR)


def make_signals(tmp: Path) -> dict[str, np.ndarray]:
    """Stored form: int16 for the synthetic signals (read as x / 32768), float32 for stereo44k."""
    sig: dict[str, np.ndarray] = {name: on_16bit_grid(fn()) for name, fn in
                                  (("chirp", chirp), ("tones_noise", tones_noise), ("voice", voice), ("short", short))}
    sig["stereo44k"] = stereo44k_to_24k(tmp)
    return sig


def as_float(x: np.ndarray) -> np.ndarray:
    return (x.astype(np.float32) / np.float32(32768)) if x.dtype == np.int16 else x.astype(np.float32)


def check_cases(e2e: dict, work: Path) -> str | None:
    """Our tokenizer (both split regexes) must give the prompt ids the reference used."""
    from qwen3tts_cli.engine.prompt import assistant_text, ref_text_template
    from qwen3tts_cli.text.tokenizer import TextTokenizer

    for c in CASES:
        key = f"clone/{c['name']}"
        frames, wav = e2e[f"{key}/codes"].shape[0], e2e[f"{key}/wav"]
        if frames > c["max_new_tokens"] - 1:
            return f"{c['name']}: {frames} frames for max_new_tokens={c['max_new_tokens']}"
        # ICL's proportional cut may leave one sample of the reference part.
        if wav.ndim != 1 or not 0 <= len(wav) - frames * 1920 <= 1:
            return f"{c['name']}: waveform {wav.shape} for {frames} frames"
        pairs = [(assistant_text(c["text"]), e2e[f"{key}/target_ids"])]
        if c["ref_text"]:
            pairs.append((ref_text_template(c["ref_text"]), e2e[f"{key}/ref_ids"]))
        ckpt = work / f"{c['model']}-seed{MODELS[c['model']]}"
        for text, ids in pairs:
            for regex in ("qwen2", "local-path"):
                if TextTokenizer.from_folder(ckpt, regex).encode(text) != ids.tolist():
                    return f"{c['name']}: {regex} tokenization of {text!r} differs from the reference's"
    return None


# ---------------------------------------------------------------------------------------------

def main(argv=None) -> int:
    from refenv import add_golden_options, reference_python  # scripts/ is on sys.path when run as a script

    ap = argparse.ArgumentParser(description="Regenerate the voice-clone front-end goldens with the "
                                             "official reference.")
    add_golden_options(ap, DEFAULT_OUT)
    args = ap.parse_args(argv)

    from qwen3tts_cli.io.checkpoint import build_checkpoint

    python = reference_python(args.refvenv)

    work_ctx = tempfile.TemporaryDirectory(prefix="clone-goldens-") if args.keep is None else None
    work = Path(work_ctx.name) if work_ctx else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        signals = make_signals(work)
        sig_in = work / "signals24k.npz"
        np.savez(sig_in, **{k: as_float(v) for k, v in signals.items()})
        cases_json = work / "clone_cases.json"
        cases_json.write_text(json.dumps(CASES, ensure_ascii=False, indent=1), encoding="utf-8")
        cmd = [python, str(DRIVER), str(sig_in), str(work / "ref.npz"), "--cases", str(cases_json)]
        manifests = {}
        for model in MODELS:
            ckpt = work / f"{model}-seed{MODELS[model]}"
            if not (ckpt / ".qwen3tts-manifest.json").is_file():
                build_checkpoint(model, "tiny", MODELS[model], ckpt)
            manifests[model] = json.loads((ckpt / ".qwen3tts-manifest.json").read_text())
            cmd += ["--model", f"{model}={ckpt}"]
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        print("+ " + " ".join(shlex.quote(c) for c in cmd), file=sys.stderr)
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(proc.stderr[-4000:], file=sys.stderr)
            print(f"error: reference driver failed (exit {proc.returncode})", file=sys.stderr)
            return 1
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        with np.load(work / "ref.npz") as z:
            ref = {k: z[k] for k in z.files}
        for model in MODELS:
            for name, x in signals.items():
                codes = ref[f"{model}/codes/{name}"]
                want = (-(-len(x) // 1920), 16)
                if codes.shape != want:
                    print(f"error: {model}/{name}: reference gave codes {codes.shape}, expected {want}",
                          file=sys.stderr)
                    return 1
        e2e = {k: v for k, v in ref.items() if k.startswith("clone/")}
        ref = {k: v for k, v in ref.items() if not k.startswith("clone/")}
        problem = check_cases(e2e, work)
        if problem:
            print(f"error: {problem}", file=sys.stderr)
            return 1
        args.out.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(args.out / "signals.npz", **signals)
        np.savez_compressed(args.out / "reference.npz",
                            **{k: (v.astype(np.int16) if "/codes/" in k else v.astype(np.float32))
                               for k, v in ref.items()})
        np.savez_compressed(args.out / "e2e.npz",
                            **{k: (v.astype(np.int16) if k.endswith("/codes") else v)
                               for k, v in e2e.items() if not k.endswith("_ids")})
        meta = {
            "what": "official codec-encoder codes (speech_tokenizer.encode), the RVQ input latent, "
                    "mel_spectrogram and extract_speaker_embedding (float32, CPU) on tiny random Base "
                    "checkpoints; librosa.filters.mel(sr=24000, n_fft=1024, n_mels=128, fmin=0, fmax=12000)",
            "command": "python scripts/goldens_clone.py " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:])),
            "driver": "scripts/reference_clone_driver.py",
            "checkpoints": {m: {"seed": MODELS[m], "size": "tiny",
                                "model.safetensors sha256": manifests[m]["files"]["model.safetensors"]["sha256"],
                                "speech_tokenizer/model.safetensors sha256":
                                    manifests[m]["files"]["speech_tokenizer/model.safetensors"]["sha256"]}
                            for m in MODELS},
            "signals": {k: {"samples": int(len(v)), "stored_as": str(v.dtype),
                            "recipe": "scripts/goldens_clone.py:" + ("stereo44k_to_24k" if k == "stereo44k" else k)}
                        for k, v in signals.items()},
            "reference": info,
            "clone_cases": [dict(c, frames=int(e2e[f"clone/{c['name']}/codes"].shape[0]),
                                 eos=bool(e2e[f"clone/{c['name']}/codes"].shape[0] < c["max_new_tokens"] - 1),
                                 greedy=True, dtype="float32") for c in CASES],
            "driver_s": round(time.perf_counter() - t0, 2),
        }
        (args.out / "meta.json").write_text(json.dumps(meta, indent=2, ensure_ascii=False) + "\n")
    finally:
        if work_ctx is not None:
            work_ctx.cleanup()
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
