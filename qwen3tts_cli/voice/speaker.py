"""Speaker encoder of the Base models: 24 kHz audio -> log-mel -> ECAPA-TDNN x-vector.

The x-vector fills the speaker slot of a voice-clone prompt (reference-architecture.md §7).
Read top to bottom: the mel filterbank and log-mel features, the TDNN / SE-Res2Net blocks,
attentive statistics pooling, the network, loading.

Module and parameter names mirror the checkpoint (``speaker_encoder.<name>``). Every conv pads
"same" by reflection and every TDNN block is conv + ReLU with no BatchNorm.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..io.config import ModelConfig, SpeakerEncoderConfig
from ..errors import InputError, ModelError
from ..io.weights import expected_model_tensors, load_safetensors, safetensors_files

SAMPLE_RATE = 24000
N_FFT = 1024
HOP = 256
N_MELS = 128
FMIN, FMAX = 0.0, 12000.0
MAG_EPS = 1e-9
LOG_FLOOR = 1e-5
STD_FLOOR = 1e-12


# ---------------------------------------------------------------------------------------------
# Features
# ---------------------------------------------------------------------------------------------

# Slaney's mel scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above.
_F_SP = 200.0 / 3
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = math.log(6.4) / 27.0


def hz_to_mel(f: np.ndarray) -> np.ndarray:
    f = np.asarray(f, dtype=np.float64)
    lin = f / _F_SP
    log = _MIN_LOG_MEL + np.log(np.maximum(f, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(f >= _MIN_LOG_HZ, log, lin)


def mel_to_hz(m: np.ndarray) -> np.ndarray:
    m = np.asarray(m, dtype=np.float64)
    lin = _F_SP * m
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (np.maximum(m, _MIN_LOG_MEL) - _MIN_LOG_MEL))
    return np.where(m >= _MIN_LOG_MEL, log, lin)


def mel_filterbank(sr: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = FMIN,
                   fmax: float | None = FMAX) -> np.ndarray:
    """Triangular filters on the Slaney mel scale with Slaney area normalisation: [n_mels, n_fft//2+1]
    float32 (the defaults of librosa.filters.mel, whose rounding this follows: triangles computed
    in float64 and stored as float32, then scaled by the float64 area factor and stored again)."""
    if fmax is None:
        fmax = sr / 2.0
    fft_freqs = np.arange(n_fft // 2 + 1, dtype=np.float64) * (sr / n_fft)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    rising = -ramps[:-2] / widths[:-1, None]
    falling = ramps[2:] / widths[1:, None]
    fb = np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)
    area = 2.0 / (edges[2:] - edges[:-2])
    return (fb * area[:, None]).astype(np.float32)


_FB_CACHE: dict[torch.device, torch.Tensor] = {}


def log_mel(wav: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Log-mel features of a mono 24 kHz waveform [N] -> float32 [N // 256, 128] (on wav's device).

    Reflect-pad (n_fft - hop)/2 on both sides, STFT without centring, magnitude with an epsilon
    inside the root, mel projection, natural log with a floor; no normalisation.
    """
    if isinstance(wav, np.ndarray):
        wav = torch.from_numpy(np.ascontiguousarray(wav))
    wav = wav.float()
    pad = (N_FFT - HOP) // 2
    if wav.ndim != 1 or wav.numel() <= pad:
        raise InputError(f"audio for the speaker encoder must be mono with more than {pad} samples, "
                         f"got shape {list(wav.shape)}")
    fb = _FB_CACHE.get(wav.device)
    if fb is None:
        fb = _FB_CACHE[wav.device] = torch.from_numpy(mel_filterbank()).to(wav.device)
    y = F.pad(wav[None, None], (pad, pad), mode="reflect")[:, 0]
    spec = torch.stft(y, N_FFT, hop_length=HOP, win_length=N_FFT,
                      window=torch.hann_window(N_FFT).to(wav.device), center=False,
                      normalized=False, onesided=True, return_complex=True)
    mag = torch.sqrt(torch.view_as_real(spec).pow(2).sum(-1) + MAG_EPS)
    mel = torch.matmul(fb, mag)
    return torch.log(torch.clamp(mel, min=LOG_FLOOR))[0].transpose(0, 1)


# ---------------------------------------------------------------------------------------------
# Blocks
# ---------------------------------------------------------------------------------------------

class SameConv1d(nn.Conv1d):
    """Conv1d with "same" output length by reflection padding (odd kernels: symmetric)."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int = 1):
        super().__init__(c_in, c_out, kernel_size, dilation=dilation)
        total = dilation * (kernel_size - 1)
        self.pads = (total // 2, total - total // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv1d(F.pad(x, self.pads, mode="reflect"), self.weight, self.bias, dilation=self.dilation)


class TDNNBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int = 1):
        super().__init__()
        self.conv = SameConv1d(c_in, c_out, kernel_size, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Res2NetBlock(nn.Module):
    """Split channels into ``scale`` chunks; chunk 0 passes, chunk i>0 goes through a TDNN after
    adding the previous chunk's output (hierarchical receptive fields)."""

    def __init__(self, channels: int, scale: int, kernel_size: int, dilation: int):
        super().__init__()
        self.scale = scale
        width = channels // scale
        self.blocks = nn.ModuleList([TDNNBlock(width, width, kernel_size, dilation) for _ in range(scale - 1)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = []
        for i, part in enumerate(torch.chunk(x, self.scale, dim=1)):
            if i == 0:
                y = part
            elif i == 1:
                y = self.blocks[0](part)
            else:
                y = self.blocks[i - 1](part + y)
            outs.append(y)
        return torch.cat(outs, dim=1)


class SEBlock(nn.Module):
    def __init__(self, channels: int, se_channels: int):
        super().__init__()
        self.conv1 = SameConv1d(channels, se_channels, 1)
        self.conv2 = SameConv1d(se_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = F.relu(self.conv1(x.mean(dim=2, keepdim=True)))
        return x * torch.sigmoid(self.conv2(s))


class SERes2NetBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, scale: int, se_channels: int, kernel_size: int, dilation: int):
        super().__init__()
        self.tdnn1 = TDNNBlock(c_in, c_out, 1)
        self.res2net_block = Res2NetBlock(c_out, scale, kernel_size, dilation)
        self.tdnn2 = TDNNBlock(c_out, c_out, 1)
        self.se_block = SEBlock(c_out, se_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.se_block(self.tdnn2(self.res2net_block(self.tdnn1(x))))


def uniform_weights(x: torch.Tensor) -> torch.Tensor:
    """[B, 1, T] weights 1/T formed as ones / (their sum), both in x's dtype. In bf16 the count
    itself rounds (301 -> 300), so these need not add up to 1; the official result depends on it."""
    ones = torch.ones(x.shape[0], 1, x.shape[2], dtype=x.dtype, device=x.device)
    return ones / ones.sum(dim=2, keepdim=True)


def _weighted_stats(x: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    mean = (w * x).sum(2)
    std = torch.sqrt((w * (x - mean.unsqueeze(2)).pow(2)).sum(2).clamp(STD_FLOOR))
    return mean, std


class AttentiveStatsPool(nn.Module):
    """Mean and std over time, weighted per channel by a softmax attention that itself sees the
    utterance's global mean and std."""

    def __init__(self, channels: int, attention_channels: int):
        super().__init__()
        self.tdnn = TDNNBlock(channels * 3, attention_channels, 1)
        self.conv = SameConv1d(attention_channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        T = x.shape[2]
        mean, std = _weighted_stats(x, uniform_weights(x))
        ctx = torch.cat([x, mean.unsqueeze(2).expand(-1, -1, T), std.unsqueeze(2).expand(-1, -1, T)], dim=1)
        attn = F.softmax(self.conv(torch.tanh(self.tdnn(ctx))), dim=2)
        mean, std = _weighted_stats(x, attn)
        return torch.cat((mean, std), dim=1).unsqueeze(2)


# ---------------------------------------------------------------------------------------------
# The network
# ---------------------------------------------------------------------------------------------

class SpeakerEncoder(nn.Module):
    def __init__(self, cfg: SpeakerEncoderConfig):
        super().__init__()
        ch, ks, dil = cfg.enc_channels, cfg.enc_kernel_sizes, cfg.enc_dilations
        if not len(ch) == len(ks) == len(dil) >= 3:
            raise ModelError("speaker_encoder_config: enc_channels, enc_kernel_sizes and enc_dilations "
                             "must have the same length (at least 3)")
        self.cfg = cfg
        blocks: list[nn.Module] = [TDNNBlock(cfg.mel_dim, ch[0], ks[0], dil[0])]
        for i in range(1, len(ch) - 1):
            blocks.append(SERes2NetBlock(ch[i - 1], ch[i], cfg.enc_res2net_scale, cfg.enc_se_channels, ks[i], dil[i]))
        self.blocks = nn.ModuleList(blocks)
        self.mfa = TDNNBlock(sum(ch[1:-1]), ch[-1], ks[-1], dil[-1])
        self.asp = AttentiveStatsPool(ch[-1], cfg.enc_attention_channels)
        self.fc = SameConv1d(ch[-1] * 2, cfg.enc_dim, 1)

    def forward(self, mels: torch.Tensor) -> torch.Tensor:
        """mels [B, frames, mel_dim] -> x-vectors [B, enc_dim]."""
        h = mels.transpose(1, 2)
        outs = []
        for block in self.blocks:
            h = block(h)
            outs.append(h)
        h = self.mfa(torch.cat(outs[1:], dim=1))
        return self.fc(self.asp(h)).squeeze(-1)

    @property
    def device(self) -> torch.device:
        return self.fc.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.fc.weight.dtype

    @torch.inference_mode()
    def embed(self, wav: torch.Tensor | np.ndarray) -> torch.Tensor:
        """Mono 24 kHz waveform [N] -> x-vector [enc_dim] in the model dtype, on the model device.

        The features are computed in float32 (on the model's device) and then cast, as officially.
        """
        if isinstance(wav, np.ndarray):
            wav = torch.from_numpy(np.ascontiguousarray(wav))
        if not isinstance(wav, torch.Tensor) or not wav.is_floating_point():
            raise InputError("audio for the speaker encoder must be a floating-point array")
        if not bool(torch.isfinite(wav).all()):
            raise InputError("audio contains NaN or infinite samples")
        mels = log_mel(wav.to(self.device))
        return self(mels[None].to(self.dtype))[0]

    # -- loading ---------------------------------------------------------------------------------

    @classmethod
    def from_weights(cls, state_dict: dict[str, torch.Tensor], cfg: SpeakerEncoderConfig) -> "SpeakerEncoder":
        """Build from tensors named ``speaker_encoder.*`` (other names are ignored)."""
        prefix = "speaker_encoder."
        state = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
        with torch.device("meta"):
            model = cls(cfg)
        try:
            model.load_state_dict(state, strict=True, assign=True)
        except RuntimeError as e:
            raise ModelError(f"speaker encoder weights do not match the config: {e}") from None
        return model.eval().requires_grad_(False)

    @classmethod
    def from_folder(cls, folder: str | Path, device: str | torch.device = "cpu",
                    dtype: torch.dtype = torch.float32) -> "SpeakerEncoder":
        """Load from a Base model folder (only the ``speaker_encoder.*`` tensors are mapped in)."""
        folder = Path(folder)
        cfg = ModelConfig.from_file(folder / "config.json")
        if cfg.speaker_encoder is None:
            raise ModelError(f"{folder}: a {cfg.tts_model_type} model has no speaker encoder "
                             "(voice cloning needs a Base model)")
        expected = expected_model_tensors(cfg)
        tensors = load_safetensors(safetensors_files(folder), expected=expected, dtype=dtype, device=device,
                                   ignore=[n for n in expected if not n.startswith("speaker_encoder.")])
        return cls.from_weights(tensors, cfg.speaker_encoder)
