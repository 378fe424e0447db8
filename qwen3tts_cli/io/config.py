"""Dataclasses read from the published JSON files of a Qwen3-TTS model folder.

The values in config.json always win. Where a key is absent we fall back to the default of the
official config classes, except where that default is known to be wrong for the release or does
not exist (``head_dim``, ``text_vocab_size``, ``codebook_dim``): those keys are required.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModelError

_MISSING = object()


def _get(d: dict, key: str, default: Any = _MISSING, where: str = "config") -> Any:
    if key in d and d[key] is not None:
        return d[key]
    if default is _MISSING:
        raise ModelError(f"{where}: required key '{key}' is missing")
    return default


def read_json(path: str | Path) -> dict:
    """Read a JSON object, turning every failure into one ModelError naming the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ModelError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{path}: cannot read ({e})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})") from None
    if not isinstance(data, dict):
        raise ModelError(f"{path}: expected a JSON object")
    return data


def _parse_file(cls, path: str | Path):
    """``cls.from_dict`` of a JSON file, every failure one ModelError that names the file."""
    d = read_json(path)
    try:
        return cls.from_dict(d)
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None
    except (TypeError, ValueError, AttributeError) as e:
        raise ModelError(f"{path}: invalid value ({e})") from None


@dataclass(frozen=True)
class DecoderLMConfig:
    """A Qwen3-style decoder stack: the talker and the code predictor share this shape."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    rms_norm_eps: float
    rope_theta: float
    max_position_embeddings: int
    vocab_size: int
    num_code_groups: int

    @classmethod
    def _parse_common(cls, d: dict, where: str, defaults: dict) -> dict:
        out = {}
        for key in (
            "hidden_size",
            "intermediate_size",
            "num_hidden_layers",
            "num_attention_heads",
            "num_key_value_heads",
            "rms_norm_eps",
            "rope_theta",
            "max_position_embeddings",
            "vocab_size",
            "num_code_groups",
        ):
            out[key] = _get(d, key, defaults.get(key, _MISSING), where)
        # head_dim is required: the code default (hidden / heads) is wrong for 0.6B.
        out["head_dim"] = int(_get(d, "head_dim", where=where))
        for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                    "num_key_value_heads", "max_position_embeddings", "vocab_size", "num_code_groups"):
            out[key] = int(out[key])
        out["rms_norm_eps"] = float(out["rms_norm_eps"])
        out["rope_theta"] = float(out["rope_theta"])
        if out["num_attention_heads"] % out["num_key_value_heads"]:
            raise ModelError(f"{where}: num_attention_heads is not a multiple of num_key_value_heads")
        return out


@dataclass(frozen=True)
class CodePredictorConfig(DecoderLMConfig):
    @classmethod
    def from_dict(cls, d: dict) -> "CodePredictorConfig":
        defaults = dict(vocab_size=2048, hidden_size=1024, intermediate_size=3072, num_hidden_layers=5,
                        num_attention_heads=16, num_key_value_heads=8, rms_norm_eps=1e-6,
                        rope_theta=10000.0, max_position_embeddings=32768, num_code_groups=32)
        return cls(**cls._parse_common(d, "talker_config.code_predictor_config", defaults))


@dataclass(frozen=True)
class TalkerConfig(DecoderLMConfig):
    text_hidden_size: int
    text_vocab_size: int
    codec_pad_id: int
    codec_bos_id: int
    codec_eos_token_id: int
    codec_think_id: int
    codec_nothink_id: int
    codec_think_bos_id: int
    codec_think_eos_id: int
    codec_language_id: dict[str, int]
    spk_id: dict[str, int]
    spk_is_dialect: dict[str, str | bool]
    code_predictor: CodePredictorConfig

    @classmethod
    def from_dict(cls, d: dict) -> "TalkerConfig":
        where = "talker_config"
        defaults = dict(vocab_size=3072, hidden_size=1024, intermediate_size=2048, num_hidden_layers=20,
                        num_attention_heads=16, num_key_value_heads=2, rms_norm_eps=1e-6,
                        rope_theta=10000.0, max_position_embeddings=32768, num_code_groups=32)
        common = cls._parse_common(d, where, defaults)
        ids = {}
        for key, default in (("codec_pad_id", 4196), ("codec_bos_id", 4197), ("codec_eos_token_id", 4198),
                             ("codec_think_id", 4202), ("codec_nothink_id", 4203),
                             ("codec_think_bos_id", 4204), ("codec_think_eos_id", 4205)):
            ids[key] = int(_get(d, key, default, where))
        cp = _get(d, "code_predictor_config", {}, where)
        if not isinstance(cp, dict):
            raise ModelError(f"{where}.code_predictor_config: expected an object")
        return cls(
            **common,
            **ids,
            text_hidden_size=int(_get(d, "text_hidden_size", 2048, where)),
            text_vocab_size=int(_get(d, "text_vocab_size", where=where)),
            codec_language_id={k.lower(): int(v) for k, v in (_get(d, "codec_language_id", {}, where)).items()},
            spk_id={k.lower(): int(v) for k, v in (_get(d, "spk_id", {}, where)).items()},
            spk_is_dialect={k.lower(): v for k, v in (_get(d, "spk_is_dialect", {}, where)).items()},
            code_predictor=CodePredictorConfig.from_dict(cp),
        )


@dataclass(frozen=True)
class SpeakerEncoderConfig:
    enc_dim: int = 1024
    sample_rate: int = 24000
    mel_dim: int = 128
    enc_channels: tuple[int, ...] = (512, 512, 512, 512, 1536)
    enc_kernel_sizes: tuple[int, ...] = (5, 3, 3, 3, 1)
    enc_dilations: tuple[int, ...] = (1, 2, 3, 4, 1)
    enc_attention_channels: int = 128
    enc_res2net_scale: int = 8
    enc_se_channels: int = 128

    @classmethod
    def from_dict(cls, d: dict) -> "SpeakerEncoderConfig":
        kw = {}
        for f in cls.__dataclass_fields__.values():
            if f.name in d and d[f.name] is not None:
                v = d[f.name]
                kw[f.name] = tuple(int(x) for x in v) if isinstance(v, list) else int(v)
        return cls(**kw)


MODEL_TYPES = ("base", "custom_voice", "voice_design")


@dataclass(frozen=True)
class ModelConfig:
    """config.json of a Qwen3-TTS model repo."""

    tts_model_type: str
    tts_model_size: str
    tokenizer_type: str
    im_start_token_id: int
    im_end_token_id: int
    assistant_token_id: int
    tts_pad_token_id: int
    tts_bos_token_id: int
    tts_eos_token_id: int
    talker: TalkerConfig
    speaker_encoder: SpeakerEncoderConfig | None
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        model_type = _get(d, "model_type", "qwen3_tts")
        if model_type != "qwen3_tts":
            what = (" (the speech tokenizer's folder: give the model folder above it)"
                    if model_type == "qwen3_tts_tokenizer_12hz" else "")
            raise ModelError(f"not a Qwen3-TTS model: model_type is '{model_type}', expected 'qwen3_tts'{what}")
        tts_type = _get(d, "tts_model_type")
        if tts_type not in MODEL_TYPES:
            raise ModelError(f"config.json: unknown tts_model_type '{tts_type}'")
        talker = _get(d, "talker_config")
        if not isinstance(talker, dict):
            raise ModelError("config.json: talker_config must be an object")
        spk = None
        if tts_type == "base":
            spk = SpeakerEncoderConfig.from_dict(d.get("speaker_encoder_config") or {})
        return cls(
            tts_model_type=tts_type,
            tts_model_size=str(_get(d, "tts_model_size", "")),
            tokenizer_type=str(_get(d, "tokenizer_type", "qwen3_tts_tokenizer_12hz")),
            im_start_token_id=int(_get(d, "im_start_token_id", 151644)),
            im_end_token_id=int(_get(d, "im_end_token_id", 151645)),
            assistant_token_id=int(_get(d, "assistant_token_id", 77091)),
            tts_pad_token_id=int(_get(d, "tts_pad_token_id", 151671)),
            tts_bos_token_id=int(_get(d, "tts_bos_token_id", 151672)),
            tts_eos_token_id=int(_get(d, "tts_eos_token_id", 151673)),
            talker=TalkerConfig.from_dict(talker),
            speaker_encoder=spk,
            raw=d,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "ModelConfig":
        return _parse_file(cls, path)

    @property
    def speakers(self) -> list[str]:
        return sorted(self.talker.spk_id)

    @property
    def languages(self) -> list[str]:
        """Languages a user may ask for: 'auto' plus every non-dialect language id."""
        return ["auto"] + sorted(k for k in self.talker.codec_language_id if "dialect" not in k)


@dataclass(frozen=True)
class GenerationConfig:
    """generation_config.json: sampling defaults for the first code and for the code predictor."""

    do_sample: bool = True
    temperature: float = 0.9
    top_k: int = 50
    top_p: float = 1.0
    repetition_penalty: float = 1.05
    subtalker_dosample: bool = True
    subtalker_temperature: float = 0.9
    subtalker_top_k: int = 50
    subtalker_top_p: float = 1.0
    max_new_tokens: int = 2048

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationConfig":
        kw = {}
        for f in cls.__dataclass_fields__.values():
            if f.name in d and d[f.name] is not None:
                kw[f.name] = type(getattr(cls, f.name))(d[f.name])
        return cls(**kw)

    @classmethod
    def from_file(cls, path: str | Path) -> "GenerationConfig":
        return _parse_file(cls, path)


@dataclass(frozen=True)
class CodecDecoderConfig:
    codebook_size: int
    codebook_dim: int
    latent_dim: int
    hidden_size: int
    head_dim: int
    num_attention_heads: int
    num_key_value_heads: int
    intermediate_size: int
    num_hidden_layers: int
    rms_norm_eps: float
    rope_theta: float
    sliding_window: int
    num_quantizers: int
    upsample_rates: tuple[int, ...]
    upsampling_ratios: tuple[int, ...]
    decoder_dim: int

    @classmethod
    def from_dict(cls, d: dict) -> "CodecDecoderConfig":
        w = "decoder_config"
        return cls(
            codebook_size=int(_get(d, "codebook_size", 2048, w)),
            codebook_dim=int(_get(d, "codebook_dim", where=w)),
            latent_dim=int(_get(d, "latent_dim", 1024, w)),
            hidden_size=int(_get(d, "hidden_size", 1024, w)),
            head_dim=int(_get(d, "head_dim", where=w)),
            num_attention_heads=int(_get(d, "num_attention_heads", 16, w)),
            num_key_value_heads=int(_get(d, "num_key_value_heads", 16, w)),
            intermediate_size=int(_get(d, "intermediate_size", 3072, w)),
            num_hidden_layers=int(_get(d, "num_hidden_layers", 8, w)),
            rms_norm_eps=float(_get(d, "rms_norm_eps", 1e-5, w)),
            rope_theta=float(_get(d, "rope_theta", 10000.0, w)),
            sliding_window=int(_get(d, "sliding_window", 72, w)),
            num_quantizers=int(_get(d, "num_quantizers", 16, w)),
            upsample_rates=tuple(int(x) for x in _get(d, "upsample_rates", [8, 5, 4, 3], w)),
            upsampling_ratios=tuple(int(x) for x in _get(d, "upsampling_ratios", [2, 2], w)),
            decoder_dim=int(_get(d, "decoder_dim", 1536, w)),
        )


@dataclass(frozen=True)
class CodecEncoderConfig:
    """The Mimi-style encoder (a transformers MimiConfig dump)."""

    audio_channels: int
    num_filters: int
    kernel_size: int
    residual_kernel_size: int
    last_kernel_size: int
    num_residual_layers: int
    dilation_growth_rate: int
    compress: int
    upsampling_ratios: tuple[int, ...]
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    head_dim: int
    intermediate_size: int
    norm_eps: float
    rope_theta: float
    sliding_window: int
    num_quantizers: int
    num_semantic_quantizers: int
    codebook_size: int
    codebook_dim: int

    @classmethod
    def from_dict(cls, d: dict) -> "CodecEncoderConfig":
        w = "encoder_config"
        hidden = int(_get(d, "hidden_size", 512, w))
        heads = int(_get(d, "num_attention_heads", 8, w))
        return cls(
            audio_channels=int(_get(d, "audio_channels", 1, w)),
            num_filters=int(_get(d, "num_filters", 32, w)),
            kernel_size=int(_get(d, "kernel_size", 7, w)),
            residual_kernel_size=int(_get(d, "residual_kernel_size", 3, w)),
            last_kernel_size=int(_get(d, "last_kernel_size", 3, w)),
            num_residual_layers=int(_get(d, "num_residual_layers", 1, w)),
            dilation_growth_rate=int(_get(d, "dilation_growth_rate", 2, w)),
            compress=int(_get(d, "compress", 2, w)),
            upsampling_ratios=tuple(int(x) for x in _get(d, "upsampling_ratios", [8, 6, 5, 4], w)),
            hidden_size=hidden,
            num_hidden_layers=int(_get(d, "num_hidden_layers", 8, w)),
            num_attention_heads=heads,
            num_key_value_heads=int(_get(d, "num_key_value_heads", heads, w)),
            head_dim=int(_get(d, "head_dim", hidden // heads, w)),
            intermediate_size=int(_get(d, "intermediate_size", 2048, w)),
            norm_eps=float(_get(d, "norm_eps", 1e-5, w)),
            rope_theta=float(_get(d, "rope_theta", 10000.0, w)),
            sliding_window=int(_get(d, "sliding_window", 250, w)),
            num_quantizers=int(_get(d, "num_quantizers", 32, w)),
            num_semantic_quantizers=int(_get(d, "num_semantic_quantizers", 1, w)),
            codebook_size=int(_get(d, "codebook_size", 2048, w)),
            codebook_dim=int(_get(d, "codebook_dim", 256, w)),
        )


@dataclass(frozen=True)
class CodecConfig:
    """speech_tokenizer/config.json (= the Qwen3-TTS-Tokenizer-12Hz repo's config.json)."""

    encoder_valid_num_quantizers: int
    input_sample_rate: int
    output_sample_rate: int
    encode_downsample_rate: int
    decode_upsample_rate: int
    decoder: CodecDecoderConfig
    encoder: CodecEncoderConfig
    raw: dict = field(repr=False, compare=False, default_factory=dict)

    @classmethod
    def from_dict(cls, d: dict) -> "CodecConfig":
        model_type = _get(d, "model_type", "qwen3_tts_tokenizer_12hz")
        if model_type != "qwen3_tts_tokenizer_12hz":
            raise ModelError(f"speech tokenizer config: model_type is '{model_type}', "
                             "expected 'qwen3_tts_tokenizer_12hz'")
        dec = _get(d, "decoder_config")
        enc = _get(d, "encoder_config")
        if not isinstance(dec, dict) or not isinstance(enc, dict):
            raise ModelError("speech tokenizer config: decoder_config and encoder_config must be objects")
        return cls(
            encoder_valid_num_quantizers=int(_get(d, "encoder_valid_num_quantizers", 16)),
            input_sample_rate=int(_get(d, "input_sample_rate", 24000)),
            output_sample_rate=int(_get(d, "output_sample_rate", 24000)),
            encode_downsample_rate=int(_get(d, "encode_downsample_rate", 1920)),
            decode_upsample_rate=int(_get(d, "decode_upsample_rate", 1920)),
            decoder=CodecDecoderConfig.from_dict(dec),
            encoder=CodecEncoderConfig.from_dict(enc),
            raw=d,
        )

    @classmethod
    def from_file(cls, path: str | Path) -> "CodecConfig":
        return _parse_file(cls, path)
