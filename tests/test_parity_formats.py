"""Checkpoints as users bring them, against the official reference: float32 and float16 files, sharded
files with an index, and the official fine-tuning script's layout (goldens: scripts/goldens_formats.py,
qwen-tts 0.1.1 on the same rewritten tiny checkpoints). Greedy fp32 codes must be identical."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3tts_cli.io.checkpoint import rewrite_checkpoint

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "formats"
CASES = sorted(p.stem for p in GOLDENS.glob("*.json"))
LOGIT_ATOL = 1e-4


def golden(name):
    return json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8")), np.load(GOLDENS / f"{name}.npz")


def test_goldens_cover_every_format():
    rewrites = [golden(n)[0]["rewrite"] for n in CASES]
    assert {r.get("dtype") for r in rewrites} >= {"F32", "F16"}
    assert any(r.get("shards", 1) > 1 for r in rewrites) and any(r.get("finetune_speaker") for r in rewrites)


@pytest.fixture(scope="module")
def rewritten(tiny_checkpoint, tmp_path_factory):
    made = {}

    def get(name):
        if name not in made:
            g, _ = golden(name)
            made[name] = rewrite_checkpoint(tiny_checkpoint(g["model"], g["seed"]), tmp_path_factory.mktemp(name) / "m",
                                            seed=g["seed"], **g["rewrite"])
        return made[name]

    return get


@pytest.mark.reference
@pytest.mark.parametrize("name", CASES)
def test_generation_matches_reference(name, rewritten):
    from qwen3tts_cli.engine import load_tts

    g, arrays = golden(name)
    tts = load_tts(rewritten(name), device="cpu", dtype=torch.float32)
    r = tts.generate_codes(g["request"]["text"], speaker=g["request"]["speaker"], language=g["request"]["language"],
                           greedy=True, max_frames=g["frames"], return_logits=True)
    assert torch.equal(r.codes, torch.from_numpy(arrays["codes"])), name
    steps = g["talker_logit_steps"]
    diff = np.abs(r.talker_logits[:steps].numpy() - arrays["talker_logits"]).max()
    assert diff <= LOGIT_ATOL, (name, diff)


def test_finetuned_layout_lists_and_speaks_its_speaker(rewritten):
    from typer.testing import CliRunner

    from qwen3tts_cli.cli.main import app
    from qwen3tts_cli.engine import load_tts

    folder = rewritten("ft06_my_voice")
    config = json.loads((folder / "config.json").read_text())
    assert config["tts_model_type"] == "custom_voice" and "speaker_encoder_config" in config
    tts = load_tts(folder)
    assert tts.model_type == "custom_voice" and tts.speakers == ["my_voice"] and tts.default_speaker == "my_voice"
    runner = CliRunner()
    r = runner.invoke(app, ["synth", "--list-speakers", "-m", str(folder)])
    assert r.exit_code == 0 and r.stdout.startswith("speakers: my_voice\n")
    r = runner.invoke(app, ["synth", "Hello.", "-m", str(folder), "-s", "my_voice", "--greedy", "--max-frames", "3",
                            "--raw", "--device", "cpu", "-q"])
    assert r.exit_code == 0, r.output
    assert len(r.stdout_bytes) == 3 * 1920 * 2
