"""Random-weight checkpoints in the exact official layout, for machines that cannot reach the hub.

``full`` reproduces the published configs byte for byte and the published tensor names, shapes,
dtypes and header format, so model.safetensors has exactly the published byte size. ``tiny`` keeps
the structure, the real vocab sizes, special ids and codec rates, with small widths and depths.

Weights are drawn per tensor from a generator seeded by (seed, crc32(name)), so files do not
depend on write order and the same seed gives byte-identical files. They are scaled so that
activations stay O(1), logit heads have a wide spread (greedy argmax is robust to rounding), and
codec codebooks are non-degenerate (the official init leaves them at zero, which would make every
code decode to the same vector).
"""

from __future__ import annotations

import copy
import json
import shutil
import zlib
from pathlib import Path

import numpy as np
import torch

from .config import CodecConfig, ModelConfig
from .manifest import MANIFEST_NAME, write_manifest
from .repos import get_repo, metadata_dir, repo_metadata_files, sha256_file
from .weights import (DTYPE_NAMES, DTYPES, TensorSpec, expected_codec_tensors, expected_model_tensors,
                      write_safetensors)

MODELS = ("0.6B-Base", "0.6B-CustomVoice", "1.7B-Base", "1.7B-CustomVoice", "1.7B-VoiceDesign", "Tokenizer-12Hz")
SIZES = ("tiny", "full")

# Widths of the tiny preset. 1.7B variants get a talker wider than the code predictor so that
# small_to_mtp_projection exists, as in the real 1.7B models.
_TINY_TALKER = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                    num_key_value_heads=2, head_dim=32, text_hidden_size=32)
_TINY_TALKER_17B = dict(_TINY_TALKER, hidden_size=96, intermediate_size=192)
_TINY_CODE_PREDICTOR = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                            num_key_value_heads=2, head_dim=32)
_TINY_SPEAKER_ENCODER = dict(enc_channels=[32, 32, 32, 32, 96], enc_kernel_sizes=[5, 3, 3, 3, 1],
                             enc_dilations=[1, 2, 3, 4, 1], enc_attention_channels=16, enc_res2net_scale=8,
                             enc_se_channels=16, mel_dim=128)
_TINY_CODEC_DECODER = dict(codebook_dim=64, latent_dim=64, hidden_size=32, head_dim=16, num_attention_heads=4,
                           num_key_value_heads=4, intermediate_size=64, num_hidden_layers=2, decoder_dim=64)
_TINY_CODEC_ENCODER = dict(num_filters=4, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                           num_key_value_heads=4, head_dim=8, intermediate_size=64, codebook_dim=16,
                           vector_quantization_hidden_dimension=16, upsample_groups=32)

_FINAL_CONV = ".6.conv.weight"
_BRANCH_GAIN = 0.3
_OUTPUT_GAIN = 0.08
# Transposed convolutions store weights as [in, out, k]; their fan-in is in * k / stride.
_TRANSPOSED = ("decoder.upsample.", "decoder.decoder.")


def tiny_model_config(official: dict, short: str) -> dict:
    cfg = copy.deepcopy(official)
    talker = cfg["talker_config"]
    talker.update(_TINY_TALKER_17B if short.startswith("1.7B") else _TINY_TALKER)
    talker["code_predictor_config"].update(_TINY_CODE_PREDICTOR)
    if "speaker_encoder_config" in cfg:
        cfg["speaker_encoder_config"].update(_TINY_SPEAKER_ENCODER, enc_dim=talker["hidden_size"])
    return cfg


def tiny_codec_config(official: dict) -> dict:
    cfg = copy.deepcopy(official)
    cfg["decoder_config"].update(_TINY_CODEC_DECODER)
    cfg["encoder_config"].update(_TINY_CODEC_ENCODER)
    return cfg


def _rng(seed: int, name: str) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, zlib.crc32(name.encode())])))


def _normal(seed: int, name: str, shape: tuple[int, ...], std: float, mean: float = 0.0) -> torch.Tensor:
    x = _rng(seed, name).standard_normal(size=shape, dtype=np.float32)
    if std != 1.0:
        x *= np.float32(std)
    if mean:
        x += np.float32(mean)
    return torch.from_numpy(x)


