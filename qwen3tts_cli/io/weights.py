"""Checkpoint files: the expected tensor set of a config, mmap safetensors loading, and a writer.

Nothing here unpickles anything: safetensors is a JSON header followed by raw little-endian data,
which we parse ourselves so that loading is a zero-copy view of a private file mapping.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

import torch

from .config import CodecConfig, ModelConfig
from ..errors import ModelError, reading

DTYPES: dict[str, torch.dtype] = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}
DTYPE_NAMES = {v: k for k, v in DTYPES.items()}
DTYPE_SIZES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
# The order the reference safetensors writer sorts tensors in: larger dtypes first, then by name.
_DTYPE_RANK = {"I64": 9, "F64": 8, "F32": 7, "I32": 6, "BF16": 5, "F16": 4, "I16": 3, "I8": 2, "U8": 1, "BOOL": 0}

MAX_HEADER_BYTES = 100_000_000


@dataclass(frozen=True)
class TensorSpec:
    shape: tuple[int, ...]
    dtype: str  # safetensors dtype name, e.g. "BF16"

    @property
    def nbytes(self) -> int:
        n = DTYPE_SIZES[self.dtype]
        for s in self.shape:
            n *= s
        return n


# --------------------------------------------------------------------------------------------
# What a config implies
# --------------------------------------------------------------------------------------------

def _decoder_stack(prefix: str, n_layers: int, hidden: int, inter: int, heads: int, kv_heads: int,
                   head_dim: int, dtype: str, qk_norm: bool) -> dict[str, TensorSpec]:
    out: dict[str, TensorSpec] = {}
    for i in range(n_layers):
        p = f"{prefix}.layers.{i}"
        out[f"{p}.self_attn.q_proj.weight"] = TensorSpec((heads * head_dim, hidden), dtype)
        out[f"{p}.self_attn.k_proj.weight"] = TensorSpec((kv_heads * head_dim, hidden), dtype)
        out[f"{p}.self_attn.v_proj.weight"] = TensorSpec((kv_heads * head_dim, hidden), dtype)
        out[f"{p}.self_attn.o_proj.weight"] = TensorSpec((hidden, heads * head_dim), dtype)
        if qk_norm:
            out[f"{p}.self_attn.q_norm.weight"] = TensorSpec((head_dim,), dtype)
            out[f"{p}.self_attn.k_norm.weight"] = TensorSpec((head_dim,), dtype)
        out[f"{p}.mlp.gate_proj.weight"] = TensorSpec((inter, hidden), dtype)
        out[f"{p}.mlp.up_proj.weight"] = TensorSpec((inter, hidden), dtype)
        out[f"{p}.mlp.down_proj.weight"] = TensorSpec((hidden, inter), dtype)
        out[f"{p}.input_layernorm.weight"] = TensorSpec((hidden,), dtype)
        out[f"{p}.post_attention_layernorm.weight"] = TensorSpec((hidden,), dtype)
    out[f"{prefix}.norm.weight"] = TensorSpec((hidden,), dtype)
    return out


def expected_model_tensors(cfg: ModelConfig, dtype: str = "BF16") -> dict[str, TensorSpec]:
    """Names, shapes and dtypes of model.safetensors as the official classes lay it out."""
    t = cfg.talker
    cp = t.code_predictor
    H = t.hidden_size
    out: dict[str, TensorSpec] = {
        "talker.model.text_embedding.weight": TensorSpec((t.text_vocab_size, t.text_hidden_size), dtype),
        "talker.model.codec_embedding.weight": TensorSpec((t.vocab_size, H), dtype),
    }
    out.update(_decoder_stack("talker.model", t.num_hidden_layers, H, t.intermediate_size,
                              t.num_attention_heads, t.num_key_value_heads, t.head_dim, dtype, True))
    out["talker.text_projection.linear_fc1.weight"] = TensorSpec((t.text_hidden_size, t.text_hidden_size), dtype)
    out["talker.text_projection.linear_fc1.bias"] = TensorSpec((t.text_hidden_size,), dtype)
    out["talker.text_projection.linear_fc2.weight"] = TensorSpec((H, t.text_hidden_size), dtype)
    out["talker.text_projection.linear_fc2.bias"] = TensorSpec((H,), dtype)
    out["talker.codec_head.weight"] = TensorSpec((t.vocab_size, H), dtype)
    for g in range(t.num_code_groups - 1):
        out[f"talker.code_predictor.model.codec_embedding.{g}.weight"] = TensorSpec((cp.vocab_size, H), dtype)
        out[f"talker.code_predictor.lm_head.{g}.weight"] = TensorSpec((cp.vocab_size, cp.hidden_size), dtype)
    out.update(_decoder_stack("talker.code_predictor.model", cp.num_hidden_layers, cp.hidden_size,
                              cp.intermediate_size, cp.num_attention_heads, cp.num_key_value_heads,
                              cp.head_dim, dtype, True))
    if cp.hidden_size != H:
        out["talker.code_predictor.small_to_mtp_projection.weight"] = TensorSpec((cp.hidden_size, H), dtype)
        out["talker.code_predictor.small_to_mtp_projection.bias"] = TensorSpec((cp.hidden_size,), dtype)
    if cfg.speaker_encoder is not None:
        out.update(_speaker_encoder_tensors(cfg, dtype))
    return out


def _conv(out: dict, name: str, c_out: int, c_in: int, k: int, dtype: str, bias: bool = True) -> None:
    out[f"{name}.weight"] = TensorSpec((c_out, c_in, k), dtype)
    if bias:
        out[f"{name}.bias"] = TensorSpec((c_out,), dtype)


def _speaker_encoder_tensors(cfg: ModelConfig, dtype: str) -> dict[str, TensorSpec]:
    s = cfg.speaker_encoder
    assert s is not None
    ch, ks = s.enc_channels, s.enc_kernel_sizes
    out: dict[str, TensorSpec] = {}
    p = "speaker_encoder"
    _conv(out, f"{p}.blocks.0.conv", ch[0], s.mel_dim, ks[0], dtype)
    for i in range(1, len(ch) - 1):
        b = f"{p}.blocks.{i}"
        _conv(out, f"{b}.tdnn1.conv", ch[i], ch[i - 1], 1, dtype)
        width = ch[i] // s.enc_res2net_scale
        for j in range(s.enc_res2net_scale - 1):
            _conv(out, f"{b}.res2net_block.blocks.{j}.conv", width, width, ks[i], dtype)
        _conv(out, f"{b}.tdnn2.conv", ch[i], ch[i], 1, dtype)
        _conv(out, f"{b}.se_block.conv1", s.enc_se_channels, ch[i], 1, dtype)
        _conv(out, f"{b}.se_block.conv2", ch[i], s.enc_se_channels, 1, dtype)
    _conv(out, f"{p}.mfa.conv", ch[-1], sum(ch[1:-1]), ks[-1], dtype)
    _conv(out, f"{p}.asp.tdnn.conv", s.enc_attention_channels, ch[-1] * 3, 1, dtype)
    _conv(out, f"{p}.asp.conv", ch[-1], s.enc_attention_channels, 1, dtype)
    _conv(out, f"{p}.fc", s.enc_dim, ch[-1] * 2, 1, dtype)
    return out


def expected_codec_tensors(cfg: CodecConfig, dtype: str = "F32") -> dict[str, TensorSpec]:
    """Names, shapes and dtypes of speech_tokenizer/model.safetensors (decoder + Mimi encoder)."""
    out: dict[str, TensorSpec] = {}
    d = cfg.decoder
    inner = d.codebook_dim // 2
    q = "decoder.quantizer"
    for part, n in (("rvq_first", 1), ("rvq_rest", d.num_quantizers - 1)):
        out[f"{q}.{part}.input_proj.weight"] = TensorSpec((inner, d.codebook_dim, 1), dtype)
        out[f"{q}.{part}.output_proj.weight"] = TensorSpec((d.codebook_dim, inner, 1), dtype)
        for i in range(n):
            out[f"{q}.{part}.vq.layers.{i}._codebook.embedding_sum"] = TensorSpec((d.codebook_size, inner), dtype)
            out[f"{q}.{part}.vq.layers.{i}._codebook.cluster_usage"] = TensorSpec((d.codebook_size,), dtype)
    _conv(out, "decoder.pre_conv.conv", d.latent_dim, d.codebook_dim, 3, dtype)
    pt = "decoder.pre_transformer"
    out[f"{pt}.input_proj.weight"] = TensorSpec((d.hidden_size, d.latent_dim), dtype)
    out[f"{pt}.input_proj.bias"] = TensorSpec((d.hidden_size,), dtype)
    out.update(_decoder_stack(pt, d.num_hidden_layers, d.hidden_size, d.intermediate_size,
                              d.num_attention_heads, d.num_key_value_heads, d.head_dim, dtype, False))
    for i in range(d.num_hidden_layers):
        out[f"{pt}.layers.{i}.self_attn_layer_scale.scale"] = TensorSpec((d.hidden_size,), dtype)
        out[f"{pt}.layers.{i}.mlp_layer_scale.scale"] = TensorSpec((d.hidden_size,), dtype)
    out[f"{pt}.output_proj.weight"] = TensorSpec((d.latent_dim, d.hidden_size), dtype)
    out[f"{pt}.output_proj.bias"] = TensorSpec((d.latent_dim,), dtype)
    L = d.latent_dim
    for i, r in enumerate(d.upsampling_ratios):
        u = f"decoder.upsample.{i}"
        _conv(out, f"{u}.0.conv", L, L, r, dtype)  # ConvTranspose1d weight is [in, out, k]
        _conv(out, f"{u}.1.dwconv.conv", L, 1, 7, dtype)
        out[f"{u}.1.norm.weight"] = TensorSpec((L,), dtype)
        out[f"{u}.1.norm.bias"] = TensorSpec((L,), dtype)
        out[f"{u}.1.pwconv1.weight"] = TensorSpec((4 * L, L), dtype)
        out[f"{u}.1.pwconv1.bias"] = TensorSpec((4 * L,), dtype)
        out[f"{u}.1.pwconv2.weight"] = TensorSpec((L, 4 * L), dtype)
        out[f"{u}.1.pwconv2.bias"] = TensorSpec((L,), dtype)
        out[f"{u}.1.gamma"] = TensorSpec((L,), dtype)
    _conv(out, "decoder.decoder.0.conv", d.decoder_dim, L, 7, dtype)
    c_in = d.decoder_dim
    for i, r in enumerate(d.upsample_rates, start=1):
        c_out = c_in // 2
        b = f"decoder.decoder.{i}.block"
        out[f"{b}.0.alpha"] = TensorSpec((c_in,), dtype)
        out[f"{b}.0.beta"] = TensorSpec((c_in,), dtype)
        out[f"{b}.1.conv.weight"] = TensorSpec((c_in, c_out, 2 * r), dtype)  # transposed: [in, out, k]
        out[f"{b}.1.conv.bias"] = TensorSpec((c_out,), dtype)
        for j in (2, 3, 4):
            for act in ("act1", "act2"):
                out[f"{b}.{j}.{act}.alpha"] = TensorSpec((c_out,), dtype)
                out[f"{b}.{j}.{act}.beta"] = TensorSpec((c_out,), dtype)
            _conv(out, f"{b}.{j}.conv1.conv", c_out, c_out, 7, dtype)
            _conv(out, f"{b}.{j}.conv2.conv", c_out, c_out, 1, dtype)
        c_in = c_out
    n = len(d.upsample_rates)
    out[f"decoder.decoder.{n + 1}.alpha"] = TensorSpec((c_in,), dtype)
    out[f"decoder.decoder.{n + 1}.beta"] = TensorSpec((c_in,), dtype)
    _conv(out, f"decoder.decoder.{n + 2}.conv", 1, c_in, 7, dtype)
    out.update(_mimi_encoder_tensors(cfg, dtype))
    return out


def _mimi_encoder_tensors(cfg: CodecConfig, dtype: str) -> dict[str, TensorSpec]:
    e = cfg.encoder
    out: dict[str, TensorSpec] = {}
    p = "encoder.encoder.layers"
    idx = 0
    _conv(out, f"{p}.{idx}.conv", e.num_filters, e.audio_channels, e.kernel_size, dtype)
    idx += 1
    mult = 1
    for ratio in reversed(e.upsampling_ratios):
        c = mult * e.num_filters
        for j in range(e.num_residual_layers):
            _conv(out, f"{p}.{idx}.block.1.conv", c // e.compress, c, e.residual_kernel_size, dtype)
            _conv(out, f"{p}.{idx}.block.3.conv", c, c // e.compress, 1, dtype)
            idx += 1
        idx += 1  # ELU
        _conv(out, f"{p}.{idx}.conv", 2 * c, c, 2 * ratio, dtype)
        idx += 1
        mult *= 2
    idx += 1  # ELU
    _conv(out, f"{p}.{idx}.conv", e.hidden_size, mult * e.num_filters, e.last_kernel_size, dtype)
    t = "encoder.encoder_transformer.layers"
    width = e.num_attention_heads * e.head_dim
    kv = e.num_key_value_heads * e.head_dim
    for i in range(e.num_hidden_layers):
        out[f"{t}.{i}.self_attn.q_proj.weight"] = TensorSpec((width, e.hidden_size), dtype)
        out[f"{t}.{i}.self_attn.k_proj.weight"] = TensorSpec((kv, e.hidden_size), dtype)
        out[f"{t}.{i}.self_attn.v_proj.weight"] = TensorSpec((kv, e.hidden_size), dtype)
        out[f"{t}.{i}.self_attn.o_proj.weight"] = TensorSpec((e.hidden_size, width), dtype)
        out[f"{t}.{i}.mlp.fc1.weight"] = TensorSpec((e.intermediate_size, e.hidden_size), dtype)
        out[f"{t}.{i}.mlp.fc2.weight"] = TensorSpec((e.hidden_size, e.intermediate_size), dtype)
        for norm in ("input_layernorm", "post_attention_layernorm"):
            out[f"{t}.{i}.{norm}.weight"] = TensorSpec((e.hidden_size,), dtype)
            out[f"{t}.{i}.{norm}.bias"] = TensorSpec((e.hidden_size,), dtype)
        out[f"{t}.{i}.self_attn_layer_scale.scale"] = TensorSpec((e.hidden_size,), dtype)
        out[f"{t}.{i}.mlp_layer_scale.scale"] = TensorSpec((e.hidden_size,), dtype)
    out["encoder.downsample.conv.weight"] = TensorSpec((e.hidden_size, e.hidden_size, 2 * e.compress), dtype)
    q = "encoder.quantizer"
    for part, n in (("semantic_residual_vector_quantizer", e.num_semantic_quantizers),
                    ("acoustic_residual_vector_quantizer", e.num_quantizers - e.num_semantic_quantizers)):
        out[f"{q}.{part}.input_proj.weight"] = TensorSpec((e.codebook_dim, e.hidden_size, 1), dtype)
        out[f"{q}.{part}.output_proj.weight"] = TensorSpec((e.hidden_size, e.codebook_dim, 1), dtype)
        for i in range(n):
            out[f"{q}.{part}.layers.{i}.codebook.embed_sum"] = TensorSpec((e.codebook_size, e.codebook_dim), dtype)
            out[f"{q}.{part}.layers.{i}.codebook.cluster_usage"] = TensorSpec((e.codebook_size,), dtype)
            out[f"{q}.{part}.layers.{i}.codebook.initialized"] = TensorSpec((1,), dtype)
    return out


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class HeaderEntry:
    dtype: str
    shape: tuple[int, ...]
    start: int  # absolute byte offset in the file
    end: int


@dataclass(frozen=True)
class SafetensorsHeader:
    path: Path
    entries: dict[str, HeaderEntry]
    metadata: dict[str, str] | None
    data_start: int
    file_size: int


def read_header(path: str | Path) -> SafetensorsHeader:
    """Parse and validate a safetensors header without reading the tensor data."""
    path = Path(path)
    with reading(path, ModelError, expected="a safetensors file"):
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise ModelError(f"{path}: truncated safetensors file ({size} bytes)")
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES or 8 + n > size:
                raise ModelError(f"{path}: corrupt or truncated safetensors header (claims {n} bytes, "
                                 f"file has {size})")
            raw = f.read(n)
    try:
        obj = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelError(f"{path}: corrupt safetensors header (not valid JSON)") from None
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: corrupt safetensors header")
    metadata = obj.pop("__metadata__", None)
    data_start = 8 + n
    entries: dict[str, HeaderEntry] = {}
    spans = []
    for name, info in obj.items():
        try:
            dtype = info["dtype"]
            shape = tuple(int(s) for s in info["shape"])
            a, b = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise ModelError(f"{path}: corrupt safetensors header entry for '{name}'") from None
        if dtype not in DTYPE_SIZES:
            raise ModelError(f"{path}: tensor '{name}' has unsupported dtype {dtype}")
        expect = DTYPE_SIZES[dtype]
        for s in shape:
            expect *= s
        if b - a != expect or a < 0:
            raise ModelError(f"{path}: tensor '{name}' has data_offsets inconsistent with its shape")
        entries[name] = HeaderEntry(dtype, shape, data_start + a, data_start + b)
        spans.append((a, b))
    spans.sort()
    pos = 0
    for a, b in spans:
        if a != pos:
            raise ModelError(f"{path}: corrupt safetensors header (tensor data not contiguous)")
        pos = b
    if data_start + pos != size:
        if data_start + pos > size:
            raise ModelError(f"{path}: truncated safetensors file: {size} bytes, header needs {data_start + pos}")
        raise ModelError(f"{path}: safetensors file has {size - data_start - pos} trailing bytes")
    return SafetensorsHeader(path, entries, metadata, data_start, size)


def safetensors_files(folder: str | Path, stem: str = "model") -> list[Path]:
    """The file(s) of one checkpoint: `stem.safetensors`, or the shards its index names."""
    folder = Path(folder)
    single = folder / f"{stem}.safetensors"
    index = folder / f"{stem}.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        from .config import read_json

        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise ModelError(f"{index}: no weight_map")
        return [folder / name for name in sorted(set(weight_map.values()))]
    raise ModelError(f"{single}: file not found")


def read_headers(files: Iterable[Path]) -> dict[str, tuple[SafetensorsHeader, HeaderEntry]]:
    out: dict[str, tuple[SafetensorsHeader, HeaderEntry]] = {}
    for f in files:
        h = read_header(f)
        for name, e in h.entries.items():
            if name in out:
                raise ModelError(f"{f}: tensor '{name}' also appears in {out[name][0].path}")
            out[name] = (h, e)
    return out


FLOAT_DTYPES = ("F32", "F16", "BF16")


def check_tensor_set(found: Mapping[str, tuple[tuple[int, ...], str]], expected: Mapping[str, TensorSpec],
                     where: str, ignore: Iterable[str] = (), any_float: bool = False) -> list[str]:
    """Compare what a file holds with what the config implies; one line per problem. With
    ``any_float``, a floating-point tensor may be stored in any of FLOAT_DTYPES (loading casts it)."""
    ignore = set(ignore)
    problems = []
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected) - ignore)
    if missing:
        problems.append(f"{where}: {len(missing)} missing tensor(s): " + _short_list(missing))
    if unexpected:
        problems.append(f"{where}: {len(unexpected)} unexpected tensor(s): " + _short_list(unexpected))
    for name in sorted(set(found) & set(expected)):
        shape, dtype = found[name]
        spec = expected[name]
        if tuple(shape) != spec.shape:
            problems.append(f"{where}: '{name}' has shape {list(shape)}, expected {list(spec.shape)}")
        elif dtype != spec.dtype and not (any_float and dtype in FLOAT_DTYPES and spec.dtype in FLOAT_DTYPES):
            expect = " or ".join(FLOAT_DTYPES) if any_float and spec.dtype in FLOAT_DTYPES else spec.dtype
            problems.append(f"{where}: '{name}' has dtype {dtype}, expected {expect}")
    return problems


def stored_dtypes(found: Mapping[str, tuple[tuple[int, ...], str]], expected: Mapping[str, TensorSpec]) -> str | None:
    """How a checkpoint's float tensors differ in dtype from the published layout, e.g. "F32
    (published: BF16)"; None when they do not."""
    have = sorted({found[n][1] for n, spec in expected.items() if n in found and spec.dtype in FLOAT_DTYPES})
    want = sorted({spec.dtype for spec in expected.values() if spec.dtype in FLOAT_DTYPES})
    return None if have == want else f"{', '.join(have)} (published: {', '.join(want)})"


