#!/usr/bin/env python3
"""Count the operations one graph-captured frame launches, at a model's real shapes, without a GPU.

    python scripts/frame_ops.py [--model 0.6B-CustomVoice] [--greedy]

Builds the talker and code predictor from the model's config on the meta device (no weights, no
memory), runs the frame step that CUDA graphs capture (cuda_graphs.StaticFrameStep: 15 code-predictor
passes with sampling, one talker step) in bf16, and counts the ATen operations that are not views:
each is one kernel (or a few) in the graph, and at batch 1 a CUDA frame costs about its kernel count
times a few microseconds. Prints the count with CUDA's half-precision fused ops (one-kernel RMSNorm,
fused q/k/v and gate/up; layers.fused_ops) and op by op (QWEN3TTS_FUSED_OPS=0), by operation.
Needs the official config.json (../shared/model-metadata, or --config).
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
from pathlib import Path

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from qwen3tts_cli.model import cuda_graphs, layers
from qwen3tts_cli.model.code_predictor import CodePredictor
from qwen3tts_cli.io.config import GenerationConfig, ModelConfig
from qwen3tts_cli.model.linear import fuse_float_projections
from qwen3tts_cli.model.sampling import SamplingSettings
from qwen3tts_cli.model.talker import Talker

METADATA = Path(__file__).resolve().parents[1].parent / "shared" / "model-metadata"
# Operations that only re-describe memory: no kernel.
VIEWS = {"view", "reshape", "_unsafe_view", "slice", "select", "transpose", "unsqueeze", "squeeze", "expand",
         "alias", "split", "split_with_sizes", "chunk", "t", "permute", "as_strided", "detach", "unbind", "narrow"}


class Counter(TorchDispatchMode):
    def __init__(self):
        super().__init__()
        self.ops: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        name = func.overloadpacket.__name__
        if name not in VIEWS:
            self.ops[name] += 1
        return func(*args, **(kwargs or {}))


def count(cfg: ModelConfig, gen: GenerationConfig, fused: bool, greedy: bool) -> collections.Counter:
    meta = torch.device("meta")
    with meta:
        talker = Talker(cfg.talker).to(torch.bfloat16)
        predictor = CodePredictor(cfg.talker).to(torch.bfloat16)
    for net in (talker, predictor):
        if fused:
            fuse_float_projections(net)
        # As build_tts sets them for bf16 on CUDA (the meta device is not CUDA).
        for m in net.modules():
            if isinstance(m, layers.RMSNorm):
                m.fused = fused
    settings = SamplingSettings.resolve(gen, greedy=greedy)
    talker.setup_cache(1, 2 * cuda_graphs.BUCKET, meta, torch.bfloat16)
    predictor.setup_cache(1, meta, torch.bfloat16)
    step = cuda_graphs.StaticFrameStep(talker, predictor, 1, settings, meta, torch.bfloat16, False, False)
    counter = Counter()
    with torch.inference_mode(), counter:
        step._body(cuda_graphs.BUCKET)
    return counter.ops


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="0.6B-CustomVoice")
    ap.add_argument("--config", type=Path, help="folder with config.json and generation_config.json")
    ap.add_argument("--greedy", action="store_true", help="greedy code predictor (default: sampled)")
    a = ap.parse_args(argv)
    folder = a.config or METADATA / f"Qwen3-TTS-12Hz-{a.model}"
    if not (folder / "config.json").is_file():
        print(f"error: no config.json in {folder} (use --config)", file=sys.stderr)
        return 2
    cfg = ModelConfig.from_file(folder / "config.json")
    gen = GenerationConfig.from_file(folder / "generation_config.json")
    result = {}
    for fused in (True, False):
        ops = count(cfg, gen, fused, a.greedy)
        result["fused" if fused else "op_by_op"] = dict(total=sum(ops.values()), **dict(ops.most_common()))
    print(json.dumps(dict(model=a.model, sampling=not a.greedy, **result), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
