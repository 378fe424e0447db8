"""Faster bias-free linear layers for CPU decoding, swapped in after the official weights load.

At batch 1 every talker / code-predictor step is a chain of matrix-vector products, so speed is
weight bytes read per second. On CPU two things move that number:

* ``PackedLinear``: the same fp32 (or bf16) weights, multiplied through oneDNN's linear primitive
  instead of ATen's default GEMM. For one row of activations the default path streams the weight at
  about half the machine's read bandwidth; oneDNN's GEMV gets close to it. Same arithmetic, only a
  different summation order (fp32 logits move by ~1e-6 relative; greedy codes do not change).
* ``Int8Linear``: opt-in weight-only int8 with one fp scale per output channel (symmetric,
  round-to-nearest), run with bf16 activations through ATen's int8-weight GEMV: a quarter of the
  fp32 bytes. Output heads keep float weights. Its accuracy cost is measured in
  docs/benchmarks.md.
* ``W8A8Linear``: the same int8 weights with activations quantized on the fly, multiplied in
  integers. Also quantizes the code predictor's heads.

Both quantized modes fuse q/k/v and gate/up into one product each (fewer small calls per pass);
so does a half-precision model on CUDA (``fuse_float_projections``).

Only bias-free ``nn.Linear`` modules are replaced: a Linear with a bias stays one fused
``F.linear`` (reference-architecture.md §9.4). Module names and the float ``weight`` parameter of
``PackedLinear`` are unchanged, so state dicts and parity tests see the same model.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import nn

from .layers import Attention, SwiGLU

QUANTIZATIONS = ("int8", "w8a8")
# Below this many weights oneDNN's per-call threading costs more than the product itself.
MIN_PACKED_ELEMENTS = 1 << 20


@functools.lru_cache(maxsize=None)
def _onednn_linear_available() -> bool:
    try:
        op = torch.ops.mkldnn._linear_pointwise
        x = torch.ones(1, 4)
        return bool(torch.equal(op(x, torch.ones(2, 4), None, "none", [], ""), F.linear(x, torch.ones(2, 4))))
    except (AttributeError, RuntimeError):
        return False


def cpu_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               onednn: bool = True) -> torch.Tensor:
    """``F.linear(x, weight, bias)``, through oneDNN's linear primitive for fp32 on CPU (unless
    ``onednn`` is False: RuntimeSettings.cpu_kernels, QWEN3TTS_CPU_KERNELS=0).

    For few rows of ``x`` ATen's GEMM reads the weight at about half the machine's bandwidth, and
    for a conv with few output samples ATen/oneDNN convolution is slower still; same arithmetic,
    another summation order (fp32 rounding). ``weight`` may be a transposed view (no copy)."""
    if onednn and x.device.type == "cpu" and x.dtype == torch.float32 and _onednn_linear_available():
        return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")
    return F.linear(x, weight, bias)


def _int8_gemv_available() -> bool:
    try:
        w = torch.ones(8, 32, dtype=torch.int8)
        y = torch.ops.aten._weight_int8pack_mm(torch.ones(1, 32, dtype=torch.bfloat16), w,
                                               torch.ones(8, dtype=torch.bfloat16))
        return bool((y == 32).all())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


class PackedLinear(nn.Linear):
    """nn.Linear (no bias) whose product runs through oneDNN's linear primitive (CPU only); with
    ``pack_rows(n)``, products of 2..n rows run through MKL's packed GEMM instead (see
    ``pack_for_rows``)."""

    packed: torch.Tensor | None = None
    packed_rows = 0

    def pack_rows(self, rows: int) -> None:
        self.packed = torch.ops.mkl._mkl_reorder_linear_weight(self.weight.detach(), rows)
        self.packed_rows = rows

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.numel() // x.shape[-1]
        if 1 < n <= self.packed_rows and x.dtype == torch.float32:
            flat = x.reshape(n, x.shape[-1])
            if n < self.packed_rows:  # the packed GEMM is for exactly packed_rows rows
                flat = F.pad(flat, (0, 0, 0, self.packed_rows - n))
            y = torch.ops.mkl._mkl_linear(flat, self.packed, self.weight, None, self.packed_rows)
            return y[:n].reshape(*x.shape[:-1], y.shape[-1])
        return torch.ops.mkldnn._linear_pointwise(x, self.weight, None, "none", [], "")


class Int8Linear(nn.Module):
    """y = (x @ q.T) * scale: int8 weights [out, in], one scale per output row, bf16 activations."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        w = weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        # Symmetric per-channel scale; an all-zero row keeps scale 1 (its codes are all 0 anyway).
        scale = w.abs().amax(dim=1) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).to(torch.bfloat16)
        # Quantize with the scale the kernel will use (bf16), so every weight is within half a step.
        q = torch.round(w / scale.float()[:, None]).clamp_(-127, 127).to(torch.int8)
        self.register_buffer("qweight", q.contiguous())
        self.register_buffer("scale", scale)

    def dequantized(self) -> torch.Tensor:
        return self.qweight.float() * self.scale.float()[:, None]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        y = torch.ops.aten._weight_int8pack_mm(x.reshape(-1, shape[-1]).to(torch.bfloat16), self.qweight,
                                               self.scale)
        return y.view(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, int8 per-channel"


def _has_vnni() -> bool:
    try:
        flags = next((ln for ln in open("/proc/cpuinfo") if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_vnni" in flags or "avx_vnni" in flags


class W8A8Linear(nn.Module):
    """y = dequant(quant(x) @ q.T): int8 weights with per-channel scales, activations quantized to
    8 bits per call (one scale per tensor, dynamic), int32 accumulation; fp32 in and out.

    Reads the same int8 bytes as ``Int8Linear`` but multiplies in integers (VNNI), which on CPU
    is about 2.5x faster than dequantizing weights to bf16; the activation rounding adds error
    (measured in docs/benchmarks.md). Uses ATen's quantized dynamic linear (fbgemm / oneDNN)."""

    def __init__(self, weight: torch.Tensor):
        import warnings

        super().__init__()
        w = weight.detach().float()
        self.in_features, self.out_features = w.shape[1], w.shape[0]
        scale = w.abs().amax(dim=1) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale)).double()
        with warnings.catch_warnings():  # quantized-tensor constructors warn about a future API change
            warnings.simplefilter("ignore")
            q = torch.quantize_per_channel(w, scale, torch.zeros_like(scale, dtype=torch.long), 0, torch.qint8)
            self._packed = torch.ops.quantized.linear_prepack(q, None)
        self.nbytes = w.numel() + 8 * w.shape[0]
        # Without VNNI the u8 x s8 products are summed in saturating int16 pairs: use 7-bit activations.
        self.reduce_range = not _has_vnni()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ops.quantized.linear_dynamic(x.float(), self._packed, self.reduce_range).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, w8a8 dynamic"


def _w8a8_available() -> bool:
    try:
        return bool(W8A8Linear(torch.ones(4, 8))(torch.ones(1, 8)).sum() > 0)
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _bias_free_linears(module: nn.Module):
    for name, child in list(module.named_modules()):
        if name and type(child) is nn.Linear and child.bias is None:  # children only: a root cannot be replaced
            yield name, child


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, new)


