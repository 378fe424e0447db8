"""Recordings at any rate, mono or stereo, against the official reference: `encode` and voice cloning
read the file, mix it to mono by the mean and resample it with soxr HQ exactly as qwen-tts does
(librosa), so codes and speaker embeddings equal the official ones (goldens:
scripts/goldens_rates.py, on the clips of tests/audio_clips.py)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from audio_clips import write_clips
from typer.testing import CliRunner

from qwen3tts_cli.cli.main import app
from qwen3tts_cli.io.manifest import MANIFEST_NAME

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "rates"
META = json.loads((GOLDENS / "meta.json").read_text())
XVECTOR_ATOL = 1e-4


@pytest.fixture(scope="module")
def reference():
    with np.load(GOLDENS / "reference.npz") as z:
        return {k: z[k].astype(np.int64) if z[k].dtype == np.int16 else z[k] for k in z.files}


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    return write_clips(tmp_path_factory.mktemp("clips"))


@pytest.fixture(scope="module")
def base(tiny_checkpoint):
    folder = tiny_checkpoint(META["model"], META["seed"])
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == META["model.safetensors sha256"], \
        "checkpoint builder changed: regenerate the goldens"
    return folder


@pytest.fixture(scope="module")
def tts(base):
    from qwen3tts_cli.engine import load_tts

    return load_tts(base, dtype="float32")


def test_every_rate_mono_and_stereo():
    assert set(META["clips"]) == {f"{sr}_{c}" for sr in (8000, 16000, 22050, 44100, 48000, 96000)
                                  for c in ("mono", "stereo")}


@pytest.mark.reference
@pytest.mark.parametrize("name", META["clips"])
def test_encode_command_gives_the_official_codes(name, clips, base, reference, tmp_path):
    out = tmp_path / "codes.npy"
    r = CliRunner().invoke(app, ["encode", str(clips[name]), "-m", str(base), "-o", str(out), "--device", "cpu"])
    assert r.exit_code == 0, r.output
    assert np.array_equal(np.load(out), reference[f"encode/{name}"])


@pytest.mark.reference
@pytest.mark.parametrize("name", META["clips"])
def test_clone_prompt_equals_the_official_one(name, clips, tts, reference):
    voice = tts.create_voice(clips[name], ref_text=META["ref_text"])
    assert torch.equal(voice.ref_codes, torch.from_numpy(reference[f"ref_codes/{name}"]))
    assert np.abs(voice.xvector.numpy() - reference[f"xvector/{name}"]).max() <= XVECTOR_ATOL


@pytest.mark.reference
@pytest.mark.parametrize("case", META["clone"], ids=lambda c: c["name"])
def test_icl_clone_from_a_file_gives_the_official_codes(case, clips, tts, reference):
    from qwen3tts_cli.engine import CloneReference

    r = tts.generate_codes(case["text"], language=case["language"], greedy=True, max_frames=case["frames"],
                           voice=CloneReference(clips[case["clip"]], ref_text=META["ref_text"]))
    assert torch.equal(r.codes, torch.from_numpy(reference[f"clone/{case['name']}"]))