def _short_list(names: list[str], n: int = 6) -> str:
    s = ", ".join(names[:n])
    return s + (f", … (+{len(names) - n} more)" if len(names) > n else "")


class _FileMap:
    """A private (copy-on-write) mapping of a whole file as a uint8 tensor: pages load lazily."""

    def __init__(self, path: Path, size: int):
        self.tensor = torch.from_file(str(path), shared=False, size=size, dtype=torch.uint8)


def load_safetensors(files: Path | Iterable[Path], expected: Mapping[str, TensorSpec] | None = None,
                     dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                     ignore: Iterable[str] = ()) -> dict[str, torch.Tensor]:
    """Load tensors as views of a memory map (zero-copy when no cast or move is asked for).

    With ``expected``, the tensor set (names and shapes; floats in any of F32, F16 and BF16, mixed
    too) is checked first and every problem is reported in one ModelError; floats are then cast to
    ``dtype``. Names in ``ignore`` are accepted and not returned (e.g. unused buffers).
    """
    if isinstance(files, (str, Path)):
        files = [Path(files)]
    headers = read_headers(files)
    if expected is not None:
        found = {n: (e.shape, e.dtype) for n, (h, e) in headers.items()}
        problems = check_tensor_set(found, expected, str(next(iter(headers.values()))[0].path.parent)
                                    if headers else "checkpoint", ignore, any_float=True)
        if problems:
            raise ModelError("checkpoint does not match its config:\n  " + "\n  ".join(problems))
    ignore = set(ignore)
    maps: dict[Path, _FileMap] = {}
    out: dict[str, torch.Tensor] = {}
    for name, (h, e) in headers.items():
        if name in ignore:
            continue
        fm = maps.get(h.path)
        if fm is None:
            try:
                fm = maps[h.path] = _FileMap(h.path, h.file_size)
            except RuntimeError as err:
                raise ModelError(f"{h.path}: cannot map file ({err})") from None
        raw = fm.tensor[e.start:e.end]
        want = DTYPES[e.dtype]
        if e.start % torch.empty((), dtype=want).element_size():
            raw = raw.clone()  # misaligned for a view of this dtype
        t = raw.view(want).view(e.shape) if e.end > e.start else torch.empty(e.shape, dtype=want)
        if dtype is not None and t.is_floating_point() and t.dtype != dtype:
            t = t.to(dtype)
        if device is not None:
            t = t.to(device)
        out[name] = t
    return out


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------