def _keeps_float(name: str, quantize: str) -> bool:
    # The talker's head stays in float: its logits pick the first code and end of speech, it is
    # read once a frame, and callers read its .weight for the model's device and dtype. w8a8 also
    # quantizes the code predictor's 15 heads (in fp32, ~5 of its ~64 ms a frame; accuracy cost
    # measured in docs/benchmarks.md); weight-only int8 keeps them.
    leaf = name.split(".")
    return "codec_head" in leaf or ("lm_head" in leaf and quantize != "w8a8")


# Projections that read the same input: (module type, parts, fused attribute).
_FUSIONS = ((Attention, ("q_proj", "k_proj", "v_proj"), "qkv_proj"),
            (SwiGLU, ("gate_proj", "up_proj"), "gate_up_proj"))


def _fuse_projections(module: nn.Module, kind, device_type: str = "cpu") -> int:
    """Replace q/k/v and gate/up by one product each over the concatenated weights (``kind`` makes
    the module from that weight); only where all parts are bias-free ``nn.Linear`` on ``device_type``.

    At batch 1 the code predictor's products are small enough that the per-call cost matters; one
    call instead of three (or two) reads the same bytes. Quantized, results do not change: weight
    scales are per output row, and the activation scale is per tensor of the same input. The parts
    are dropped (set to None) so only the fused weights stay in memory.
    """
    n = 0
    for m in module.modules():
        for cls, parts, fused in _FUSIONS:
            lins = [getattr(m, p, None) for p in parts] if isinstance(m, cls) else []
            if lins and all(type(x) is nn.Linear and x.bias is None and x.weight.device.type == device_type
                            for x in lins):
                weight = torch.cat([x.weight.detach() for x in lins])
                for p in parts:
                    setattr(m, p, None)  # before the next layer's cat: one layer's copy at a time
                setattr(m, fused, kind(weight))
                n += 1
    return n


