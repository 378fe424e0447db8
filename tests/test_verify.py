"""`qwen3tts verify`: every kind of damage is caught, named, and mapped to the right exit code."""

from __future__ import annotations

import hashlib
import json
import shutil
import struct
from pathlib import Path

import pytest
from typer.testing import CliRunner

from qwen3tts_cli.io import repos as repos_mod
from qwen3tts_cli.io import checksums
from qwen3tts_cli.cli.main import app
from qwen3tts_cli.errors import InputError
from qwen3tts_cli.io.repos import CODEC_WEIGHTS_SIZE, KnownRepo, PublishedFile, metadata_dir
from qwen3tts_cli.io.manifest import MANIFEST_NAME
from qwen3tts_cli.io.verify import verify_folder
from qwen3tts_cli.io.config import ModelConfig
from qwen3tts_cli.io.weights import TensorSpec, expected_model_tensors, load_safetensors, write_safetensors

MODELS = ("0.6B-Base", "0.6B-CustomVoice", "1.7B-Base", "1.7B-CustomVoice", "1.7B-VoiceDesign", "Tokenizer-12Hz")
runner = CliRunner()


@pytest.fixture
def copy_of(tiny_checkpoint, tmp_path):
    """A private copy of a tiny checkpoint that a test may damage."""
    def make(model: str = "0.6B-CustomVoice") -> Path:
        return Path(shutil.copytree(tiny_checkpoint(model), tmp_path / model))
    return make


def rewrite_header(path: Path, edit) -> None:
    """Apply ``edit(header_dict)`` to a safetensors header in place, keeping the tensor data."""
    raw = path.read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])


def statuses(report) -> dict[str, str]:
    return {c.name: c.status for c in report}


def failing(report) -> set[str]:
    return {c.name for c in report.failures}


# --------------------------------------------------------------------------------------------
# Clean folders
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_builder_output_verifies(tiny_checkpoint, model):
    folder = tiny_checkpoint(model)
    report = verify_folder(folder)
    assert report.ok, [c for c in report.failures]
    kind = "tokenizer" if model == "Tokenizer-12Hz" else "model"
    assert report.kind == kind
    s = statuses(report)
    assert s["manifest"] == "ok"
    assert s["model.safetensors header"] == "ok" and s["model.safetensors tensors"] == "ok"
    if kind == "model":
        assert s["speech_tokenizer/model.safetensors tensors"] == "ok"
        assert s["tokenizer_config.json"] == "ok" and s["vocab.json"] == "ok"
    # A random-weight checkpoint is never compared with the published hashes (it would fail).
    assert s["published checksums"] == "skip"
    assert "random-weight" in report["published checksums"].detail
    # Nothing but the single published-checksums item is skipped.
    assert [c.name for c in report if c.status == "skip"] == ["published checksums"]

    r = runner.invoke(app, ["verify", str(folder)])
    assert r.exit_code == 0, r.output
    assert r.stdout == ""
    assert "ok:" in r.stderr and "manifest" in r.stderr


def test_json_output_clean(tiny_checkpoint):
    folder = tiny_checkpoint("Tokenizer-12Hz")
    r = runner.invoke(app, ["verify", str(folder), "--json"])
    assert r.exit_code == 0
    obj = json.loads(r.stdout)
    assert obj["ok"] is True and obj["kind"] == "tokenizer" and obj["path"] == str(folder)
    assert {c["name"] for c in obj["checks"]} >= {"required files", "config.json", "manifest",
                                                  "model.safetensors header", "model.safetensors tensors"}
    assert all(set(c) == {"name", "status", "detail"} for c in obj["checks"])


# --------------------------------------------------------------------------------------------
# Damage
# --------------------------------------------------------------------------------------------