def safetensors_header_bytes(specs: Mapping[str, TensorSpec], metadata: dict[str, str] | None) -> tuple[bytes, list[str]]:
    """The header exactly as the safetensors library writes it, and the order of the data.

    Tensors are sorted by dtype (widest first) then name; the JSON is compact, with
    ``__metadata__`` first; the header is padded with spaces to a multiple of 8 bytes.
    """
    order = sorted(specs, key=lambda n: (-_DTYPE_RANK[specs[n].dtype], n))
    parts = []
    if metadata is not None:
        parts.append('"__metadata__":' + json.dumps(metadata, separators=(",", ":"), ensure_ascii=False))
    pos = 0
    for name in order:
        s = specs[name]
        end = pos + s.nbytes
        parts.append(json.dumps(name, ensure_ascii=False) + ":" + json.dumps(
            {"dtype": s.dtype, "shape": list(s.shape), "data_offsets": [pos, end]}, separators=(",", ":")))
        pos = end
    header = ("{" + ",".join(parts) + "}").encode("utf-8")
    header += b" " * ((8 - len(header) % 8) % 8)
    return struct.pack("<Q", len(header)) + header, order


def write_safetensors(path: str | Path, specs: Mapping[str, TensorSpec],
                      tensors: Mapping[str, torch.Tensor] | None = None,
                      make: "callable | None" = None, metadata: dict[str, str] | None = None) -> None:
    """Stream tensors to ``path`` atomically (io/files.py), one at a time (``make(name, spec)`` creates each).

    Byte-identical to ``safetensors.torch.save_file`` for the same tensors and metadata.
    """
    from .files import atomic_file

    head, order = safetensors_header_bytes(specs, metadata)
    with atomic_file(path) as f:
        f.write(head)
        for name in order:
            spec = specs[name]
            t = tensors[name] if tensors is not None else make(name, spec)
            if tuple(t.shape) != spec.shape or DTYPE_NAMES[t.dtype] != spec.dtype:
                raise ValueError(f"{name}: made {tuple(t.shape)} {t.dtype}, spec says {spec}")
            f.write(_tensor_bytes(t))


def _tensor_bytes(t: torch.Tensor) -> memoryview:
    t = t.detach().contiguous().cpu()
    if t.numel() == 0:
        return memoryview(b"")
    return memoryview(t.reshape(-1).view(torch.uint8).numpy())
