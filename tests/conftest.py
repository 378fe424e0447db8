"""Shared fixtures: tiny random checkpoints in the official layout, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3tts_cli.checkpoint import build_checkpoint

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """Factory: ``tiny_checkpoint(model, seed=0) -> Path`` (do not modify the folder it returns)."""
    built: dict[tuple[str, int], Path] = {}

    def make(model: str, seed: int = 0) -> Path:
        key = (model, seed)
        if key not in built:
            built[key] = build_checkpoint(model, "tiny", seed, tmp_path_factory.mktemp(f"tiny-{model}-{seed}"))
        return built[key]

    return make


@pytest.fixture(scope="session")
def full_checkpoint(tmp_path_factory):
    """Factory: ``full_checkpoint(model, seed=0) -> Path`` at the published shapes (GBs: slow tests only)."""
    built: dict[tuple[str, int], Path] = {}

    def make(model: str, seed: int = 0) -> Path:
        key = (model, seed)
        if key not in built:
            built[key] = build_checkpoint(model, "full", seed, tmp_path_factory.mktemp(f"full-{model}-{seed}"))
        return built[key]

    return make
