#!/usr/bin/env python3
"""Drive the official qwen-tts reference on local checkpoints and record what parity tests need.

Runs in the reference's own virtual environment (not the project's): it imports qwen_tts and
transformers. The reference code is used unmodified; everything is captured from the outside
with forward hooks, plus a pass-through wrapper around the speech tokenizer's decode call on the
loaded instance (the only place the generated codes are visible).

Usage:
    HF_HUB_OFFLINE=1 REFVENV/bin/python scripts/reference_driver.py CASES.json OUT_DIR

CASES.json is a list of objects: name, checkpoint (folder), method ("custom_voice" |
"voice_design" | "voice_clone"), text, speaker, language, instruct, non_streaming_mode
(true/false/null for the method's default), max_new_tokens; a voice clone also has ref_audio (a
.npy of float32 samples at 24 kHz), ref_text and xvector_only. Generation is greedy
(do_sample=False, subtalker_dosample=False).

For each case OUT_DIR gets <name>.json (inputs, prompt ids, text-embedding lookups in call order,
split regex, versions, frame count) and <name>.npz (codes [T,16] int64; talker_logits
[steps,vocab] and cp_logits [frames,groups-1,2048] as raw float32 head outputs; prefill_embeds
[L,H], trailing [m,H] and pad [H] as fed to the talker's first forward; wav [samples] float32, the
waveform the wrapper returned, at the json's sample_rate).
"""

from __future__ import annotations

import json
import os
import sys
from importlib import metadata

from refenv import import_qwen_tts

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