def random_tensor(name: str, spec: TensorSpec, seed: int) -> torch.Tensor:
    """One tensor of a random checkpoint, scaled for its role (see the module docstring)."""
    shape = spec.shape
    leaf = name.rsplit(".", 2)
    last = leaf[-1]
    if name.endswith("codebook.initialized"):
        x = torch.ones(shape)
    elif last == "cluster_usage":
        x = torch.from_numpy(_rng(seed, name).uniform(0.5, 2.0, size=shape).astype(np.float32))
    elif last in ("embedding_sum", "embed_sum"):
        usage = random_tensor(name.rsplit(".", 1)[0] + ".cluster_usage", TensorSpec(shape[:1], "F32"), seed)
        x = _normal(seed, name, shape, 1.0) * usage[:, None]
    elif last in ("alpha", "beta"):  # SnakeBeta parameters are stored as logs
        x = _normal(seed, name, shape, 0.1)
    elif last in ("scale", "gamma"):  # LayerScale / ConvNeXt gamma
        x = _normal(seed, name, shape, 0.02, mean=0.1)
    elif last == "weight" and len(shape) == 1:  # RMSNorm / LayerNorm gains
        x = _normal(seed, name, shape, 0.1, mean=1.0)
    elif last == "bias":
        x = _normal(seed, name, shape, 0.02)
    elif "embedding" in name:
        x = _normal(seed, name, shape, 1.0)
    elif name.endswith("codec_head.weight") or ".lm_head." in name:
        x = _normal(seed, name, shape, 4.0 / shape[1] ** 0.5)
    elif len(shape) == 3 and name.startswith(_TRANSPOSED) and _is_transposed(name):
        stride = shape[2] if name.startswith("decoder.upsample.") else shape[2] // 2
        fan_in = shape[0] * (shape[2] // stride)
        x = _normal(seed, name, shape, 1.0 / fan_in ** 0.5)
    elif name.startswith("decoder.decoder.") and (".conv2." in name or name.endswith(_FINAL_CONV)):
        # Residual branches and the output conv start small so the waveform is not clipped.
        fan_in = int(np.prod(shape[1:]))
        gain = _OUTPUT_GAIN if name.endswith(_FINAL_CONV) else _BRANCH_GAIN
        x = _normal(seed, name, shape, gain / fan_in ** 0.5)
    elif len(shape) >= 2:
        fan_in = int(np.prod(shape[1:]))
        x = _normal(seed, name, shape, 1.0 / fan_in ** 0.5)
    else:
        x = _normal(seed, name, shape, 0.02)
    return x.to(DTYPES[spec.dtype])


def _is_transposed(name: str) -> bool:
    parts = name.split(".")
    # decoder.upsample.{i}.0.conv.weight and decoder.decoder.{i}.block.1.conv.weight
    if parts[1] == "upsample":
        return parts[3] == "0"
    return len(parts) > 5 and parts[3] == "block" and parts[4] == "1"


def random_model_weights(cfg: ModelConfig, seed: int, dtype: str = "BF16") -> dict[str, torch.Tensor]:
    """Random weights of a model config in memory (for benchmarks without a checkpoint)."""
    return {n: random_tensor(n, s, seed) for n, s in expected_model_tensors(cfg, dtype).items()}


def _dump_json(obj: dict, path: Path) -> None:
    path.write_text(json.dumps(obj, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def build_checkpoint(model: str, size: str, seed: int, out_dir: str | Path) -> Path:
    """Write a random-weight checkpoint of an official repo's layout into ``out_dir``."""
    repo = get_repo(model)
    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}")
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST_NAME).exists():
        raise ValueError(f"{out} is not empty; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)
    files = repo_metadata_files(repo)
    for rel, src in files.items():
        dst = out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
    codec_official = json.loads((metadata_dir() / "common" / "speech_tokenizer" / "config.json").read_text())
    codec_dir = out if repo.kind == "tokenizer" else out / "speech_tokenizer"
    if size == "tiny":
        _dump_json(tiny_codec_config(codec_official), codec_dir / "config.json")
    codec_cfg = CodecConfig.from_file(codec_dir / "config.json")
    write_safetensors(codec_dir / "model.safetensors", expected_codec_tensors(codec_cfg),
                      make=lambda n, s: random_tensor(n, s, seed))
    if repo.kind == "model":
        if size == "tiny":
            official = json.loads(files["config.json"].read_text())
            _dump_json(tiny_model_config(official, repo.short), out / "config.json")
        cfg = ModelConfig.from_file(out / "config.json")
        # The published CustomVoice/VoiceDesign files carry {"format": "pt"}; Base files carry none.
        meta = None if cfg.tts_model_type == "base" else {"format": "pt"}
        write_safetensors(out / "model.safetensors", expected_model_tensors(cfg),
                          make=lambda n, s: random_tensor(n, s, seed), metadata=meta)
    listed = sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    manifest = {
        "source": "make_checkpoint",
        "model": repo.short,
        "size": size,
        "seed": seed,
        "files": {p.relative_to(out).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in listed},
    }
    write_manifest(out, manifest)
    return out


# The speaker id the official fine-tuning script (finetuning/sft_12hz.py) gives its one new voice.
FINETUNE_SPEAKER_ID = 3000


def rewrite_checkpoint(src: str | Path, out_dir: str | Path, *, dtype: str | None = None, shards: int = 1,
                       finetune_speaker: str | None = None, seed: int = 0) -> Path:
    """A copy of a model folder in a form users bring: the weights stored in ``dtype`` ("F32",
    "F16" or "BF16"), split over ``shards`` files with a ``model.safetensors.index.json``, and/or a
    Base model in the layout the official fine-tuning script writes (``finetune_speaker``):
    tts_model_type custom_voice with that one speaker at codec id 3000 (not a dialect),
    speaker_encoder_config kept, the speaker encoder's tensors dropped, and the speaker's codec
    embedding row set (there: the training voice's x-vector; here: a seeded random row of the
    table's scale)."""
    from .weights import load_safetensors, safetensors_files

    src, out = Path(src), Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out} is not empty; give a new or empty folder")
    shutil.copytree(src, out, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n.startswith("model") and Path(d) == src
                                             or n == MANIFEST_NAME])
    tensors = load_safetensors(safetensors_files(src))
    meta = {"format": "pt"}
    if finetune_speaker is not None:
        config = json.loads((src / "config.json").read_text(encoding="utf-8"))
        if config.get("tts_model_type") != "base":
            raise ValueError("the fine-tuning script starts from a Base model")
        config["tts_model_type"] = "custom_voice"
        config["talker_config"]["spk_id"] = {finetune_speaker: FINETUNE_SPEAKER_ID}
        config["talker_config"]["spk_is_dialect"] = {finetune_speaker: False}
        _dump_json(config, out / "config.json")
        tensors = {n: t for n, t in tensors.items() if not n.startswith("speaker_encoder")}
        table = tensors["talker.model.codec_embedding.weight"].clone()
        g = torch.Generator().manual_seed(seed)
        table[FINETUNE_SPEAKER_ID] = (torch.randn(table.shape[1], generator=g) * table.float().std()).to(table.dtype)
        tensors["talker.model.codec_embedding.weight"] = table
    if dtype is not None:
        tensors = {n: t.to(DTYPES[dtype]) if t.is_floating_point() else t for n, t in tensors.items()}
    names = sorted(tensors)
    parts = [names[k::shards] for k in range(shards)]
    for k, part in enumerate(parts):
        name = "model.safetensors" if shards == 1 else f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
        write_safetensors(out / name, {n: TensorSpec(tuple(tensors[n].shape), DTYPE_NAMES[tensors[n].dtype])
                                       for n in part}, tensors=tensors, metadata=meta)
    if shards > 1:
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        _dump_json({"metadata": {"total_size": total},
                    "weight_map": {n: f"model-{k + 1:05d}-of-{shards:05d}.safetensors"
                                   for k, part in enumerate(parts) for n in part}},
                   out / "model.safetensors.index.json")
    listed = sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    write_manifest(out, {
        "source": "make_checkpoint", "from": str(src), "dtype": dtype, "shards": shards,
        "finetune_speaker": finetune_speaker,
        "files": {p.relative_to(out).as_posix(): {"size": p.stat().st_size, "sha256": sha256_file(p)} for p in listed},
    })
    return out