def test_missing_file(copy_of):
    folder = copy_of()
    (folder / "merges.txt").unlink()
    (folder / "speech_tokenizer" / "model.safetensors").unlink()
    report = verify_folder(folder)
    assert not report.ok
    req = report["required files"]
    assert req.status == "fail"
    assert "merges.txt" in req.detail and "speech_tokenizer/model.safetensors" in req.detail
    assert "2 missing" in req.detail
    assert report["merges.txt"].status == "fail"
    assert report["speech_tokenizer/model.safetensors header"].status == "fail"
    assert "file not found" in report["speech_tokenizer/model.safetensors header"].detail
    assert report["speech_tokenizer/model.safetensors tensors"].status == "skip"
    assert "merges.txt: missing" in report["manifest"].detail
    # What is still there is still checked.
    assert report["model.safetensors tensors"].status == "ok"


def test_truncated_safetensors(copy_of):
    folder = copy_of()
    p = folder / "model.safetensors"
    size = p.stat().st_size
    with open(p, "r+b") as f:
        f.truncate(size - 100)
    report = verify_folder(folder)
    assert failing(report) == {"model.safetensors header", "manifest"}
    assert "truncated" in report["model.safetensors header"].detail
    assert f"model.safetensors: {size - 100:,} bytes, manifest says {size:,}" in report["manifest"].detail


def test_flipped_byte_caught_by_manifest(copy_of):
    folder = copy_of()
    p = folder / "speech_tokenizer" / "model.safetensors"
    data = bytearray(p.read_bytes())
    data[-7] ^= 0x01  # inside the tensor data: the header stays valid
    p.write_bytes(bytes(data))
    report = verify_folder(folder)
    assert failing(report) == {"manifest"}
    detail = report["manifest"].detail
    assert "speech_tokenizer/model.safetensors: SHA-256 mismatch" in detail
    assert "1 of 11 files" in detail


def test_renamed_tensor(copy_of):
    folder = copy_of()
    old, new = "talker.codec_head.weight", "talker.codec_head_renamed.weight"

    def rename(h):
        h[new] = h.pop(old)

    rewrite_header(folder / "model.safetensors", rename)
    # The data is untouched: the renamed tensor still holds the same bytes.
    loaded = load_safetensors(folder / "model.safetensors")
    assert new in loaded and old not in loaded
    report = verify_folder(folder)
    assert "model.safetensors tensors" in failing(report)
    detail = report["model.safetensors tensors"].detail
    assert f"1 missing tensor(s): {old}" in detail
    assert f"1 unexpected tensor(s): {new}" in detail
    assert report["model.safetensors header"].status == "ok"


def test_wrong_shape_in_header(copy_of):
    folder = copy_of()
    name = "talker.model.layers.0.mlp.up_proj.weight"  # [128, 64] in the tiny 0.6B
    rewrite_header(folder / "model.safetensors", lambda h: h[name].update(shape=h[name]["shape"][::-1]))
    report = verify_folder(folder)
    assert report["model.safetensors header"].status == "ok"  # same byte count, so the header is sound
    assert f"'{name}' has shape [64, 128], expected [128, 64]" in report["model.safetensors tensors"].detail


