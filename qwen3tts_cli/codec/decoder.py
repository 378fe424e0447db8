"""Codec decoder of Qwen3-TTS-Tokenizer-12Hz: 16 codes per 80 ms frame -> 1920 samples at 24 kHz.

Read top to bottom it follows the data: RVQ dequantization, a causal conv, a sliding-window
transformer, two ConvNeXt upsamplers (x4), four SnakeBeta decoder blocks (x480), one conv.
Every conv is causal, so a frame's audio depends only on that frame and earlier ones.

Every ``forward`` takes an optional ``state`` (``codec.streaming.DecoderState``): with it, the input is
the continuation of what that state has seen (conv histories, transposed-conv overlaps and the
attention KV window are carried), so audio can be decoded frame by frame; without it, the input is
decoded on its own, as in the offline decode.

Module and parameter names mirror the checkpoint (``decoder.<name>``), so a state dict loads as is.
The offline decode reproduces the official output exactly, including its chunk grid: chunks of
300 frames, each decoded independently with 25 frames of left context (the official ``chunked_decode``).
"""

from __future__ import annotations

import contextvars
import math
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.config import CodecConfig, CodecDecoderConfig
from ..errors import InputError, ModelError
from ..model.layers import Attention, RMSNorm, SwiGLU, attention_mask, rope_cos_sin
from ..model.linear import cpu_linear
from ..runtime import RuntimeSettings
from ..io.weights import expected_codec_tensors, load_safetensors, safetensors_files

# The official grid (chunked_decode defaults); changing them changes the audio.
CHUNK_FRAMES = 300
LEFT_CONTEXT_FRAMES = 25
# Clamp floor of cluster_usage when turning EMA sums into codebook vectors.
CODEBOOK_EPS = 1e-5
SNAKE_EPS = 1e-9
# Streaming only: a conv producing at most this many samples per call runs as one matrix product
# (im2col + cpu_linear). Few-sample convs are weight-bound, and the conv kernels read the weight
# slowly there (the 1024->1536, k=7 conv on 4 samples: 6.9 ms as a conv, 1.7 ms as a product).
MATMUL_CONV_MAX_SAMPLES = 256


# ---------------------------------------------------------------------------------------------
# Convolution primitives
# ---------------------------------------------------------------------------------------------

class CausalConv1d(nn.Module):
    """Stride-1 conv with ``(k-1)*dilation`` zeros on the left: output length = input length."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation, groups=groups)
        self.left_pad = (kernel_size - 1) * dilation  # k_eff - stride, stride is always 1 here

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        if state is None:
            return self.conv(F.pad(x, (self.left_pad, 0)))
        # The zeros are replaced by the last left_pad input samples of the previous call.
        x = state.history(self, x, self.left_pad)
        if self.conv.groups == 1 and x.shape[-1] - self.left_pad <= MATMUL_CONV_MAX_SAMPLES:
            return conv1d_as_matmul(x, self.conv.weight, self.conv.bias, self.conv.dilation[0])
        return self.conv(x)


class CausalConvTranspose1d(nn.Module):
    """Transposed conv whose overhang (k - s samples) is cut on the right only: length L*s."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, stride: int):
        super().__init__()
        self.conv = nn.ConvTranspose1d(c_in, c_out, kernel_size, stride=stride)
        self.right_trim = kernel_size - stride

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        if state is None:
            y = self.conv(x)
            if self.right_trim:
                y = y[..., : y.shape[-1] - self.right_trim]
            return y
        # Streaming: the overhang is not dropped but carried into the next call's first samples; the
        # bias is added once, after the overlap-add, so every output sample gets it exactly once.
        y = conv_transpose_as_matmul(x, self.conv.weight, self.conv.stride[0])
        if self.right_trim:
            y = state.overlap_add(self, y, y.shape[-1] - self.right_trim)
        return y if self.conv.bias is None else y + self.conv.bias[:, None]