def versions() -> dict:
    out = {}
    for pkg in ("qwen-tts", "transformers", "torch", "tokenizers", "accelerate", "numpy"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = None
    return out


class Capture:
    """Hooks on the loaded model; reset() before each case."""

    def __init__(self, model):
        import torch

        self.torch = torch
        self.model = model
        talker = model.talker
        self.handles = [
            talker.codec_head.register_forward_hook(self._on_codec_head),
            talker.get_text_embeddings().register_forward_hook(self._on_text_embedding),
            talker.register_forward_pre_hook(self._on_talker, with_kwargs=True),
        ]
        for g, head in enumerate(talker.code_predictor.lm_head):
            self.handles.append(head.register_forward_hook(self._on_cp_head(g)))
        st = model.speech_tokenizer
        self._decode = st.decode

        def decode(encoded, *a, **k):
            self.codes = [e["audio_codes"].detach().cpu().numpy().copy() for e in encoded]
            return self._decode(encoded, *a, **k)

        st.decode = decode
        self.reset()

    def reset(self):
        self.talker_logits, self.cp_logits, self.text_lookups = [], [], []
        self.prefill = None
        self.codes = None

    def _on_codec_head(self, _m, _inp, out):
        self.talker_logits.append(out[0, -1].detach().float().cpu().numpy().copy())

    def _on_text_embedding(self, _m, inp, _out):
        self.text_lookups.append(inp[0].detach().cpu().reshape(-1).tolist())

    def _on_talker(self, _m, _args, kwargs):
        if self.prefill is None and kwargs.get("inputs_embeds") is not None:
            f = lambda t: t.detach().float().cpu().numpy().copy()  # noqa: E731
            self.prefill = dict(prefill_embeds=f(kwargs["inputs_embeds"][0]),
                                trailing=f(kwargs["trailing_text_hidden"][0]),
                                pad=f(kwargs["tts_pad_embed"].reshape(-1)))

    def _on_cp_head(self, g):
        def hook(_m, _inp, out):
            self.cp_logits.append((g, out[0, -1].detach().float().cpu().numpy().copy()))
        return hook

    def cp_frames(self, groups: int):
        import numpy as np

        frames, cur = [], []
        for g, logits in self.cp_logits:
            if g == 0 and cur:
                frames.append(cur)
                cur = []
            cur.append(logits)
        if cur:
            frames.append(cur)
        frames = [np.stack(f) for f in frames if len(f) == groups - 1]
        return np.stack(frames) if frames else np.zeros((0, groups - 1, 0), np.float32)


def run(cases: list[dict], out_dir: str) -> None:
    import numpy as np
    import torch

    import_qwen_tts()
    from qwen_tts import Qwen3TTSModel

    torch.manual_seed(0)
    os.makedirs(out_dir, exist_ok=True)
    loaded: dict[str, tuple] = {}
    for case in cases:
        ckpt = case["checkpoint"]
        if ckpt not in loaded:
            tts = Qwen3TTSModel.from_pretrained(ckpt, dtype=torch.float32)
            loaded[ckpt] = (tts, Capture(tts.model))
        tts, cap = loaded[ckpt]
        cap.reset()
        kw = dict(max_new_tokens=int(case["max_new_tokens"]), do_sample=False, subtalker_dosample=False)
        if case.get("non_streaming_mode") is not None:
            kw["non_streaming_mode"] = bool(case["non_streaming_mode"])
        language = case.get("language") or "auto"
        tokenize = lambda s: tts._tokenize_texts([s])[0][0].tolist()  # noqa: E731
        record = dict(case, versions=versions(), dtype="float32", attn=tts.model.config._attn_implementation)
        record["target_ids"] = tokenize(tts._build_assistant_text(case["text"]))
        if case["method"] == "custom_voice":
            if case.get("instruct"):
                record["instruct_ids"] = tokenize(tts._build_instruct_text(case["instruct"]))
            wavs, sr = tts.generate_custom_voice(text=case["text"], speaker=case["speaker"], language=language,
                                                 instruct=case.get("instruct"), **kw)
        elif case["method"] == "voice_design":
            record["instruct_ids"] = tokenize(tts._build_instruct_text(case["instruct"]))
            wavs, sr = tts.generate_voice_design(text=case["text"], instruct=case["instruct"], language=language,
                                                 **kw)
        elif case["method"] == "voice_clone":
            ref_wav = np.load(case["ref_audio"]).astype(np.float32)
            if case.get("ref_text"):
                record["ref_ids"] = tokenize(tts._build_ref_text(case["ref_text"]))
            wavs, sr = tts.generate_voice_clone(text=case["text"], language=language, ref_audio=(ref_wav, 24000),
                                                ref_text=case.get("ref_text"),
                                                x_vector_only_mode=bool(case.get("xvector_only")), **kw)
            if not case.get("xvector_only"):
                # ICL decodes the reference codes in front of the generated ones: drop them.
                ref_frames = int(tts.model.speech_tokenizer.encode(ref_wav, sr=24000).audio_codes[0].shape[0])
                cap.codes = [cap.codes[0][ref_frames:]]
        else:
            raise SystemExit(f"{case['name']}: unsupported method {case['method']}")
        pre = json.loads(tts.processor.tokenizer.backend_tokenizer.to_str())["pre_tokenizer"]
        record["split_regex"] = pre["pretokenizers"][0]["pattern"]["Regex"]
        record["text_lookups"] = cap.text_lookups
        codes = np.asarray(cap.codes[0], dtype=np.int64)
        talker_logits = np.stack(cap.talker_logits).astype(np.float32)
        cp = cap.cp_frames(tts.model.talker.config.num_code_groups).astype(np.float32)
        record.update(frames=int(codes.shape[0]), talker_steps=int(talker_logits.shape[0]),
                      eos=bool(codes.shape[0] < kw["max_new_tokens"] - 1), sample_rate=int(sr))
        np.savez(os.path.join(out_dir, case["name"] + ".npz"), codes=codes, talker_logits=talker_logits,
                 cp_logits=cp, wav=np.asarray(wavs[0], dtype=np.float32), **cap.prefill)
        with open(os.path.join(out_dir, case["name"] + ".json"), "w", encoding="utf-8") as f:
            json.dump(record, f, ensure_ascii=False, indent=1)
        print(f"{case['name']}: {codes.shape[0]} frames, eos={record['eos']}", flush=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        cases = json.load(f)
    run(cases, argv[1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