def test_wrong_shape_from_config_edit(copy_of, tiny_checkpoint):
    folder = copy_of()
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["talker_config"]["hidden_size"] == 64
    cfg["talker_config"]["hidden_size"] = 128
    (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    report = verify_folder(folder)
    assert failing(report) == {"model.safetensors tensors", "manifest"}
    detail = report["model.safetensors tensors"].detail
    # The talker (128) is now wider than the code predictor (64), so the config implies the
    # 1.7B-style projection, which the file lacks; every width-dependent tensor mismatches, and
    # the first few are named with the config's value.
    assert detail.startswith("2 missing tensor(s): talker.code_predictor.small_to_mtp_projection.bias, "
                             "talker.code_predictor.small_to_mtp_projection.weight; ")
    old_specs = expected_model_tensors(ModelConfig.from_file(tiny_checkpoint("0.6B-CustomVoice") / "config.json"))
    new_specs = expected_model_tensors(ModelConfig.from_file(folder / "config.json"))
    n_wrong = sum(old_specs[k] != new_specs[k] for k in old_specs)
    assert n_wrong > 30
    assert f"{n_wrong} tensor(s) with a wrong shape or dtype: " in detail
    assert ("'talker.code_predictor.model.codec_embedding.0.weight' has shape [2048, 64], "
            "expected [2048, 128]") in detail
    assert detail.endswith(f"… (+{n_wrong - 5} more)")
    assert "config.json: " in report["manifest"].detail


def test_other_float_dtypes_are_information_unless_the_files_claim_to_be_official(copy_of):
    folder = copy_of()
    name = "talker.model.layers.1.self_attn.q_norm.weight"

    def retype(h):  # BF16 -> F16 keeps the byte count, so only the dtype differs
        assert h[name]["dtype"] == "BF16"
        h[name]["dtype"] = "F16"

    rewrite_header(folder / "model.safetensors", retype)
    report = verify_folder(folder)
    assert report["model.safetensors header"].status == "ok"
    item = report["model.safetensors tensors"]
    assert item.status == "ok" and "stored in BF16, F16 (published: BF16): loads, cast to the run dtype" in item.detail
    assert failing(report) == {"manifest"}  # the header edit changed the file's hash
    # Downloaded as an official repo, the same file must be exactly the published layout.
    _as_hub_download(folder, "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    detail = verify_folder(folder)["model.safetensors tensors"].detail
    assert detail == f"1 tensor(s) with a wrong shape or dtype: '{name}' has dtype F16, expected BF16"


def test_an_integer_dtype_for_a_float_tensor_fails(copy_of):
    folder = copy_of()
    name = "talker.model.layers.1.self_attn.q_norm.weight"
    rewrite_header(folder / "model.safetensors", lambda h: h[name].update(dtype="I16"))
    detail = verify_folder(folder)["model.safetensors tensors"].detail
    assert detail == f"1 tensor(s) with a wrong shape or dtype: '{name}' has dtype I16, expected F32 or F16 or BF16"


def test_malformed_config(copy_of):
    folder = copy_of()
    text = (folder / "config.json").read_text()
    (folder / "config.json").write_text(text[:200])  # cut mid-object
    report = verify_folder(folder)
    # The layout still says "model", so everything else is checked too.
    assert report.kind == "model"
    item = report["config.json"]
    assert item.status == "fail"
    assert item.detail.startswith("config.json: malformed JSON (")
    assert "line " in item.detail and "column " in item.detail
    assert report["model.safetensors tensors"].status == "skip"
    assert report["speech_tokenizer/model.safetensors tensors"].status == "ok"
    assert failing(report) == {"config.json", "manifest"}


def test_malformed_config_of_tokenizer_repo(copy_of):
    folder = copy_of("Tokenizer-12Hz")
    (folder / "config.json").write_text("")
    report = verify_folder(folder)
    assert report.kind == "tokenizer"
    assert "config.json: malformed JSON (Expecting value at line 1 column 1)" in report["config.json"].detail
    assert report["model.safetensors header"].status == "ok"
    assert report["model.safetensors tensors"].status == "skip"


def test_malformed_tokenizer_config_json(copy_of):
    folder = copy_of()
    (folder / "tokenizer_config.json").write_text('{"added_tokens_decoder": {"1": }')
    report = verify_folder(folder)
    assert "tokenizer_config.json" in failing(report)
    assert "malformed JSON" in report["tokenizer_config.json"].detail
    assert "line 1 column 32" in report["tokenizer_config.json"].detail


def test_not_a_qwen3tts_folder(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "llama"}')
    report = verify_folder(tmp_path)
    assert report.kind == "unknown" and not report.ok
    assert "'llama'" in report["folder kind"].detail
    empty = tmp_path / "empty"
    empty.mkdir()
    report = verify_folder(empty)
    assert report.kind == "unknown" and "config.json is missing" in report["folder kind"].detail


def test_manifest_problems(copy_of):
    folder = copy_of("Tokenizer-12Hz")
    m = json.loads((folder / MANIFEST_NAME).read_text())
    m["files"]["gone.bin"] = {"size": 3, "sha256": "00" * 32}
    m["files"]["../escape.json"] = {"size": 3, "sha256": "00" * 32}
    (folder / MANIFEST_NAME).write_text(json.dumps(m))
    detail = verify_folder(folder)["manifest"].detail
    assert "gone.bin: missing" in detail and "../escape.json: path outside the folder" in detail

    (folder / MANIFEST_NAME).write_text('{"format": 1, "files": {')
    item = verify_folder(folder)["manifest"]
    assert item.status == "fail" and "malformed JSON" in item.detail

    (folder / MANIFEST_NAME).unlink()
    report = verify_folder(folder)
    assert report.ok and report["manifest"].status == "skip"


def test_sharded_checkpoint(copy_of):
    folder = copy_of()
    (folder / MANIFEST_NAME).unlink()
    single = folder / "model.safetensors"
    tensors = {k: v.clone() for k, v in load_safetensors(single).items()}
    names = sorted(tensors)
    halves = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, part in halves.items():
        write_safetensors(folder / shard, {n: TensorSpec(tuple(tensors[n].shape), "BF16") for n in part},
                          tensors={n: tensors[n] for n in part})
    index = {"metadata": {}, "weight_map": {n: s for s, part in halves.items() for n in part}}
    (folder / "model.safetensors.index.json").write_text(json.dumps(index))
    single.unlink()
    report = verify_folder(folder)
    assert report.ok, report.failures
    assert "in 2 shards" in report["model.safetensors header"].detail

    (folder / "model-00002-of-00002.safetensors").unlink()
    report = verify_folder(folder)
    assert "model-00002-of-00002.safetensors" in report["required files"].detail
    assert report["model.safetensors header"].status == "fail"


# --------------------------------------------------------------------------------------------
# Published checksums
# --------------------------------------------------------------------------------------------

def _as_hub_download(folder: Path, repo_id: str) -> None:
    m = json.loads((folder / MANIFEST_NAME).read_text())
    m.update(source="hub", repo_id=repo_id, revision="0" * 40)
    for k in ("model", "size", "seed"):
        m.pop(k)
    (folder / MANIFEST_NAME).write_text(json.dumps(m))


def test_hub_manifest_checked_against_published(copy_of):
    folder = copy_of("Tokenizer-12Hz")
    _as_hub_download(folder, "Qwen/Qwen3-TTS-Tokenizer-12Hz")
    report = verify_folder(folder)
    item = report["published checksums"]
    assert item.status == "fail"
    size = (folder / "model.safetensors").stat().st_size
    assert f"model.safetensors: {size:,} bytes, published {CODEC_WEIGHTS_SIZE:,}" in item.detail
    assert report["manifest"].status == "ok"


@pytest.mark.parametrize("right_hash", [True, False])
def test_published_hash_shared_with_manifest(copy_of, monkeypatch, right_hash):
    folder = copy_of("Tokenizer-12Hz")
    _as_hub_download(folder, "Qwen/Qwen3-TTS-Tokenizer-12Hz")
    weights = folder / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest()
    published = sha if right_hash else "ab" * 32
    fake = KnownRepo("Qwen/Qwen3-TTS-Tokenizer-12Hz", "tokenizer", "Tokenizer-12Hz",
                     PublishedFile("model.safetensors", weights.stat().st_size, published))
    monkeypatch.setattr(checksums, "KNOWN_REPOS", (fake,))
    calls: list[Path] = []
    real = checksums.sha256_file
    monkeypatch.setattr(checksums, "sha256_file", lambda p: calls.append(p) or real(p))
    report = verify_folder(folder)
    assert calls.count(weights) == 1  # one read serves the manifest and the published check
    assert len(calls) == len(set(calls))
    item = report["published checksums"]
    if right_hash:
        assert item.status == "ok" and report.ok
    else:
        assert item.status == "fail"
        assert f"differs from the published {'ab' * 6}" in item.detail
        assert failing(report) == {"published checksums"}


def test_builder_output_with_official_config_skipped(copy_of):
    """A make_checkpoint manifest wins over an official-looking config: no published check."""
    folder = copy_of("Tokenizer-12Hz")
    shutil.copyfile(metadata_dir() / "common" / "speech_tokenizer" / "config.json", folder / "config.json")
    report = verify_folder(folder)
    assert report["published checksums"].status == "skip"
    assert "random-weight" in report["published checksums"].detail


def test_no_manifest_official_config_and_size_claims_official(tmp_path):
    """Without a manifest, an official config plus the published size makes a file claim to be
    the official one (a sparse file: nothing is written to disk)."""
    folder = tmp_path / "tok"
    folder.mkdir()
    st = metadata_dir() / "common" / "speech_tokenizer"
    for name in ("config.json", "preprocessor_config.json"):
        shutil.copyfile(st / name, folder / name)
    with open(folder / "model.safetensors", "wb") as f:
        f.truncate(CODEC_WEIGHTS_SIZE)
    report = verify_folder(folder)
    item = report["published checksums"]
    assert item.status == "fail"
    assert "model.safetensors: SHA-256" in item.detail and "differs from the published 836b7b357f5e" in item.detail
    assert report["model.safetensors header"].status == "fail"
    assert report["manifest"].status == "skip"

    with open(folder / "model.safetensors", "r+b") as f:
        f.truncate(1000)
    item = verify_folder(folder)["published checksums"]
    assert item.status == "skip" and "not the published" in item.detail


def test_no_manifest_tiny_config_not_claimed(copy_of):
    folder = copy_of("1.7B-VoiceDesign")
    (folder / MANIFEST_NAME).unlink()
    report = verify_folder(folder)
    assert report.ok
    assert report["published checksums"].status == "skip"
    assert report["manifest"].status == "skip"


# --------------------------------------------------------------------------------------------
# The command
# --------------------------------------------------------------------------------------------

def test_cli_failure_json_and_exit_codes(copy_of, tmp_path):
    folder = copy_of()
    (folder / "generation_config.json").write_text("{oops")
    r = runner.invoke(app, ["verify", str(folder), "--json"])
    assert r.exit_code == 1
    obj = json.loads(r.stdout)  # nothing but the JSON object on stdout
    assert obj["ok"] is False
    bad = [c for c in obj["checks"] if c["status"] == "fail"]
    assert {c["name"] for c in bad} == {"generation_config.json", "manifest"}
    assert "malformed JSON" in next(c["detail"] for c in bad if c["name"] == "generation_config.json")
    assert "generation_config.json, manifest" in r.stderr

    r = runner.invoke(app, ["verify", str(folder)])
    assert r.exit_code == 1 and r.stdout == ""
    assert "2 check(s) failed: generation_config.json, manifest" in r.stderr
    assert "malformed JSON" in r.stderr  # the table row

    r = runner.invoke(app, ["verify", str(tmp_path / "nope")])
    assert r.exit_code == 2 and "no such folder" in r.stderr and r.stdout == ""
    r = runner.invoke(app, ["verify", str(folder / "config.json"), "--json"])
    assert r.exit_code == 2 and "not a folder" in r.stderr and r.stdout == ""
    assert len(r.stderr.strip().splitlines()) == 1


def test_path_errors_are_input_errors(tmp_path):
    with pytest.raises(InputError):
        verify_folder(tmp_path / "missing")
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError):
        verify_folder(tmp_path / "f")


def test_hash_files_parallel_matches_hashlib(tiny_checkpoint, monkeypatch, tmp_path):
    folder = tiny_checkpoint("0.6B-Base")
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    monkeypatch.setattr(checksums, "_PARALLEL_FROM", 1 << 20)  # the two weights files go to threads
    monkeypatch.setattr(repos_mod, "HASH_CHUNK", 1 << 16)  # many chunks per file
    gone = tmp_path / "gone.bin"
    digests = checksums.hash_files(files + [files[0], gone])
    assert set(digests) == set(files) | {gone}
    for p in files:
        assert digests[p] == hashlib.sha256(p.read_bytes()).hexdigest()
    assert isinstance(digests[gone], OSError)
