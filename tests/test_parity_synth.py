"""End to end, text -> waveform, against the official wrapper's greedy fp32 output.

The goldens (tests/fixtures/goldens/synth, made by scripts/goldens_synth.py) hold the waveform that
qwen-tts 0.1.1's generate_custom_voice / generate_voice_design returned on the same tiny checkpoints
(built here by the tiny_checkpoint fixture with the same model and seed).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from qwen3tts_cli.cli.main import app

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "synth"
MAX_ABS = 1e-4
MIN_SNR_DB = 60.0
PCM16_STEP = 1 / 32767

CASES = sorted(p.stem for p in GOLDENS.glob("*.json"))
# The CLI always uses the model's default text mode (non-streaming), like the wrapper's default.
CLI_CASES = [n for n in CASES
             if json.loads((GOLDENS / f"{n}.json").read_text(encoding="utf-8"))["request"]["non_streaming_mode"] is None]


def golden(name):
    return json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8")), np.load(GOLDENS / f"{name}.npz")


def snr_db(ref, ours):
    noise = float(((ours.astype(np.float64) - ref) ** 2).sum())
    return float("inf") if noise == 0 else 10 * np.log10(float((ref.astype(np.float64) ** 2).sum()) / noise)


def test_goldens_present_and_small():
    assert len(CASES) >= 3 and len(CLI_CASES) >= 2
    models = {golden(n)[0]["model"] for n in CASES}
    assert models == {"0.6B-CustomVoice", "1.7B-VoiceDesign"}
    for n in CASES:
        g, ref = golden(n)
        assert g["dtype"] == "float32" and g["greedy"] and g["sample_rate"] == 24000
        assert ref["wav"].dtype == np.float32 and ref["wav"].shape == (g["frames"] * 1920,)
        assert g["eos"] or g["frames"] == g["reference_max_new_tokens"] - 1
        assert (GOLDENS / f"{n}.npz").stat().st_size < 400_000


@pytest.fixture(scope="module")
def engines(tiny_checkpoint):
    from qwen3tts_cli.engine import load_tts

    cache = {}

    def get(model, seed):
        if (model, seed) not in cache:
            cache[model, seed] = load_tts(tiny_checkpoint(model, seed), device="cpu", dtype=torch.float32)
        return cache[model, seed]

    return get


@pytest.mark.reference
@pytest.mark.parametrize("name", CASES)
def test_synthesize_matches_reference_waveform(name, engines):
    g, ref = golden(name)
    tts = engines(g["model"], g["seed"])
    r = g["request"]
    result = tts.synthesize(r["text"], speaker=r["speaker"], language=r["language"], instruct=r["instruct"],
                            non_streaming_mode=r["non_streaming_mode"], greedy=True,
                            max_frames=g["compare_max_frames"])
    assert result.sample_rate == 24000 and result.stop_reason == ("eos" if g["eos"] else "max_frames")
    assert torch.equal(result.codes, torch.from_numpy(ref["codes"]))
    assert result.audio.dtype == np.float32 and result.audio.shape == ref["wav"].shape
    assert np.abs(result.audio - ref["wav"]).max() <= MAX_ABS
    assert snr_db(ref["wav"], result.audio) >= MIN_SNR_DB
    assert np.abs(ref["wav"]).max() > 0.1  # a real signal, not silence matching silence


@pytest.mark.reference
@pytest.mark.parametrize("name", CLI_CASES)
def test_cli_wav_matches_reference_waveform(name, tiny_checkpoint, tmp_path):
    g, ref = golden(name)
    r = g["request"]
    out = tmp_path / "out.wav"
    args = ["synth", r["text"], "-m", str(tiny_checkpoint(g["model"], g["seed"])), "--greedy",
            "--max-frames", str(g["compare_max_frames"]), "--language", r["language"], "-o", str(out),
            "--device", "cpu", "--dtype", "float32"]
    # The CustomVoice cases are spoken by ryan, the default speaker: leave --speaker out for them.
    if r["speaker"] not in (None, "ryan"):
        args += ["--speaker", r["speaker"]]
    if r["instruct"]:
        args += ["--instruct", r["instruct"]]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    info = sf.info(out)
    assert (info.samplerate, info.channels, info.subtype) == (24000, 1, "PCM_16")
    pcm, _ = sf.read(out, dtype="int16")
    wav = pcm.astype(np.float32) / 32767
    assert wav.shape == ref["wav"].shape
    assert np.abs(wav - ref["wav"]).max() <= PCM16_STEP + MAX_ABS
    assert snr_db(ref["wav"], wav) >= 60.0