def conv1d_as_matmul(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     dilation: int = 1) -> torch.Tensor:
    """``F.conv1d(x, weight, bias, dilation=dilation)`` (no padding, one group) as im2col and one
    ``cpu_linear``: [B, C_in, T + (k-1)*dilation] -> [B, C_out, T]. The weight is used as it is
    stored ([C_out, C_in * k] is a view), so nothing is copied but the T columns."""
    c_out, c_in, k = weight.shape
    B, _, L = x.shape
    T = L - (k - 1) * dilation
    cols = x.unfold(2, (k - 1) * dilation + 1, 1)[..., ::dilation]  # [B, C_in, T, k]
    cols = cols.permute(0, 2, 1, 3).reshape(B * T, c_in * k)
    y = cpu_linear(cols, weight.reshape(c_out, c_in * k), bias, onednn=_STREAMING.get() is not False)
    return y.view(B, T, c_out).transpose(1, 2).contiguous()


def conv_transpose_as_matmul(x: torch.Tensor, weight: torch.Tensor, stride: int) -> torch.Tensor:
    """``F.conv_transpose1d(x, weight, None, stride)`` as one matrix product and k/stride shifted adds.

    On the few-frame inputs of streaming, ATen's transposed conv takes a slow fallback kernel (the
    1536-channel layer: ~57 ms for one frame against ~4 ms this way); results agree to float
    rounding (~1e-6)."""
    c_in, c_out, k = weight.shape
    if k % stride:
        return F.conv_transpose1d(x, weight, None, stride)
    B, _, L = x.shape
    m = k // stride
    # weight [C_in, C_out * k] transposed is the [out, in] matrix of a linear layer (a view).
    cols = cpu_linear(x.transpose(1, 2).reshape(B * L, c_in), weight.reshape(c_in, c_out * k).t(),
                      onednn=_STREAMING.get() is not False)
    cols = cols.view(B, L, c_out, m, stride)
    y = x.new_zeros(B, c_out, (L + m - 1) * stride)
    for i in range(m):
        y[..., i * stride:(i + L) * stride] += cols[:, :, :, i].permute(0, 2, 1, 3).reshape(B, c_out, L * stride)
    return y


class SnakeBeta(nn.Module):
    """x + sin^2(x*exp(alpha)) / exp(beta), per channel, on [B, C, T].

    The official op order is kept (reciprocal of exp(beta)+1e-9 first, then a multiply): dividing
    instead is the same formula but rounds differently.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.alpha = nn.Parameter(torch.zeros(channels))
        self.beta = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = torch.exp(self.alpha)[:, None]
        inv_b = 1.0 / (torch.exp(self.beta)[:, None] + SNAKE_EPS)
        # x + inv_b * sin(x*a)^2, in place on one temporary: these tensors are the largest in the
        # decoder (channels x 24 kHz) and the products are commutative, so the bits do not change.
        return torch.mul(x, a).sin_().pow_(2).mul_(inv_b).add_(x)


# ---------------------------------------------------------------------------------------------
# RVQ dequantization
# ---------------------------------------------------------------------------------------------

class Codebook(nn.Module):
    """One codebook, stored as EMA sums; ``finalize()`` turns them into the lookup table."""

    def __init__(self, size: int, dim: int):
        super().__init__()
        self.embedding_sum = nn.Parameter(torch.zeros(size, dim))
        self.cluster_usage = nn.Parameter(torch.ones(size))
        self.register_buffer("table", torch.zeros(size, dim), persistent=False)

    @torch.no_grad()
    def finalize(self) -> None:
        # In the codec dtype, as the reference divides after its cast.
        self.table = self.embedding_sum / self.cluster_usage.clamp(min=CODEBOOK_EPS)[:, None]


class VectorQuantizer(nn.Module):
    def __init__(self, size: int, dim: int):
        super().__init__()
        self._codebook = Codebook(size, dim)


class _Layers(nn.Module):
    def __init__(self, n: int, size: int, dim: int):
        super().__init__()
        self.layers = nn.ModuleList(VectorQuantizer(size, dim) for _ in range(n))


class ResidualVQ(nn.Module):
    """Sum of codebook vectors, then a 1x1 conv to the codec width."""

    def __init__(self, n_q: int, size: int, dim: int, out_dim: int):
        super().__init__()
        self.input_proj = nn.Conv1d(out_dim, dim, 1, bias=False)  # encoder side only; kept to load 1:1
        self.output_proj = nn.Conv1d(dim, out_dim, 1, bias=False)
        self.vq = _Layers(n_q, size, dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, n_q, T] -> [B, out_dim, T]."""
        # One add per group in the codec dtype (a single stacked sum rounds differently in bf16).
        q = None
        for i, layer in enumerate(self.vq.layers):
            v = F.embedding(codes[:, i], layer._codebook.table)
            q = v if q is None else q + v
        return self.output_proj(q.transpose(1, 2))


