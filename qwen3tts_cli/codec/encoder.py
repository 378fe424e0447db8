"""Codec encoder of Qwen3-TTS-Tokenizer-12Hz (a Mimi encoder): 24 kHz audio -> 16 codes per 80 ms.

Read top to bottom it follows the data: a causal SEANet (x960, 25 Hz), an 8-layer causal
transformer, a strided conv (x2, 12.5 Hz), then split residual vector quantization: one semantic
codebook and the first 15 acoustic ones, both RVQs reading the same projected input.
Used only to turn a voice-clone reference into codes (reference-architecture.md §6.4).

Module and parameter names mirror the checkpoint (``encoder.<name>``), so a state dict loads as
is. Tensor layouts follow the official module chain op for op (channels-first convs, a transposed
view into the transformer, cdist's augmented matrix product), because a different layout can
change the last bit of a reduction and, at a near-tie, a code.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.config import CodecConfig, CodecEncoderConfig
from ..errors import InputError, ModelError
from ..model.layers import apply_rope, rope_cos_sin
from ..io.weights import expected_codec_tensors, load_safetensors, safetensors_files
from .decoder import codec_folder

# Clamp floor of cluster_usage when turning EMA sums into codebook vectors.
CODEBOOK_EPS = 1e-5
# Floor of the squared distance before the square root, as torch.cdist does.
DIST_FLOOR = 1e-30
# The downsampling conv's stride is fixed by the official code, whatever the rates say.
DOWNSAMPLE_STRIDE = 2


# ---------------------------------------------------------------------------------------------
# SEANet
# ---------------------------------------------------------------------------------------------

class CausalConv1d(nn.Module):
    """Conv with ``k_eff - stride`` samples of left padding plus just enough on the right for a
    complete last window: output length ceil(L / stride)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int = 1, dilation: int = 1,
                 bias: bool = True, pad_mode: str = "constant"):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, stride, dilation=dilation, bias=bias)
        self.stride = stride
        self.left_pad = (kernel_size - 1) * dilation + 1 - stride
        self.pad_mode = pad_mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        L = x.shape[-1]
        # Official rule ((ceil((L-k+p)/s + 1) - 1)*s + k - p) - L with p = k - s, in integers.
        right = -(-L // self.stride) * self.stride - L
        return self.conv(F.pad(x, (self.left_pad, right), mode=self.pad_mode))


class ResnetBlock(nn.Module):
    """x + conv_k1(ELU(conv_k(ELU(x)))); indices 1 and 3 hold the convs, as in the checkpoint."""

    def __init__(self, dim: int, hidden: int, kernel_size: int, dilation: int):
        super().__init__()
        self.block = nn.ModuleList([nn.ELU(), CausalConv1d(dim, hidden, kernel_size, dilation=dilation),
                                    nn.ELU(), CausalConv1d(hidden, dim, 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for m in self.block:
            h = m(h)
        return x + h


class SEANetEncoder(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        layers: list[nn.Module] = [CausalConv1d(cfg.audio_channels, cfg.num_filters, cfg.kernel_size)]
        c = cfg.num_filters
        for ratio in reversed(cfg.upsampling_ratios):
            for j in range(cfg.num_residual_layers):
                layers.append(ResnetBlock(c, c // cfg.compress, cfg.residual_kernel_size,
                                          cfg.dilation_growth_rate ** j))
            layers += [nn.ELU(), CausalConv1d(c, 2 * c, 2 * ratio, stride=ratio)]
            c *= 2
        layers += [nn.ELU(), CausalConv1d(c, cfg.hidden_size, cfg.last_kernel_size)]
        self.layers = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.layers:
            x = m(x)
        return x


# ---------------------------------------------------------------------------------------------
# Transformer
# ---------------------------------------------------------------------------------------------

class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.empty(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class SelfAttention(nn.Module):
    """Full-causal attention with RoPE and no q/k norm. The official sdpa/eager path ignores the
    config's sliding window (only its flash-attention path honours it), so no window here."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        dim = cfg.hidden_size
        self.q_proj = nn.Linear(dim, self.n_heads * self.head_dim, bias=False)
        self.k_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=False)
        self.v_proj = nn.Linear(dim, self.n_kv_heads * self.head_dim, bias=False)
        self.o_proj = nn.Linear(self.n_heads * self.head_dim, dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        q = self.q_proj(x).view(B, L, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, L, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        y = F.scaled_dot_product_attention(q, k, v, is_causal=L > 1, scale=1.0 / math.sqrt(self.head_dim),
                                           enable_gqa=self.n_heads != self.n_kv_heads)
        return self.o_proj(y.transpose(1, 2).reshape(B, L, self.n_heads * self.head_dim))


class MLP(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, bias=False)
        self.fc2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class TransformerLayer(nn.Module):
    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        dim = cfg.hidden_size
        self.input_layernorm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.self_attn = SelfAttention(cfg)
        self.self_attn_layer_scale = LayerScale(dim)
        self.post_attention_layernorm = nn.LayerNorm(dim, eps=cfg.norm_eps)
        self.mlp = MLP(dim, cfg.intermediate_size)
        self.mlp_layer_scale = LayerScale(dim)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        h = h + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(h), cos, sin))
        return h + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(h)))


class Transformer(nn.Module):
    """No final norm: the last layer's output goes straight to the downsampling conv."""

    def __init__(self, cfg: CodecEncoderConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList([TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers)])

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        pos = torch.arange(h.shape[1], device=h.device)
        cos, sin = rope_cos_sin(pos, self.cfg.head_dim, self.cfg.rope_theta, h.dtype)
        for layer in self.layers:
            h = layer(h, cos, sin)
        return h


# ---------------------------------------------------------------------------------------------
# Split residual vector quantization
# ---------------------------------------------------------------------------------------------

def nearest_code(x: torch.Tensor, embed: torch.Tensor) -> torch.Tensor:
    """argmin_j ||x_i - e_j|| for x [N, D], e [K, D], exactly as torch.cdist's matrix-product path.

    cdist computes [-2x, |x|², 1] · [e, 1, |e|²]ᵀ in one fp32 matmul, floors it and takes the
    square root; the rounding of that form (not of an exact difference) decides near-ties.
    """
    x, e = x[None].float(), embed[None].float()
    x_norm = x.pow(2).sum(-1, keepdim=True)
    e_norm = e.pow(2).sum(-1, keepdim=True)
    xa = torch.cat([x.mul(-2), x_norm, torch.ones_like(x_norm)], dim=-1)
    ea = torch.cat([e, torch.ones_like(e_norm), e_norm], dim=-1)
    dist = xa.matmul(ea.mT).clamp_min_(DIST_FLOOR).sqrt_()
    return dist[0].argmin(dim=-1)


class Codebook(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.register_buffer("embed_sum", torch.empty(size, dim))
        self.register_buffer("cluster_usage", torch.empty(size))
        self.embed: torch.Tensor | None = None

    def finalize(self) -> None:
        # Formed in the codec dtype, like the official cached property.
        self.embed = self.embed_sum / self.cluster_usage.clamp(min=CODEBOOK_EPS)[:, None]


class VectorQuantizer(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self.codebook = Codebook(size, dim)

    def forward(self, residual: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """residual [B, D, T] -> (codes [B, T], residual minus the chosen vectors)."""
        B, D, T = residual.shape
        embed = self.codebook.embed
        idx = nearest_code(residual.permute(0, 2, 1).reshape(-1, D), embed).view(B, T)
        return idx, residual - F.embedding(idx, embed).permute(0, 2, 1)


class ResidualVQ(nn.Module):
    def __init__(self, n_q: int, size: int, dim: int, in_dim: int):
        super().__init__()
        self.input_proj = nn.Conv1d(in_dim, dim, 1, bias=False)
        self.layers = nn.ModuleList([VectorQuantizer(size, dim) for _ in range(n_q)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, in_dim, T] -> codes [B, n_q, T]."""
        residual = self.input_proj(x)
        codes = []
        for layer in self.layers:
            idx, residual = layer(residual)
            codes.append(idx)
        return torch.stack(codes, dim=1)


class SplitRVQ(nn.Module):
    """Only the codebooks that are kept get computed (the official code runs all 32 and drops 16).
    The checkpoint's output_proj weights are never needed to encode."""

    def __init__(self, cfg: CodecEncoderConfig, n_keep: int):
        # n_keep >= the semantic count (checked when loading): semantic codes always come first.
        super().__init__()
        n_sem = cfg.num_semantic_quantizers
        args = (cfg.codebook_size, cfg.codebook_dim, cfg.hidden_size)
        self.semantic_residual_vector_quantizer = ResidualVQ(n_sem, *args)
        self.acoustic_residual_vector_quantizer = ResidualVQ(n_keep - n_sem, *args)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        codes = self.semantic_residual_vector_quantizer(x)
        if len(self.acoustic_residual_vector_quantizer.layers):
            codes = torch.cat([codes, self.acoustic_residual_vector_quantizer(x)], dim=1)
        return codes

    def finalize(self) -> None:
        for rvq in (self.semantic_residual_vector_quantizer, self.acoustic_residual_vector_quantizer):
            for layer in rvq.layers:
                layer.codebook.finalize()


# ---------------------------------------------------------------------------------------------
# The encoder
# ---------------------------------------------------------------------------------------------

class CodecEncoder(nn.Module):
    def __init__(self, cfg: CodecConfig):
        super().__init__()
        e = cfg.encoder
        self.cfg = cfg
        self.n_keep = cfg.encoder_valid_num_quantizers
        self.hop = cfg.encode_downsample_rate
        self.encoder = SEANetEncoder(e)
        self.encoder_transformer = Transformer(e)
        down = self.hop // math.prod(e.upsampling_ratios)
        self.downsample = CausalConv1d(e.hidden_size, e.hidden_size, 2 * down, stride=DOWNSAMPLE_STRIDE,
                                       bias=False, pad_mode="replicate")
        self.quantizer = SplitRVQ(e, self.n_keep)

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> "CodecEncoder":
        """Load from a model folder (its ``speech_tokenizer/``) or a Qwen3-TTS-Tokenizer-12Hz folder."""
        folder = codec_folder(folder)
        cfg = CodecConfig.from_file(folder / "config.json")
        e = cfg.encoder
        where = folder / "config.json"
        if math.prod(e.upsampling_ratios) * DOWNSAMPLE_STRIDE != cfg.encode_downsample_rate:
            raise ModelError(f"{where}: encode_downsample_rate {cfg.encode_downsample_rate} does not match "
                             f"the encoder's strides ({math.prod(e.upsampling_ratios)} x {DOWNSAMPLE_STRIDE})")
        if not e.num_semantic_quantizers <= cfg.encoder_valid_num_quantizers <= e.num_quantizers:
            raise ModelError(f"{where}: encoder_valid_num_quantizers {cfg.encoder_valid_num_quantizers} is "
                             f"outside [{e.num_semantic_quantizers}, {e.num_quantizers}]")
        expected = expected_codec_tensors(cfg)
        with torch.device("meta"):
            model = cls(cfg)
        wanted = {"encoder." + n for n in model.state_dict()}
        # The whole file is checked strictly; only what encoding reads is mapped in (no decoder,
        # no unused codebooks, output projections or `initialized` flags).
        tensors = load_safetensors(safetensors_files(folder), expected=expected, dtype=dtype, device=device,
                                   ignore=[n for n in expected if n not in wanted])
        state = {name[len("encoder."):]: t for name, t in tensors.items()}
        try:
            # assign=True keeps the (memory-mapped) tensors instead of copying into fresh parameters.
            model.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as err:  # shapes the config implies disagree with the network's
            raise ModelError(f"{folder}: encoder weights do not fit the encoder built from config.json "
                             f"({str(err).splitlines()[-1].strip()})") from None
        model.quantizer.finalize()
        return model.eval().requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.downsample.conv.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.downsample.conv.weight.dtype

    # -- the network -------------------------------------------------------------------------------

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [B, 1, N] -> codes [B, n_keep, ceil(N / hop)]."""
        h = self.encoder(wav)
        h = self.encoder_transformer(h.transpose(1, 2)).transpose(1, 2)
        return self.quantizer(self.downsample(h))

    @torch.inference_mode()
    def encode(self, wav) -> torch.Tensor:
        """Mono float waveform [N] at 24 kHz (numpy or torch) -> codes [ceil(N/1920), 16] (long, CPU)."""
        if isinstance(wav, np.ndarray):
            wav = torch.from_numpy(np.ascontiguousarray(wav))
        if not isinstance(wav, torch.Tensor):
            raise InputError(f"audio must be a numpy array or a tensor, got {type(wav).__name__}")
        if wav.ndim != 1:
            raise InputError(f"audio must be mono with shape [samples], got shape {list(wav.shape)}")
        if wav.numel() == 0:
            raise InputError("audio is empty")
        if not wav.is_floating_point():
            raise InputError(f"audio must be floating point, got {wav.dtype}")
        if not bool(torch.isfinite(wav).all()):
            raise InputError("audio contains NaN or infinite samples")
        x = wav.to(device=self.device, dtype=self.dtype).view(1, 1, -1)
        codes = self(x)[0]
        return codes[:, : -(-wav.numel() // self.hop)].transpose(0, 1).cpu()
