"""Greedy fp32 generation on tiny checkpoints equals the official reference, code for code.

The goldens (tests/fixtures/goldens/generator, made by scripts/goldens_generator.py) come from
qwen-tts 0.1.1 on the same tiny checkpoints (built here by the tiny_checkpoint fixture with the
same model and seed). The reference loaded them from a local folder and so tokenized with the
"local-path" split regex; every parity case uses a text on which it and our default Qwen2 regex
give the same ids (recorded as "regexes_agree" and asserted below). The reference is not needed.
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "generator"
LOGIT_ATOL = 1e-4


def parity_cases(size="tiny"):
    out = []
    for p in sorted(GOLDENS.glob("*.json")):
        g = json.loads(p.read_text(encoding="utf-8"))
        if g["parity"] and g["size"] == size:
            out.append(p.stem)
    return out


def test_parity_goldens_present():
    names = parity_cases()
    assert len(names) >= 10
    models = {json.loads((GOLDENS / f"{n}.json").read_text())["model"] for n in names}
    assert models == {"0.6B-CustomVoice", "1.7B-CustomVoice", "1.7B-VoiceDesign"}


@pytest.fixture(scope="module")
def engines(tiny_checkpoint, full_checkpoint):
    from qwen3tts_cli.engine import load_tts

    cache = {}

    def get(model, seed, size="tiny"):
        if (model, seed, size) not in cache:
            folder = (tiny_checkpoint if size == "tiny" else full_checkpoint)(model, seed)
            cache[model, seed, size] = load_tts(folder, device="cpu", dtype=torch.float32)
        return cache[model, seed, size]

    return get


@pytest.mark.reference
@pytest.mark.parametrize("name", parity_cases())
def test_generation_matches_reference(name, engines):
    check_case(name, engines)


@pytest.mark.slow
@pytest.mark.reference
@pytest.mark.parametrize("name", parity_cases("full"))
def test_full_size_generation_matches_reference(name, engines):
    # Published shapes, random weights: builds a 2.5 GB checkpoint (shared with test_checkpoint).
    check_case(name, engines)


def check_case(name, engines):
    g = json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8"))
    ref = np.load(GOLDENS / f"{name}.npz")
    assert g["regexes_agree"] and g["dtype"] == "float32"
    # The reference with max_new_tokens=N returns N-1 frames when it does not stop on EOS.
    assert g["eos"] or g["frames"] == g["reference_max_new_tokens"] - 1
    tts = engines(g["model"], g["seed"], g["size"])
    r = g["request"]
    result = tts.generate_codes(r["text"], speaker=r["speaker"], language=r["language"], instruct=r["instruct"],
                                non_streaming_mode=r["non_streaming_mode"], greedy=True,
                                max_frames=g["compare_max_frames"], return_logits=True)

    assert result.stop_reason == ("eos" if g["eos"] else "max_frames")
    codes = result.codes.cpu().numpy()
    assert codes.dtype == np.int64 and codes.shape == ref["codes"].shape
    mismatch = np.argwhere(codes != ref["codes"])
    assert mismatch.size == 0, f"first differing (frame, group): {mismatch[0].tolist()}"

    steps = g["talker_logit_steps"]
    ours = result.talker_logits[:steps].float().cpu().numpy()
    assert ours.shape == ref["talker_logits"].shape
    assert np.abs(ours - ref["talker_logits"]).max() <= LOGIT_ATOL
    if g["cp_logits_frame0"]:
        assert result.cp_logits is not None, "engine did not return code-predictor logits"
        cp0 = result.cp_logits[0].float().cpu().numpy()
        assert cp0.shape == ref["cp_logits"].shape
        assert np.abs(cp0 - ref["cp_logits"]).max() <= LOGIT_ATOL
    assert bool(result.warnings) == g["instruct_dropped"]