class SplitRVQ(nn.Module):
    """Group 0 (semantic) and groups 1.. (acoustic) have separate output projections."""

    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        inner = cfg.codebook_dim // 2
        self.rvq_first = ResidualVQ(1, cfg.codebook_size, inner, cfg.codebook_dim)
        self.rvq_rest = ResidualVQ(cfg.num_quantizers - 1, cfg.codebook_size, inner, cfg.codebook_dim)

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        return self.rvq_first(codes[:, :1]) + self.rvq_rest(codes[:, 1:])

    def finalize(self) -> None:
        for rvq in (self.rvq_first, self.rvq_rest):
            for layer in rvq.vq.layers:
                layer._codebook.finalize()


# ---------------------------------------------------------------------------------------------
# Pre-transformer: 8 pre-norm layers, causal sliding-window attention, LayerScale on both branches
# ---------------------------------------------------------------------------------------------

class LayerScale(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.scale * x


class TransformerLayer(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        # No q/k norm in the codec (unlike the talker).
        self.self_attn = Attention(cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim)
        self.self_attn_layer_scale = LayerScale(cfg.hidden_size)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = SwiGLU(cfg.hidden_size, cfg.intermediate_size)
        self.mlp_layer_scale = LayerScale(cfg.hidden_size)

    def forward(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor,
                input_pos: torch.Tensor | None = None, kv_len: int | None = None, cache=None) -> torch.Tensor:
        h = h + self.self_attn_layer_scale(self.self_attn(self.input_layernorm(h), cos, sin, mask, input_pos, kv_len,
                                                          cache))
        return h + self.mlp_layer_scale(self.mlp(self.post_attention_layernorm(h)))


# While ``CodecDecoder.forward`` runs with a streaming state: whether its products go through
# oneDNN (the decoder's RuntimeSettings.cpu_kernels); None otherwise (thread- and context-local).
_STREAMING: contextvars.ContextVar[bool | None] = contextvars.ContextVar("codec_streaming", default=None)


class StreamingAwareLinear(nn.Linear):
    """nn.Linear (same parameters and names) whose product runs through ``cpu_linear`` during a
    streaming call: a few rows per call there, where ATen reads the weight at about a third of the
    bandwidth (the codec transformer: ~13 -> ~9.5 ms per 1-frame push; the ConvNeXt projections
    too). Offline it is F.linear, so the offline decode keeps the official bits. Every nn.Linear
    of the decoder is one (``CodecDecoder.__init__``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        onednn = _STREAMING.get()
        if onednn is not None:
            return cpu_linear(x, self.weight, self.bias, onednn=onednn)
        return F.linear(x, self.weight, self.bias)


class PreTransformer(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig):
        super().__init__()
        self.cfg = cfg
        self.input_proj = nn.Linear(cfg.latent_dim, cfg.hidden_size)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.output_proj = nn.Linear(cfg.hidden_size, cfg.latent_dim)

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        """x [B, T, latent] -> [B, T, latent]; positions count from 0 at the start of x (of the
        state's first input when streaming)."""
        T = x.shape[1]
        h = self.input_proj(x)
        if state is None:
            positions = torch.arange(T, device=x.device)
            # A query sees itself and the window-1 frames before it (72 in the release).
            mask = attention_mask(positions, positions, self.cfg.sliding_window)
            caches, input_pos, kv_len = [None] * len(self.layers), None, None
        else:
            # Keys of earlier calls come from the state's KV buffers (one per layer).
            positions, mask, input_pos, kv_len = state.attention_span(T)
            caches = state.kv
        cos, sin = rope_cos_sin(positions, self.cfg.head_dim, self.cfg.rope_theta, h.dtype)
        for layer, cache in zip(self.layers, caches):
            # The state's buffers go with the call, not onto the module: streams on other threads
            # may be decoding with the same layers at the same time.
            h = layer(h, cos, sin, mask, input_pos, kv_len, cache)
        return self.output_proj(self.norm(h))


# ---------------------------------------------------------------------------------------------
# Upsampling: ConvNeXt stages, then SnakeBeta decoder blocks
# ---------------------------------------------------------------------------------------------

class ConvNeXtBlock(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.dwconv = CausalConv1d(dim, dim, 7, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        h = self.dwconv(x, state).permute(0, 2, 1)
        h = self.pwconv2(F.gelu(self.pwconv1(self.norm(h))))
        return x + (self.gamma * h).permute(0, 2, 1)


class ResidualUnit(nn.Module):
    def __init__(self, dim: int, dilation: int):
        super().__init__()
        self.act1 = SnakeBeta(dim)
        self.conv1 = CausalConv1d(dim, dim, 7, dilation=dilation)
        self.act2 = SnakeBeta(dim)
        self.conv2 = CausalConv1d(dim, dim, 1)

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        return self.conv2(self.act2(self.conv1(self.act1(x), state)), state).add_(x)


class DecoderBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, rate: int):
        super().__init__()
        self.block = nn.ModuleList([
            SnakeBeta(c_in),
            CausalConvTranspose1d(c_in, c_out, 2 * rate, rate),
            ResidualUnit(c_out, 1),
            ResidualUnit(c_out, 3),
            ResidualUnit(c_out, 9),
        ])

    def forward(self, x: torch.Tensor, state=None) -> torch.Tensor:
        snake, up, *units = self.block
        x = up(snake(x), state)
        for unit in units:
            x = unit(x, state)
        return x


# ---------------------------------------------------------------------------------------------
# The decoder
# ---------------------------------------------------------------------------------------------

class CodecDecoder(nn.Module):
    def __init__(self, cfg: CodecDecoderConfig, runtime: RuntimeSettings | None = None):
        super().__init__()
        self.cfg = cfg
        self.runtime = runtime or RuntimeSettings()
        self.hop = math.prod(cfg.upsampling_ratios) * math.prod(cfg.upsample_rates)
        L = cfg.latent_dim
        self.quantizer = SplitRVQ(cfg)
        self.pre_conv = CausalConv1d(cfg.codebook_dim, L, 3)
        self.pre_transformer = PreTransformer(cfg)
        self.upsample = nn.ModuleList(
            nn.ModuleList([CausalConvTranspose1d(L, L, r, r), ConvNeXtBlock(L)]) for r in cfg.upsampling_ratios
        )
        blocks: list[nn.Module] = [CausalConv1d(L, cfg.decoder_dim, 7)]
        c = cfg.decoder_dim
        for r in cfg.upsample_rates:
            blocks.append(DecoderBlock(c, c // 2, r))
            c //= 2
        blocks += [SnakeBeta(c), CausalConv1d(c, 1, 7)]
        self.decoder = nn.ModuleList(blocks)
        for m in self.modules():
            if type(m) is nn.Linear:
                m.__class__ = StreamingAwareLinear  # a class swap: parameters and names unchanged

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                    runtime: RuntimeSettings | None = None) -> "CodecDecoder":
        """Load from a model folder (its ``speech_tokenizer/``) or a Qwen3-TTS-Tokenizer-12Hz folder.
        ``runtime``: its CUDA-graph and CPU-kernel switches (default: read from the environment now)."""
        folder = codec_folder(folder)
        cfg = CodecConfig.from_file(folder / "config.json")
        expected = expected_codec_tensors(cfg)
        # The whole file is checked strictly; only the decoder half is mapped in.
        encoder_names = [n for n in expected if not n.startswith("decoder.")]
        tensors = load_safetensors(safetensors_files(folder), expected=expected, dtype=dtype,
                                   device=device, ignore=encoder_names)
        return cls.from_tensors(cfg, tensors, where=str(folder / "config.json"), runtime=runtime)

    @classmethod
    def from_tensors(cls, cfg: CodecConfig, tensors: dict[str, torch.Tensor], where: str = "codec",
                     runtime: RuntimeSettings | None = None) -> "CodecDecoder":
        """From checkpoint tensors named ``decoder.*`` (a loaded file, or random weights for `bench`)."""
        hop = math.prod(cfg.decoder.upsampling_ratios) * math.prod(cfg.decoder.upsample_rates)
        if hop != cfg.decode_upsample_rate:
            raise ModelError(f"{where}: decode_upsample_rate {cfg.decode_upsample_rate} does not "
                             f"match the decoder's upsampling ({hop})")
        with torch.device("meta"):
            model = cls(cfg.decoder, runtime or RuntimeSettings.from_env())
        state = {name[len("decoder."):]: t for name, t in tensors.items() if name.startswith("decoder.")}
        # assign=True keeps the (memory-mapped) tensors instead of copying into fresh parameters.
        model.load_state_dict(state, strict=True, assign=True)
        model.quantizer.finalize()
        return model.eval().requires_grad_(False)

    # -- the network -------------------------------------------------------------------------------

    def forward(self, codes: torch.Tensor, state=None) -> torch.Tensor:
        """codes [B, n_q, T] (long) -> waveform [B, 1, T*hop] in [-1, 1]: one independent pass, or
        with ``state`` the continuation of the frames that state has seen (batch 1)."""
        if state is None:
            return self._forward(codes, None)
        token = _STREAMING.set(self.runtime.cpu_kernels)
        try:
            return self._forward(codes, state)
        finally:
            _STREAMING.reset(token)

    def _forward(self, codes: torch.Tensor, state) -> torch.Tensor:
        h = self.pre_conv(self.quantizer(codes), state)
        h = self.pre_transformer(h.transpose(1, 2), state).permute(0, 2, 1)
        for trans_conv, convnext in self.upsample:
            h = convnext(trans_conv(h, state), state)
        for m in self.decoder:
            h = m(h) if isinstance(m, SnakeBeta) else m(h, state)
        return h.clamp(min=-1, max=1)

    # -- offline decode on the official grid -----------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.pre_conv.conv.weight.device

    def check_codes(self, codes) -> torch.Tensor:
        return check_codes(codes, self.cfg.num_quantizers, self.cfg.codebook_size)

    def iter_decode(self, codes, whole_sequence: bool = False) -> Iterator[torch.Tensor]:
        """Yield float32 CPU audio for codes [T, 16], chunk by chunk (at most 300 frames each).

        Each chunk is decoded on its own from ``codes[start-25 : start+300]`` (no context for the
        first) and the context's samples are dropped: this is exactly the official offline output,
        and memory stays bounded whatever T is. ``whole_sequence=True`` decodes in one pass instead:
        not the official output beyond 300 frames, and memory grows with T.
        """
        codes = self.check_codes(codes)  # here, not in the generator: bad input fails at the call
        return self._decode_chunks(codes, whole_sequence)

    @torch.inference_mode()
    def _decode_chunks(self, codes: torch.Tensor, whole_sequence: bool) -> Iterator[torch.Tensor]:
        T = codes.shape[0]
        for start, end, ctx in chunk_grid(T, T if whole_sequence else CHUNK_FRAMES, LEFT_CONTEXT_FRAMES):
            window = codes[start - ctx:end].T.unsqueeze(0).to(self.device)
            wav = self(window)[0, 0, ctx * self.hop:]
            yield wav.float().cpu()

    def decode(self, codes, whole_sequence: bool = False) -> torch.Tensor:
        """codes [T, 16] -> float32 waveform [T * 1920] at 24 kHz (see ``iter_decode``)."""
        return torch.cat(list(self.iter_decode(codes, whole_sequence)))


def chunk_grid(T: int, chunk: int = CHUNK_FRAMES, context: int = LEFT_CONTEXT_FRAMES) -> list[tuple[int, int, int]]:
    """(start, end, ctx) per chunk: frames [start, end) are emitted, decoded from [start-ctx, end).

    Anchored at frame 0 like the reference, whose context rule is ``ctx = context if start-context > 0
    else start``.
    """
    out = []
    start = 0
    while start < T:
        end = min(start + chunk, T)
        out.append((start, end, context if start - context > 0 else start))
        start = end
    return out


def check_codes(codes, num_quantizers: int = 16, codebook_size: int = 2048) -> torch.Tensor:
    """Validate codes [T, num_quantizers] with values in [0, codebook_size) -> LongTensor (CPU)."""
    if isinstance(codes, np.ndarray):
        if codes.dtype == np.bool_ or not np.issubdtype(codes.dtype, np.integer):
            raise InputError(f"codes must be integers, got dtype {codes.dtype}")
        shape = codes.shape
    elif isinstance(codes, torch.Tensor):
        if codes.dtype == torch.bool or codes.is_floating_point() or codes.is_complex():
            raise InputError(f"codes must be integers, got dtype {codes.dtype}")
        shape = tuple(codes.shape)
    else:
        raise InputError(f"codes must be an integer array, got {type(codes).__name__}")
    if len(shape) != 2 or shape[1] != num_quantizers:
        raise InputError(f"codes must have shape (frames, {num_quantizers}), got {tuple(shape)}")
    if shape[0] == 0:
        raise InputError("codes have no frames")
    # min/max before any conversion, so that e.g. uint64 values cannot wrap around.
    lo, hi = int(codes.min()), int(codes.max())
    if lo < 0 or hi >= codebook_size:
        bad = lo if lo < 0 else hi
        raise InputError(f"codes must be in 0..{codebook_size - 1}, found {bad}")
    if isinstance(codes, np.ndarray):
        return torch.from_numpy(codes.astype(np.int64))
    return codes.detach().to("cpu", torch.long)


def codec_folder(folder: str | Path) -> Path:
    """The folder holding the codec's config.json + model.safetensors."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"{folder}: not a folder")
    sub = folder / "speech_tokenizer"
    if (sub / "config.json").is_file():
        return sub
    if (folder / "config.json").is_file():
        if _model_type(folder / "config.json") == "qwen3_tts":  # a TTS model folder without its codec
            raise ModelError(f"{folder}: speech_tokenizer/ is missing (the model's codec, config.json and "
                             "model.safetensors): download the model again (`qwen3tts download REPO_ID`)")
        return folder
    raise ModelError(f"{folder}: neither a model folder with speech_tokenizer/ nor a "
                     "Qwen3-TTS-Tokenizer-12Hz folder (no config.json)")


def _model_type(config: Path) -> str | None:
    import json

    try:
        return json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError, AttributeError):
        return None  # unreadable: the codec's own config check words it
