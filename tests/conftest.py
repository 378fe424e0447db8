"""Shared fixtures: tiny random checkpoints in the official layout, built once per session."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwen3tts_cli.io.checkpoint import build_checkpoint

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


@pytest.fixture(scope="module")
def tiny_tts(tiny_checkpoint):
    """Factory: ``tiny_tts(model) -> TTS``, a tiny checkpoint (seed 0) loaded on the CPU in float32
    once per test module."""
    import torch

    from qwen3tts_cli.engine import load_tts

    cache = {}

    def get(model: str):
        if model not in cache:
            cache[model] = load_tts(tiny_checkpoint(model, 0), device="cpu", dtype=torch.float32)
        return cache[model]

    return get


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


@pytest.fixture
def reuse_loaded_models(request, monkeypatch):
    """CLI tests: every run would load its tiny model again (~1 s of tokenizer setup); reuse them.

    The cache lives for one test unless the module defines ``_loaded_models = {}`` to share it."""
    import qwen3tts_cli.engine as engine

    cache = getattr(request.module, "_loaded_models", None)
    if cache is None:
        cache = {}
    real = engine.load_tts

    def cached(folder, device="cpu", dtype=None):
        key = (str(folder), str(device), str(dtype))
        if key not in cache:
            cache[key] = real(folder, device=device, dtype=dtype)
        return cache[key]

    monkeypatch.setattr(engine, "load_tts", cached)


def interrupt_generation(monkeypatch, at_frame: int, in_call: int = 1) -> list:
    """Ctrl-C (KeyboardInterrupt) while the frame loop makes frame ``at_frame`` of its
    ``in_call``-th run (one run per text chunk); returns the list of runs so far."""
    from qwen3tts_cli.engine import TTS

    real = TTS.generate
    calls: list = []

    def generate(self, rows, settings, **kw):
        calls.append(1)
        call, frames = len(calls), 0
        for b, frame in real(self, rows, settings, **kw):
            if frame is not None:
                frames += 1
                if call == in_call and frames == at_frame:
                    raise KeyboardInterrupt
            yield b, frame

    monkeypatch.setattr(TTS, "generate", generate)
    return calls


class StandInCaptures(list):
    """The functions the stand-in "captured", in order. ``failure = (name, error)``: capturing a
    function whose qualified name contains ``name`` raises ``error`` instead."""

    failure: tuple[str, BaseException] | None = None


@pytest.fixture
def stand_in_capture(monkeypatch):
    """CUDA graphs cannot be captured on a CPU: this stands in for cuda_graphs.capture_graph with
    its contract (a warm-up call, the generators put back and ``before_capture``; a "capture" that
    is undone alike, as a real capture runs nothing) and replays by calling the function again into
    the captured outputs. What it tests is the bookkeeping around captures: the state snapshots
    and restores, the graph keys, and when captures happen. Returns ``install()``, which puts the
    stand-in in place, switches graphs on for any device and returns the StandInCaptures."""
    import torch

    from qwen3tts_cli.model import cuda_graphs

    class Replay:
        def __init__(self, fn, out):
            self.fn, self.out = fn, out

        def replay(self):
            out = self.fn()
            if self.out is not None:
                self.out.copy_(out)

    captured = StandInCaptures()

    def stand_in(fn, pool, generators=(), before_capture=None, device=None):
        if captured.failure is not None and captured.failure[0] in fn.__qualname__:
            raise captured.failure[1]
        states = [g.get_state() for g in generators]

        def undo():
            for g, state in zip(generators, states):
                g.set_state(state)
            if before_capture is not None:
                before_capture()

        fn()
        undo()
        out = fn()
        undo()
        captured.append(fn)
        return Replay(fn, out), out, 0.0

    def install() -> StandInCaptures:
        monkeypatch.setattr(cuda_graphs, "use_cuda_graphs", lambda device, flag=None: flag is not False)
        monkeypatch.setattr(cuda_graphs, "capture_graph", stand_in)
        monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
        return captured

    return install
