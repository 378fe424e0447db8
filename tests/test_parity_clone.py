"""Voice clone end to end against the official wrapper: greedy fp32 codes and waveform.

tests/fixtures/goldens/clone/e2e.npz (scripts/goldens_clone.py) holds what qwen-tts 0.1.1's
generate_voice_clone returned on the same tiny Base checkpoints, x-vector-only and in-context, with
the reference audio given as (24 kHz samples, 24000) so that its resampler is not in play.
"""

import numpy as np
import pytest
import torch
from clone_goldens import GOLDENS, META, golden_checkpoint, load_goldens

MAX_ABS = 1e-4
MIN_SNR_DB = 60.0
CASES = {c["name"]: c for c in META["clone_cases"]}


def snr_db(ref, ours):
    noise = float(((ours.astype(np.float64) - ref) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / noise)


@pytest.fixture(scope="module")
def e2e():
    with np.load(GOLDENS / "e2e.npz") as z:
        return {k: z[k] for k in z.files}


@pytest.fixture(scope="module")
def signals():
    return load_goldens()[0]


@pytest.fixture(scope="module")
def engines(tiny_checkpoint):
    from qwen3tts_cli.engine import load_tts

    cache = {}

    def get(model):
        if model not in cache:
            cache[model] = load_tts(golden_checkpoint(tiny_checkpoint, model, "model.safetensors"),
                                    device="cpu", dtype=torch.float32)
        return cache[model]

    return get


def test_cases_cover_both_models_and_modes(e2e):
    assert {(c["model"], c["xvector_only"]) for c in CASES.values()} == {
        (m, x) for m in ("0.6B-Base", "1.7B-Base") for x in (True, False)}
    assert (GOLDENS / "e2e.npz").stat().st_size < 300_000
    for name, c in CASES.items():
        codes, wav = e2e[f"clone/{name}/codes"], e2e[f"clone/{name}/wav"]
        assert c["greedy"] and c["dtype"] == "float32"
        assert codes.shape == (c["frames"], 16) and c["frames"] >= 1
        assert wav.dtype == np.float32 and wav.shape == (c["frames"] * 1920,)
        assert np.abs(wav).max() > 0.1  # a real signal, not silence matching silence


@pytest.mark.reference
@pytest.mark.parametrize("name", sorted(CASES))
def test_voice_clone_matches_reference(name, engines, e2e, signals):
    c = CASES[name]
    tts = engines(c["model"])
    voice = tts.create_voice((signals[c["signal"]], 24000), ref_text=c["ref_text"], xvector_only=c["xvector_only"])
    assert voice.mode == ("xvector" if c["xvector_only"] else "icl")
    result = tts.synthesize(c["text"], language=c["language"], voice=voice, greedy=True, max_frames=c["frames"])
    ref_codes = torch.from_numpy(e2e[f"clone/{name}/codes"].astype(np.int64))
    ref_wav = e2e[f"clone/{name}/wav"]
    assert result.stop_reason == ("eos" if c["eos"] else "max_frames")
    assert torch.equal(result.codes, ref_codes)
    assert result.audio.shape == ref_wav.shape
    assert np.abs(result.audio - ref_wav).max() <= MAX_ABS
    assert snr_db(ref_wav, result.audio) >= MIN_SNR_DB
    if not c["xvector_only"]:
        # The generated part alone decodes differently: the reference decodes with the reference
        # codes in front (the chunk grid and the causal context start there).
        assert not np.allclose(tts.decode(result.codes), ref_wav, atol=1e-3)