def fuse_float_projections(module: nn.Module) -> int:
    """q/k/v and gate/up of a float model on an accelerator as one ``nn.Linear`` each (same dtype
    and device). On CUDA a frame then launches 3 products fewer per layer (309 fewer over the
    talker step and 15 code-predictor passes of 0.6B/1.7B), each reading the same bytes; graph
    replays cost a few microseconds a node, and a wider GEMV keeps more of the memory busy."""
    def plain(weight: torch.Tensor) -> nn.Linear:
        with torch.device("meta"):
            lin = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
        lin.weight = nn.Parameter(weight, requires_grad=False)
        return lin

    device_type = next(module.parameters()).device.type
    return _fuse_projections(module, plain, device_type)


def accelerate_cpu(module: nn.Module, quantize: str | None = None) -> int:
    """Swap the bias-free Linears of a loaded CPU model in place; returns how many were swapped.

    ``quantize=None`` keeps the weights (fp32 or bf16) and only changes the kernel; ``"int8"``
    (model in bf16) and ``"w8a8"`` (model in fp32) replace each weight but the output heads' (w8a8:
    but the talker's head) by its int8 per-channel quantization, with q/k/v and gate/up fused
    (``_fuse_projections``).
    Silently does nothing where the kernels are missing from this torch build.
    """
    if quantize not in (None, *QUANTIZATIONS):
        raise ValueError(f"unknown quantization {quantize!r}")
    if quantize is None and not _onednn_linear_available():
        return 0
    if quantize == "int8" and not _int8_gemv_available():
        raise RuntimeError("this torch build has no int8 weight-only GEMV (aten::_weight_int8pack_mm)")
    if quantize == "w8a8" and not _w8a8_available():
        raise RuntimeError("this torch build has no quantized dynamic linear (quantized::linear_dynamic)")
    kind = {"int8": Int8Linear, "w8a8": W8A8Linear}.get(quantize)
    n = _fuse_projections(module, kind) if kind is not None else 0
    for name, lin in _bias_free_linears(module):
        if lin.weight.device.type != "cpu":
            continue
        if kind is not None and not _keeps_float(name, quantize):
            _replace(module, name, kind(lin.weight))
        elif lin.weight.numel() >= MIN_PACKED_ELEMENTS:
            # A class swap keeps the very same Parameter (and its name) in the module.
            lin.__class__ = PackedLinear
        else:
            continue
        n += 1
    return n


@functools.lru_cache(maxsize=None)
def _mkl_packed_available() -> bool:
    try:
        w = torch.ones(4, 8)
        p = torch.ops.mkl._mkl_reorder_linear_weight(w, 2)
        return bool((torch.ops.mkl._mkl_linear(torch.ones(2, 8), p, w, None, 2) == 8).all())
    except (AttributeError, RuntimeError):
        return False


def pack_for_rows(module: nn.Module, rows: int) -> int:
    """Give every fp32 PackedLinear of ``module`` an MKL-packed copy of its weight for products of
    up to ``rows`` rows (a batch of rows decoding together: continuous batching); returns how many.

    Why: on this CPU oneDNN's product with the weight in plain layout costs 1.5-1.8x as much for 2
    to 16 rows as for one, and ATen's about twice as much for 4 rows, so a batched frame saved
    little over frames one after another. MKL's packed GEMM for a fixed row count costs about the
    same for 1 to 8 rows (1024x3072 fp32: 0.27 ms for 8 rows, against 0.43 ms oneDNN and 0.46 ms
    ATen for 4; docs/benchmarks.md). Fewer rows are padded to ``rows``. The packed copy takes
    about 1.7x the weight's memory; a single row keeps the oneDNN path."""
    if rows < 2 or not _mkl_packed_available():
        return 0
    n = 0
    for m in module.modules():
        if isinstance(m, PackedLinear) and m.weight.dtype == torch.float32 and m.packed_rows != rows:
            m.pack_rows(rows)
            n += 1
    return n


def weight_bytes(module: nn.Module) -> int:
    """Bytes of every parameter and int8/scale buffer (what a full pass over the module reads)."""
    n = sum(p.numel() * p.element_size() for p in module.parameters())
    for m in module.modules():
        if isinstance(m, Int8Linear):
            n += m.qweight.numel() + m.scale.numel() * m.scale.element_size()
        elif isinstance(m, W8A8Linear):
            n += m.nbytes
    return n
