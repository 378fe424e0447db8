"""Voice-clone prompts for the Base models: made from reference audio, kept in a file, loaded back.

A VoicePrompt holds what the talker needs to speak in a reference voice: the speaker encoder's
x-vector, and for in-context (ICL) cloning also the reference audio's codec codes and its
transcript (reference-architecture.md §3.6, §7.3). The x-vector goes into the talker's embedding
space unprojected, so a voice only fits the model family it was made with: its length is the
talker's hidden size (1024 for 0.6B, 2048 for 1.7B), and the speaker encoders differ by size.

Voice files are safetensors (never pickle): tensor ``xvector`` (F32 [H]) and, for ICL,
``ref_codes`` (I64 [K, 16]); the header's ``__metadata__`` holds the strings listed in
``_METADATA_KEYS`` (format, mode, transcript, the model the voice was made for, tool version).

What reference audio is accepted, and the options of a clone, are in reference.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..errors import InputError, ModelError
from ..io.config import ModelConfig
from .reference import CloneReference

FORMAT = "qwen3tts-voice"
FORMAT_VERSION = 1
MODES = ("xvector", "icl")
CODEC_SAMPLE_RATE = 24000

_METADATA_KEYS = ("format", "format_version", "mode", "ref_text", "model_type", "model_size", "hidden_size",
                  "speaker_encoder_dim", "speaker_encoder_sample_rate", "num_code_groups", "codebook_size",
                  "ref_seconds", "tool_version")


@dataclass
class VoicePrompt:
    mode: str  # "xvector" | "icl"
    xvector: torch.Tensor = field(repr=False)  # float32 [H] on the CPU
    ref_codes: torch.Tensor | None = field(repr=False)  # int64 [K, num_code_groups] (ICL only)
    ref_text: str | None  # the reference transcript (ICL only)
    # What the voice was made for and with.
    model_type: str = "base"
    model_size: str = ""  # config.json's tts_model_size: "0b6" | "1b7"
    hidden_size: int = 0  # talker hidden size = x-vector length
    speaker_encoder_dim: int = 0
    speaker_encoder_sample_rate: int = CODEC_SAMPLE_RATE
    num_code_groups: int = 16
    codebook_size: int = 2048
    ref_seconds: float = 0.0
    tool_version: str = __version__

    def __post_init__(self):
        if self.mode not in MODES:
            raise InputError(f"voice mode must be one of {', '.join(MODES)}, got '{self.mode}'")
        if (self.mode == "icl") != (self.ref_codes is not None):
            raise InputError("an ICL voice needs reference codes and an x-vector voice has none")
        if self.mode == "icl" and not (self.ref_text or "").strip():
            raise InputError("an ICL voice needs the reference transcript")

    @property
    def frames(self) -> int:
        return 0 if self.ref_codes is None else int(self.ref_codes.shape[0])

    def describe_model(self) -> str:
        return f"{_size_name(self.model_size)}-Base (hidden size {self.hidden_size})"

    def check_model(self, cfg: ModelConfig) -> None:
        """InputError unless this voice was made for a model like ``cfg``."""
        if cfg.tts_model_type != "base":
            raise InputError(f"voices are for Base models; this model is {cfg.tts_model_type}")
        spk = cfg.speaker_encoder
        here = (cfg.tts_model_size, cfg.talker.hidden_size, spk.enc_dim if spk else None)
        if (self.model_size, self.hidden_size, self.speaker_encoder_dim) != here:
            raise InputError(f"this voice was made for {self.describe_model()}; this model is "
                             f"{_size_name(cfg.tts_model_size)}-Base (hidden size {cfg.talker.hidden_size}): "
                             "create the voice again with this model")
        if self.ref_codes is not None and self.ref_codes.shape[1] != cfg.talker.num_code_groups:
            raise InputError(f"this voice has {self.ref_codes.shape[1]} code groups; the model uses "
                             f"{cfg.talker.num_code_groups}")

    def metadata(self) -> dict[str, str]:
        meta = {
            "format": FORMAT, "format_version": str(FORMAT_VERSION), "mode": self.mode,
            "model_type": self.model_type, "model_size": self.model_size, "hidden_size": str(self.hidden_size),
            "speaker_encoder_dim": str(self.speaker_encoder_dim),
            "speaker_encoder_sample_rate": str(self.speaker_encoder_sample_rate),
            "num_code_groups": str(self.num_code_groups), "codebook_size": str(self.codebook_size),
            "ref_seconds": f"{self.ref_seconds:.3f}", "tool_version": self.tool_version,
        }
        if self.ref_text is not None and self.mode == "icl":
            meta["ref_text"] = self.ref_text
        return meta


def _size_name(size: str) -> str:
    return {"0b6": "0.6B", "1b7": "1.7B"}.get(size, size or "unknown-size")


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------

def save_voice(path: str | Path, voice: VoicePrompt) -> Path:
    """Write ``voice`` as safetensors, atomically (io/files.py); a failed write (full disk, I/O) is
    an OSError naming ``path``."""
    from ..io.weights import DTYPE_NAMES, TensorSpec, write_safetensors

    path = Path(path)
    if not path.parent.is_dir():
        raise InputError(f"{path.parent}: folder does not exist")
    tensors = {"xvector": voice.xvector.detach().to("cpu", torch.float32).contiguous()}
    if voice.ref_codes is not None:
        tensors["ref_codes"] = voice.ref_codes.detach().to("cpu", torch.int64).contiguous()
    specs = {n: TensorSpec(tuple(t.shape), DTYPE_NAMES[t.dtype]) for n, t in tensors.items()}
    write_safetensors(path, specs, tensors=tensors, metadata=voice.metadata())
    return path


def load_voice(path: str | Path) -> VoicePrompt:
    """Read a voice file written by ``save_voice``; InputError for anything else."""
    from ..io.weights import load_safetensors, read_header

    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path}: is a folder, expected a voice file (.safetensors from `voice create`)")
    if not path.exists():
        raise InputError(f"{path}: voice file not found")
    if not path.is_file():  # safetensors are mapped from a file: a pipe cannot be
        raise InputError(f"{path}: not a regular file; a voice file is read from disk (save it first)")
    try:
        header = read_header(path)
    except ModelError as e:
        raise InputError(f"not a voice file: {e}") from None
    meta = header.metadata or {}
    if meta.get("format") != FORMAT:
        raise InputError(f"{path}: not a qwen3tts voice file (no '{FORMAT}' metadata; make one with "
                         "`qwen3tts voice create`)")
    try:
        version = int(meta.get("format_version", ""))
    except ValueError:
        version = -1
    if version < 1:
        raise InputError(f"{path}: corrupt voice file (format_version {meta.get('format_version')!r})")
    if version > FORMAT_VERSION:
        raise InputError(f"{path}: voice file format {version} is newer than this qwen3tts "
                         f"({__version__}) reads ({FORMAT_VERSION}); upgrade qwen3tts")
    mode = meta.get("mode")
    if mode not in MODES:
        raise InputError(f"{path}: corrupt voice file (mode {mode!r})")
    want = {"xvector"} | ({"ref_codes"} if mode == "icl" else set())
    if set(header.entries) != want:
        raise InputError(f"{path}: corrupt voice file (tensors {sorted(header.entries)}, expected {sorted(want)})")
    try:
        ints = {k: int(meta[k]) for k in ("hidden_size", "speaker_encoder_dim", "speaker_encoder_sample_rate",
                                          "num_code_groups", "codebook_size")}
        ref_seconds = float(meta.get("ref_seconds", "0"))
        tensors = load_safetensors(path)
    except (KeyError, ValueError) as e:
        raise InputError(f"{path}: corrupt voice file (metadata {e})") from None
    except ModelError as e:
        raise InputError(f"not a voice file: {e}") from None
    # Copies: the loader's tensors are views of a file mapping.
    xvector = tensors["xvector"].clone()
    if xvector.dtype != torch.float32 or xvector.shape != (ints["hidden_size"],):
        raise InputError(f"{path}: corrupt voice file (xvector {xvector.dtype} {list(xvector.shape)}, "
                         f"expected float32 [{ints['hidden_size']}])")
    if not bool(torch.isfinite(xvector).all()):
        raise InputError(f"{path}: corrupt voice file (xvector has NaN or infinite values)")
    codes = None
    if mode == "icl":
        codes = tensors["ref_codes"].clone()
        if (codes.dtype != torch.int64 or codes.ndim != 2 or codes.shape[0] == 0
                or codes.shape[1] != ints["num_code_groups"]):
            raise InputError(f"{path}: corrupt voice file (ref_codes {codes.dtype} {list(codes.shape)})")
        if int(codes.min()) < 0 or int(codes.max()) >= ints["codebook_size"]:
            raise InputError(f"{path}: corrupt voice file (ref_codes outside 0..{ints['codebook_size'] - 1})")
    return VoicePrompt(mode=mode, xvector=xvector, ref_codes=codes,
                       ref_text=meta.get("ref_text") if mode == "icl" else None,
                       model_type=meta.get("model_type", ""), model_size=meta.get("model_size", ""),
                       ref_seconds=ref_seconds, tool_version=meta.get("tool_version", ""), **ints)


# ---------------------------------------------------------------------------------------------
# Making a voice
# ---------------------------------------------------------------------------------------------

class VoiceMaker:
    """Turns reference audio into a VoicePrompt with a Base model folder's speaker encoder and
    codec encoder, each loaded on first use (the talker is not needed).

    Both run in float32 whatever the talker's dtype: they are small, run once per voice, and
    bf16 would move the x-vector and can flip codec codes in near-ties.
    """

    def __init__(self, folder: str | Path, cfg: ModelConfig | None = None, device: str | torch.device = "cpu"):
        self.folder = Path(folder)
        self.cfg = cfg or ModelConfig.from_file(self.folder / "config.json")
        self.device = torch.device(device)
        self._speaker = None
        self._codec = None

    @property
    def speaker_encoder(self):
        if self._speaker is None:
            from .speaker import SpeakerEncoder

            self._speaker = SpeakerEncoder.from_folder(self.folder, device=self.device, dtype=torch.float32)
        return self._speaker

    @property
    def codec_encoder(self):
        if self._codec is None:
            from ..codec.encoder import CodecEncoder

            self._codec = CodecEncoder.from_folder(self.folder, device=self.device, dtype=torch.float32)
        return self._codec

    def create(self, ref_audio, ref_text: str | None = None, xvector_only: bool = False) -> VoicePrompt:
        """``ref_audio``: a file (wav/flac/ogg, any rate and channel count) or ``(samples, rate)``.

        In-context mode (the default) needs ``ref_text``, the transcript of the reference audio;
        ``xvector_only`` clones from the speaker embedding alone (no transcript, weaker likeness).
        """
        from ..io.resample import resample

        cfg = self.cfg
        if cfg.tts_model_type != "base" or cfg.speaker_encoder is None:
            raise InputError(f"voice cloning needs a Base model; this model is {cfg.tts_model_type}")
        ref = CloneReference(ref_audio, ref_text=ref_text, xvector_only=xvector_only)  # the options' rules
        wav, sr = ref.read().audio
        spk = cfg.speaker_encoder
        if spk.enc_dim != cfg.talker.hidden_size:
            raise ModelError(f"{self.folder}: speaker encoder dim {spk.enc_dim} differs from the talker "
                             f"hidden size {cfg.talker.hidden_size}")
        # The reference resamples the original audio separately for each encoder.
        wav_spk = resample(wav, sr, spk.sample_rate)
        xvector = self.speaker_encoder.embed(wav_spk).to("cpu", torch.float32)
        codes = None
        if not xvector_only:
            wav_codec = wav_spk if spk.sample_rate == CODEC_SAMPLE_RATE else resample(wav, sr, CODEC_SAMPLE_RATE)
            codes = self.codec_encoder.encode(wav_codec).to(torch.int64)
        return VoicePrompt(mode="xvector" if xvector_only else "icl", xvector=xvector, ref_codes=codes,
                           ref_text=ref_text if not xvector_only else None, model_type=cfg.tts_model_type,
                           model_size=cfg.tts_model_size, hidden_size=cfg.talker.hidden_size,
                           speaker_encoder_dim=spk.enc_dim, speaker_encoder_sample_rate=spk.sample_rate,
                           num_code_groups=cfg.talker.num_code_groups,
                           codebook_size=cfg.talker.code_predictor.vocab_size, ref_seconds=len(wav) / sr)


def cut_reference(audio: np.ndarray, ref_frames: int, total_frames: int) -> np.ndarray:
    """Drop the reference part of audio decoded from ``ref_codes ++ generated`` with the
    reference's own proportional formula (WRAP:generate_voice_clone), float rounding included."""
    cut = int(ref_frames / max(total_frames, 1) * audio.shape[0])
    return audio[cut:]
