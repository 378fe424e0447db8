"""The text-feed goldens (scripts/goldens_feed.py): official streaming-layout runs on tiny checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "feed"


def cases() -> list[str]:
    return sorted(p.stem for p in GOLDENS.glob("*.json"))


def load(name: str) -> tuple[dict, dict]:
    g = json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8"))
    with np.load(GOLDENS / f"{name}.npz") as z:
        return g, {k: z[k] for k in z.files}


def scale_eos_row(src: Path, dst: Path, factor: float) -> Path:
    """A copy of checkpoint ``src`` whose talker scores its end token ``factor`` times as high
    (codec_head's EOS row scaled): a random model that ends early, so that an utterance can end
    before its text has been read."""
    import torch
    from safetensors.torch import load_file, save_file

    shutil.copytree(src, dst)
    weights = load_file(dst / "model.safetensors")
    eos = json.loads((dst / "config.json").read_text())["talker_config"]["codec_eos_token_id"]
    row = weights["talker.codec_head.weight"][eos]
    weights["talker.codec_head.weight"][eos] = (row.float() * factor).to(row.dtype)
    save_file(weights, dst / "model.safetensors", metadata={"format": "pt"})
    del torch
    return dst
