"""The safetensors reader/writer and the tensor specs a config implies."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from qwen3tts_cli.io.config import CodecConfig, ModelConfig
from qwen3tts_cli.errors import ModelError
from qwen3tts_cli.io.repos import KNOWN_REPOS, metadata_dir
from qwen3tts_cli.io.weights import (
    DTYPE_NAMES, TensorSpec, check_tensor_set, expected_codec_tensors, expected_model_tensors, load_safetensors,
    read_header, read_headers, safetensors_files, safetensors_header_bytes, write_safetensors,
)

SHARED = Path(__file__).resolve().parents[2] / "shared"
LISTINGS = SHARED / "model-metadata" / "tensor-listings"


def sample_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    r = lambda *s: torch.randn(*s, generator=g)  # noqa: E731
    return {
        "b.weight": r(5, 3).to(torch.bfloat16),
        "a.weight": r(4, 6).to(torch.bfloat16),
        "f32.bias": r(7),
        "half": r(3, 1, 2).half(),
        "ids": torch.randint(-5, 5, (9,), generator=g),
        "i32": torch.randint(-5, 5, (2, 3), generator=g).int(),
        "i16": torch.randint(-5, 5, (3,), generator=g).short(),
        "i8": torch.randint(-5, 5, (5,), generator=g).to(torch.int8),
        "u8": torch.randint(0, 255, (4,), generator=g).to(torch.uint8),
        "mask": torch.rand(6, generator=g) > 0.5,
        "empty": torch.zeros(0, 3),
        "ünï.code": r(2),
    }


def specs_of(tensors: dict[str, torch.Tensor]) -> dict[str, TensorSpec]:
    return {n: TensorSpec(tuple(t.shape), DTYPE_NAMES[t.dtype]) for n, t in tensors.items()}


def write(path: Path, tensors: dict[str, torch.Tensor], metadata=None) -> Path:
    write_safetensors(path, specs_of(tensors), tensors=tensors, metadata=metadata)
    return path


# --------------------------------------------------------------------------------------------
# Writer
# --------------------------------------------------------------------------------------------

# (The library writes several metadata keys in hash-map order, so only one key is comparable.)
@pytest.mark.parametrize("metadata", [None, {"format": "pt"}])
def test_writer_byte_identical_to_safetensors(tmp_path, metadata):
    tensors = sample_tensors()
    ours = write(tmp_path / "ours.safetensors", tensors, metadata)
    save_file(tensors, str(tmp_path / "lib.safetensors"), metadata=metadata)
    assert ours.read_bytes() == (tmp_path / "lib.safetensors").read_bytes()
    assert not list(tmp_path.glob("*.partial"))


def test_writer_scalar_tensor(tmp_path):
    tensors = {"scalar": torch.tensor(1.5), "v": torch.ones(2)}
    ours = write(tmp_path / "ours.safetensors", tensors)
    save_file(tensors, str(tmp_path / "lib.safetensors"))
    assert ours.read_bytes() == (tmp_path / "lib.safetensors").read_bytes()
    assert load_safetensors(ours)["scalar"].item() == 1.5


def test_writer_f64_and_i64_order(tmp_path):
    tensors = {"a": torch.zeros(2, dtype=torch.float64), "b": torch.ones(2, dtype=torch.int64)}
    ours = write(tmp_path / "ours.safetensors", tensors)
    save_file(tensors, str(tmp_path / "lib.safetensors"))
    assert ours.read_bytes() == (tmp_path / "lib.safetensors").read_bytes()


def test_writer_make_callback_equals_tensors(tmp_path):
    tensors = sample_tensors(1)
    write_safetensors(tmp_path / "made.safetensors", specs_of(tensors), make=lambda n, s: tensors[n])
    assert (tmp_path / "made.safetensors").read_bytes() == write(tmp_path / "given.safetensors", tensors).read_bytes()


def test_writer_rejects_tensor_not_matching_spec(tmp_path):
    specs = {"w": TensorSpec((2, 3), "F32")}
    with pytest.raises(ValueError, match="w"):
        write_safetensors(tmp_path / "bad.safetensors", specs, tensors={"w": torch.zeros(3, 2)})
    assert list(tmp_path.iterdir()) == []  # no output and no leftover partial file
    with pytest.raises(ValueError, match="w"):
        write_safetensors(tmp_path / "bad.safetensors", specs, tensors={"w": torch.zeros(2, 3, dtype=torch.float16)})
    assert not (tmp_path / "bad.safetensors").exists()


def _published_specs(repo):
    if repo.kind == "tokenizer":
        cfg = CodecConfig.from_file(metadata_dir() / "common" / "speech_tokenizer" / "config.json")
        return expected_codec_tensors(cfg), None
    cfg = ModelConfig.from_file(metadata_dir() / repo.name / "config.json")
    meta = None if repo.short.endswith("Base") else {"format": "pt"}
    return expected_model_tensors(cfg), meta


@pytest.mark.parametrize("repo", KNOWN_REPOS, ids=lambda r: r.short)
def test_header_writer_reproduces_published_file_sizes(repo):
    specs, meta = _published_specs(repo)
    head, order = safetensors_header_bytes(specs, meta)
    assert sorted(order) == sorted(specs)
    data = sum(s.nbytes for s in specs.values())
    assert len(head) + data == repo.weights.size
    assert (len(head) - 8) % 8 == 0 and struct.unpack("<Q", head[:8])[0] == len(head) - 8
    # The metadata is part of what makes the size right.
    other = {"format": "pt"} if meta is None else None
    assert len(safetensors_header_bytes(specs, other)[0]) + data != repo.weights.size


# --------------------------------------------------------------------------------------------
# Specs against the published listings
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not LISTINGS.is_dir(), reason="../shared/model-metadata is not beside the checkout")
@pytest.mark.parametrize("repo", KNOWN_REPOS, ids=lambda r: r.short)
def test_expected_specs_equal_published_listings(repo):
    listing = json.loads((LISTINGS / f"{repo.name}.model.safetensors.json").read_text())
    specs, meta = _published_specs(repo)
    published = {n: TensorSpec(tuple(t["shape"]), t["dtype"]) for n, t in listing["tensors"].items()}
    assert set(specs) == set(published), (sorted(set(specs) ^ set(published)))[:10]
    assert specs == published
    assert len(specs) == listing["num_tensors"]
    assert sum(s.nbytes for s in specs.values()) == listing["tensor_data_bytes"]
    assert listing["published_file_size_bytes"] == repo.weights.size
    assert listing["published_lfs_sha256"] == repo.weights.sha256
    assert meta == listing["safetensors_header_metadata"]


def test_1_7b_has_projection_0_6b_not():
    small = expected_model_tensors(ModelConfig.from_file(metadata_dir() / "Qwen3-TTS-12Hz-0.6B-Base" / "config.json"))
    big = expected_model_tensors(ModelConfig.from_file(metadata_dir() / "Qwen3-TTS-12Hz-1.7B-Base" / "config.json"))
    name = "talker.code_predictor.small_to_mtp_projection.weight"
    assert name not in small
    assert big[name] == TensorSpec((1024, 2048), "BF16")


# --------------------------------------------------------------------------------------------
# Reader
# --------------------------------------------------------------------------------------------

def test_load_is_zero_copy_view_of_one_mapping(tmp_path):
    tensors = sample_tensors()
    p = write(tmp_path / "w.safetensors", tensors)
    header = read_header(p)
    loaded = load_safetensors(p)
    assert set(loaded) == set(tensors)
    storages = {t.untyped_storage().data_ptr() for n, t in loaded.items() if t.numel()}
    assert len(storages) == 1  # every tensor is a view of the same mapping of the file
    base = storages.pop()
    for name, t in loaded.items():
        assert t.dtype == tensors[name].dtype and t.shape == tensors[name].shape
        assert torch.equal(t, tensors[name])
        if t.numel():
            assert t.untyped_storage().nbytes() == p.stat().st_size
            assert t.data_ptr() - base == header.entries[name].start


def test_two_loads_share_nothing_and_never_touch_the_file(tmp_path):
    tensors = sample_tensors()
    p = write(tmp_path / "w.safetensors", tensors)
    before = p.read_bytes()
    a, b = load_safetensors(p), load_safetensors(p)
    assert a["f32.bias"].untyped_storage().data_ptr() != b["f32.bias"].untyped_storage().data_ptr()
    a["f32.bias"].add_(1.0)  # a private (copy-on-write) mapping
    assert torch.equal(b["f32.bias"], tensors["f32.bias"])
    assert torch.equal(a["f32.bias"], tensors["f32.bias"] + 1.0)
    assert p.read_bytes() == before


def test_load_casts_floats_only(tmp_path):
    tensors = sample_tensors()
    p = write(tmp_path / "w.safetensors", tensors)
    loaded = load_safetensors(p, dtype=torch.float32)
    for name, t in tensors.items():
        got = loaded[name]
        if t.is_floating_point():
            assert got.dtype == torch.float32
            assert torch.equal(got, t.float())  # widening is exact
        else:
            assert got.dtype == t.dtype and torch.equal(got, t)
    # Same dtype: no cast, still a view.
    same = load_safetensors(p, dtype=torch.bfloat16)
    assert same["a.weight"].untyped_storage().data_ptr() == same["b.weight"].untyped_storage().data_ptr()


def test_sharded_index(tmp_path):
    tensors = sample_tensors()
    names = sorted(tensors)
    shards = {"model-00002-of-00002.safetensors": names[1::2], "model-00001-of-00002.safetensors": names[::2]}
    for shard, part in shards.items():
        write(tmp_path / shard, {n: tensors[n] for n in part})
    weight_map = {n: s for s, part in shards.items() for n in part}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    files = safetensors_files(tmp_path)
    assert [f.name for f in files] == sorted(shards)
    loaded = load_safetensors(files, expected=specs_of(tensors))
    assert set(loaded) == set(tensors)
    assert all(torch.equal(loaded[n], tensors[n]) for n in tensors)
    # A single file wins over an index when both exist.
    write(tmp_path / "model.safetensors", {"x": torch.zeros(1)})
    assert safetensors_files(tmp_path) == [tmp_path / "model.safetensors"]


def test_sharded_index_errors(tmp_path):
    write(tmp_path / "s1.safetensors", {"x": torch.zeros(2)})
    write(tmp_path / "s2.safetensors", {"x": torch.ones(2)})
    with pytest.raises(ModelError, match="'x' also appears in"):
        read_headers([tmp_path / "s1.safetensors", tmp_path / "s2.safetensors"])
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}}))
    with pytest.raises(ModelError, match="no weight_map"):
        safetensors_files(tmp_path)
    with pytest.raises(ModelError, match="file not found"):
        safetensors_files(tmp_path / "nowhere")


def test_strict_check_lists_every_problem_at_once(tmp_path):
    tensors = sample_tensors()
    p = write(tmp_path / "w.safetensors", tensors)
    expected = specs_of(tensors)
    del expected["u8"]  # -> unexpected
    expected["missing.weight"] = TensorSpec((2,), "F32")
    expected["a.weight"] = TensorSpec((6, 4), "BF16")
    expected["b.weight"] = TensorSpec((5, 3), "I32")
    with pytest.raises(ModelError) as e:
        load_safetensors(p, expected=expected)
    msg = str(e.value)
    assert "1 missing tensor(s): missing.weight" in msg
    assert "1 unexpected tensor(s): u8" in msg
    assert "'a.weight' has shape [4, 6], expected [6, 4]" in msg
    assert "'b.weight' has dtype BF16, expected I32" in msg
    # Ignored names are accepted and left out.
    expected = specs_of(tensors)
    del expected["u8"]
    loaded = load_safetensors(p, expected=expected, ignore=["u8"])
    assert "u8" not in loaded and set(loaded) == set(expected)


def test_check_tensor_set_clean_and_long_lists():
    expected = {f"t{i}": TensorSpec((1,), "F32") for i in range(10)}
    assert check_tensor_set({n: ((1,), "F32") for n in expected}, expected, "here") == []
    problems = check_tensor_set({}, expected, "here")
    assert problems == ["here: 10 missing tensor(s): t0, t1, t2, t3, t4, t5, … (+4 more)"]


def _raw(header: dict, data: bytes) -> bytes:
    h = json.dumps(header).encode()
    return struct.pack("<Q", len(h)) + h + data


@pytest.mark.parametrize("blob,message", [
    (b"\x01\x02", "truncated safetensors file"),
    (struct.pack("<Q", 1000) + b"{}", "corrupt or truncated safetensors header"),
    (struct.pack("<Q", 4) + b"{no}", "not valid JSON"),
    (_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 4), "truncated safetensors file"),
    (_raw({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12), "4 trailing bytes"),
    (_raw({"x": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8), "inconsistent with its shape"),
    (_raw({"x": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "not contiguous"),
    (_raw({"x": {"dtype": "C64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8), "unsupported dtype C64"),
    (_raw({"x": {"shape": [1]}}, b""), "entry for 'x'"),
])
def test_read_header_rejects_damage(tmp_path, blob, message):
    p = tmp_path / "bad.safetensors"
    p.write_bytes(blob)
    with pytest.raises(ModelError, match=message):
        read_header(p)


def test_read_header_fields(tmp_path):
    tensors = {"w": torch.zeros(2, 3), "v": torch.zeros(4, dtype=torch.bfloat16)}
    p = write(tmp_path / "w.safetensors", tensors, {"format": "pt"})
    h = read_header(p)
    assert h.metadata == {"format": "pt"}
    assert h.file_size == p.stat().st_size
    assert h.entries["w"].shape == (2, 3) and h.entries["w"].dtype == "F32"
    assert h.entries["w"].end - h.entries["w"].start == 24
    assert h.entries["v"].start == h.entries["w"].end  # wider dtypes first, as the library writes
    assert h.entries["v"].end == h.file_size


def test_any_float_dtype_loads_and_is_cast(tmp_path):
    """A checkpoint stored in float32, float16 or a mix loads against the published (bf16) layout."""
    g = torch.Generator().manual_seed(3)
    values = {n: torch.randn(4, 6, generator=g) for n in ("x.weight", "y.weight", "z.weight")}
    stored = {"x.weight": values["x.weight"], "y.weight": values["y.weight"].half(),
              "z.weight": values["z.weight"].bfloat16()}
    p = write(tmp_path / "mixed.safetensors", stored)
    published = {n: TensorSpec((4, 6), "BF16") for n in values}
    loaded = load_safetensors(p, expected=published, dtype=torch.float32)
    assert all(t.dtype == torch.float32 for t in loaded.values())
    assert torch.equal(loaded["x.weight"], values["x.weight"])
    assert torch.equal(loaded["y.weight"], values["y.weight"].half().float())
    half = load_safetensors(p, expected=published, dtype=torch.bfloat16)
    assert torch.equal(half["x.weight"], values["x.weight"].bfloat16())
