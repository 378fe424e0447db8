"""Building blocks shared by the talker, the code predictor and the codec transformer.

Numerics follow the official reference exactly (reference-architecture.md §3.1, §3.2, §9.5-9.8):
RMSNorm statistics in fp32 cast back before the weight multiply, RoPE angles in fp32 with
cos/sin cast to the activation dtype, rotate-half pairing, attention scale 1/sqrt(head_dim) and
the GQA mapping query head h -> kv head h // (heads / kv_heads).

Layout: activations are [B, L, dim]; inside attention heads are [B, heads, L, head_dim].

Half precision on CUDA (``fused_ops``) trades that op-by-op rounding for fewer kernels: RMSNorm
is one kernel, and q/k/v and gate/up one product each (linear.fuse_float_projections).
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


def fused_ops(device: torch.device, dtype: torch.dtype, enabled: bool = True) -> bool:
    """Whether a model in ``dtype`` on ``device`` runs RMSNorm as one kernel and q/k/v, gate/up as
    one product each: on CUDA in fp16/bf16, unless turned off (RuntimeSettings.fused_ops,
    QWEN3TTS_FUSED_OPS=0).

    At batch 1 a CUDA frame is bound by kernel count, not bytes (~400 RMSNorms of 8 kernels each,
    103 layer passes of 3 + 2 projections). ``F.rms_norm`` is one kernel where torch has the fused
    CUDA one (aten::_fused_rms_norm, in releases since mid-2025); older ones decompose it. The
    fused forms round once where the reference rounds after each op (at most an ulp of bf16 apart),
    inside the half-precision mode's own error. fp32 keeps the reference's arithmetic, so that
    greedy codes stay the reference's."""
    return enabled and device.type == "cuda" and dtype in (torch.float16, torch.bfloat16)


def apply_runtime(module: nn.Module, device: torch.device, dtype: torch.dtype, *, fused: bool,
                  flash_attn: bool) -> None:
    """Set the loader's runtime choices on every RMSNorm and Attention below ``module``: decided
    once at load, so that the forward passes read no global state."""
    fuse = fused_ops(device, dtype, fused)
    for m in module.modules():
        if isinstance(m, RMSNorm):
            m.fused = fuse
        elif isinstance(m, Attention):
            m.flash_attn = flash_attn


class RMSNorm(nn.Module):
    fused = False  # one F.rms_norm kernel in half precision on CUDA (``apply_runtime``)

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.dtype == torch.float32 and x.device.type == "cpu") or self.fused:
            # fp32 on CPU: the same arithmetic in one call (bit-identical; ~4.5 us less per call,
            # ~400 calls a frame). Half precision on CUDA: see fused_ops.
            return F.rms_norm(x, self.weight.shape, self.weight, self.eps)
        dtype = x.dtype
        x32 = x.float()
        x32 = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)
        # Cast before the weight multiply: the reference rounds here in bf16.
        return self.weight * x32.to(dtype)


@lru_cache(maxsize=None)
def _inv_freq(head_dim: int, theta: float, device: torch.device) -> torch.Tensor:
    # Computed on the CPU like the reference's buffer, then moved: pow() on another device could
    # round differently.
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    return inv.to(device)


def rope_cos_sin(positions: torch.Tensor, head_dim: int, theta: float,
                 dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The tables apply_rope takes: cos and sin of shape [*positions.shape, head_dim] in ``dtype``
    (angles in fp32), the sin table's first half negated (see apply_rope)."""
    inv = _inv_freq(head_dim, float(theta), positions.device)
    freqs = positions.float().unsqueeze(-1) * inv
    emb = torch.cat((freqs, freqs), dim=-1)
    sin = emb.sin().to(dtype)
    half = head_dim // 2
    return emb.cos().to(dtype), torch.cat((-sin[..., :half], sin[..., half:]), dim=-1)


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [..., L, head_dim] rotated by rope_cos_sin's tables (broadcastable to x, e.g. [L, D] for
    x [B, heads, L, D]).

    The reference computes x*cos + rotate_half(x)*sin with rotate_half(x) = [-x2, x1]. Here the
    minus sign lives in the table and the halves are only swapped: [x2, x1] * [-s, s] is the same
    product bit for bit (a sign flip is exact), one kernel fewer per call."""
    half = x.shape[-1] // 2
    return (x * cos) + (torch.cat((x[..., half:], x[..., :half]), dim=-1) * sin)


def attention_mask(q_pos: torch.Tensor, k_pos: torch.Tensor, window: int | None = None) -> torch.Tensor:
    """Boolean [Lq, Lk] mask: key visible if causal and, with a window, within the last ``window``
    positions including the query itself."""
    diff = q_pos.unsqueeze(-1) - k_pos.unsqueeze(-2)
    mask = diff >= 0
    if window is not None:
        mask = mask & (diff < window)
    return mask


@dataclass(frozen=True)
class CacheSpan:
    """An attention pattern over a KV cache that is a filled prefix per row: the call's L queries
    are cache slots ``end - L .. end - 1`` and query i sees slots ``start[b] .. end[b] - L + i``
    (causal; left padding skipped). That is what flash-attn's ``flash_attn_with_kvcache`` computes
    from ``cache_seqlens=end, cache_leftpad=start``; ``mask`` is the same pattern for SDPA."""

    mask: torch.Tensor  # bool, broadcastable to [B, heads, L, kv_len]
    end: torch.Tensor  # [B] int32
    start: torch.Tensor | None = None  # [B] int32; None: 0


@lru_cache(maxsize=None)
def _flash_attn_with_kvcache():
    """flash-attn's ``flash_attn_with_kvcache`` when installed, else None."""
    try:
        from flash_attn import flash_attn_with_kvcache
    except Exception:  # not installed, or a build that does not match this torch/CUDA
        return None
    return flash_attn_with_kvcache


