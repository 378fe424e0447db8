"""The voice-clone goldens (scripts/goldens_clone.py), shared by the codec-encoder and speaker tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from qwen3tts_cli.io.manifest import MANIFEST_NAME

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "clone"
META = json.loads((GOLDENS / "meta.json").read_text())
MODELS = sorted(META["checkpoints"])


def as_float(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float32) / np.float32(32768) if x.dtype == np.int16 else x.astype(np.float32)


def load_goldens() -> tuple[dict, dict]:
    """(signals as float32, reference outputs)."""
    with np.load(GOLDENS / "signals.npz") as s, np.load(GOLDENS / "reference.npz") as r:
        return {k: as_float(s[k]) for k in s.files}, {k: r[k] for k in r.files}


def golden_checkpoint(tiny_checkpoint, model: str, weights: str) -> Path:
    """The tiny checkpoint the goldens were made on; ``weights`` names the file they depend on."""
    info = META["checkpoints"][model]
    folder = tiny_checkpoint(model, info["seed"])
    manifest = json.loads((folder / MANIFEST_NAME).read_text())
    # The goldens only mean something for the very same random weights.
    assert manifest["files"][weights]["sha256"] == info[f"{weights} sha256"], \
        "checkpoint builder changed: regenerate goldens"
    return folder
