"""Runtime switches, read from the environment once when a model loads and then carried by the
loaded objects (``TTS.runtime``, ``CodecDecoder.runtime``), so that one process can hold models
with different settings and nothing below the loader looks at the environment.

    QWEN3TTS_CUDA_GRAPHS=0   eager frame steps and codec pushes on CUDA
    QWEN3TTS_FUSED_OPS=0     op-by-op RMSNorm and separate q/k/v, gate/up products in bf16/fp16 on CUDA
    QWEN3TTS_FLASH_ATTN=0    PyTorch's SDPA instead of flash-attn's KV-cache kernel
    QWEN3TTS_CPU_KERNELS=0   ATen's products instead of oneDNN's on CPU

Each is on unless set to 0, false, no or off.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields
from typing import Mapping

ENV_NAMES = {
    "cuda_graphs": "QWEN3TTS_CUDA_GRAPHS",
    "fused_ops": "QWEN3TTS_FUSED_OPS",
    "flash_attn": "QWEN3TTS_FLASH_ATTN",
    "cpu_kernels": "QWEN3TTS_CPU_KERNELS",
}
_OFF = ("0", "false", "no", "off")


@dataclass(frozen=True)
class RuntimeSettings:
    cuda_graphs: bool = True
    fused_ops: bool = True
    flash_attn: bool = True
    cpu_kernels: bool = True

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RuntimeSettings":
        env = os.environ if environ is None else environ
        return cls(**{f.name: env.get(ENV_NAMES[f.name], "1").strip().lower() not in _OFF for f in fields(cls)})