@lru_cache(maxsize=None)
def _takes_leftpad(fn) -> bool:
    try:
        return "cache_leftpad" in inspect.signature(fn).parameters  # flash-attn >= 2.6
    except (TypeError, ValueError):
        return False


def flash_attention_for(q: torch.Tensor, span: CacheSpan, enabled: bool = True):
    """The flash-attn kernel for this call, or None for SDPA: CUDA, fp16/bf16, flash-attn
    installed (``pip install .[cuda]``) and ``enabled`` (RuntimeSettings.flash_attn,
    QWEN3TTS_FLASH_ATTN=0 turns it off), and for left-padded rows a flash-attn that takes
    ``cache_leftpad``."""
    if not enabled or not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
        return None
    fn = _flash_attn_with_kvcache()
    if fn is None or (span.start is not None and not _takes_leftpad(fn)):
        return None
    return fn


class KVCache(nn.Module):
    """Preallocated key/value buffers [B, kv_heads, max_seq, head_dim]; written by position."""

    def __init__(self, max_batch: int, max_seq: int, n_kv_heads: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device | str | None = None):
        super().__init__()
        shape = (max_batch, n_kv_heads, max_seq, head_dim)
        self.register_buffer("k_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v_cache", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v [B, kv_heads, L, D] at slots ``input_pos``: [L] for every row, or [B, L], each
        row at its own slots (rows that joined a running batch at different times)."""
        b = k.shape[0]
        if input_pos.dim() == 2:
            rows = torch.arange(b, device=k.device)[:, None]
            self.k_cache[rows, :, input_pos] = k.transpose(1, 2)
            self.v_cache[rows, :, input_pos] = v.transpose(1, 2)
            return self.k_cache[:b], self.v_cache[:b]
        # index_copy_ keeps the write on device and shape-static (CUDA-graph friendly).
        self.k_cache[:b].index_copy_(2, input_pos, k)
        self.v_cache[:b].index_copy_(2, input_pos, v)
        return self.k_cache[:b], self.v_cache[:b]

    def rows(self, start: int, stop: int) -> "KVCache":
        """Rows start..stop-1 as a cache of their own (views: writes land in this cache)."""
        view = KVCache.__new__(KVCache)
        nn.Module.__init__(view)
        view.register_buffer("k_cache", self.k_cache[start:stop], persistent=False)
        view.register_buffer("v_cache", self.v_cache[start:stop], persistent=False)
        return view


class Attention(nn.Module):
    """Multi-head attention with GQA, optional per-head q/k RMSNorm (before RoPE) and an optional
    static KV cache. Without a cache, keys are the current sequence itself."""

    flash_attn = True  # flash-attn's kernel where it applies (``flash_attention_for``, ``apply_runtime``)

    def __init__(self, dim: int, n_heads: int, n_kv_heads: int, head_dim: int,
                 qk_norm_eps: float | None = None, bias: bool = False):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = n_heads, n_kv_heads, head_dim
        self.q_proj = nn.Linear(dim, n_heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, n_kv_heads * head_dim, bias=bias)
        self.o_proj = nn.Linear(n_heads * head_dim, dim, bias=bias)
        if qk_norm_eps is not None:
            self.q_norm = RMSNorm(head_dim, qk_norm_eps)
            self.k_norm = RMSNorm(head_dim, qk_norm_eps)
        else:
            self.q_norm = self.k_norm = None
        # A quantized CPU model replaces q/k/v by one product over the concatenated weights
        # (linear.accelerate_cpu): one call instead of three at the same bytes.
        self.qkv_proj: nn.Module | None = None
        self.kv_cache: KVCache | None = None

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | CacheSpan | None = None, input_pos: torch.Tensor | None = None,
                kv_len: int | None = None, cache: "KVCache | None" = None) -> torch.Tensor:
        """x [B, L, dim]; cos/sin [L, head_dim]; mask bool [L, Lk] (None = attend to all keys).
        ``cache``: a KV cache for this call instead of the module's own (the codec's streaming
        states pass theirs, so that several streams may decode at once on one model).

        With a cache, ``input_pos`` [L] says where the new keys go and attention reads the first
        ``kv_len`` cache slots (all of them when None; the mask must then cover max_seq). A
        ``CacheSpan`` as the mask lets flash-attn's KV-cache kernel run the call when it can
        (``flash_attention_for``), and is its mask for SDPA otherwise.
        """
        B, L, _ = x.shape
        kv_cache = self.kv_cache if cache is None else cache
        if self.qkv_proj is not None:
            kv = self.n_kv_heads * self.head_dim
            q, k, v = self.qkv_proj(x).split((self.n_heads * self.head_dim, kv, kv), dim=-1)
        else:
            q, k, v = self.q_proj(x), self.k_proj(x), self.v_proj(x)
        q = q.view(B, L, self.n_heads, self.head_dim)
        k = k.view(B, L, self.n_kv_heads, self.head_dim)
        v = v.view(B, L, self.n_kv_heads, self.head_dim)
        if self.q_norm is not None:
            q = self.q_norm(q)
            k = self.k_norm(k)
        # q and k take RoPE together: one set of elementwise kernels instead of two (same values;
        # a batch-1 CUDA frame is bound by its kernel count).
        qk = apply_rope(torch.cat((q, k), dim=2).transpose(1, 2), cos, sin)
        q, k, v = qk[:, :self.n_heads], qk[:, self.n_heads:], v.transpose(1, 2)
        if isinstance(mask, CacheSpan):
            span, mask = mask, mask.mask
            flash = flash_attention_for(q, span, self.flash_attn) if kv_cache is not None else None
            if flash is not None:
                k_cache, v_cache = kv_cache.update(input_pos, k, v)
                # The cache is [B, kv_heads, slots, D]; flash-attn reads [B, slots, kv_heads, D]
                # through strides, so the transposed views cost no copy.
                kw = {} if span.start is None else {"cache_leftpad": span.start}
                y = flash(q.transpose(1, 2), k_cache.transpose(1, 2), v_cache.transpose(1, 2),
                          cache_seqlens=span.end, softmax_scale=1.0 / math.sqrt(self.head_dim), causal=True, **kw)
                return self.o_proj(y.reshape(B, L, self.n_heads * self.head_dim))
        if kv_cache is not None:
            k, v = kv_cache.update(input_pos, k, v)
            if kv_len is not None:
                k, v = k[:, :, :kv_len], v[:, :, :kv_len]
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=1.0 / math.sqrt(self.head_dim),
                                           enable_gqa=self.n_heads != self.n_kv_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, L, self.n_heads * self.head_dim))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int, bias: bool = False):
        super().__init__()
        self.gate_proj = nn.Linear(dim, hidden, bias=bias)
        self.up_proj = nn.Linear(dim, hidden, bias=bias)
        self.down_proj = nn.Linear(hidden, dim, bias=bias)
        self.gate_up_proj: nn.Module | None = None  # fused gate/up, as Attention.qkv_proj

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gate_up_proj is not None:
            gate, up = self.gate_up_proj(x).chunk(2, dim=-1)
        else:
            gate, up = self.gate_proj(x), self.up_proj(x)
        return self.down_proj(F.silu(gate) * up)


class DecoderBlock(nn.Module):
    """Pre-norm Qwen3 block: h += Attn(norm(h)); h += MLP(norm(h))."""

    def __init__(self, dim: int, ffn: int, n_heads: int, n_kv_heads: int, head_dim: int, eps: float,
                 qk_norm: bool = True):
        super().__init__()
        self.input_layernorm = RMSNorm(dim, eps)
        self.self_attn = Attention(dim, n_heads, n_kv_heads, head_dim, eps if qk_norm else None)
        self.post_attention_layernorm = RMSNorm(dim, eps)
        self.mlp = SwiGLU(dim, ffn)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
                mask: torch.Tensor | None = None, input_pos: torch.Tensor | None = None,
                kv_len: int | None = None, cache: "KVCache | None" = None) -> torch.Tensor:
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, input_pos, kv_len, cache)
        return x + self.mlp(self.post_attention_layernorm(x))


def decoder_stack(cfg) -> nn.ModuleList:
    """``cfg.num_hidden_layers`` DecoderBlocks of a Qwen3 decoder config (the talker's, the code
    predictor's): hidden_size, intermediate_size, attention heads, kv heads, head_dim, rms_norm_eps."""
    return nn.ModuleList(
        DecoderBlock(cfg.hidden_size, cfg.intermediate_size, cfg.num_attention_heads, cfg.num_key_value_heads,
                     cfg.head_dim, cfg.rms_norm_eps)
        for _ in range(cfg.num_hidden_layers))
