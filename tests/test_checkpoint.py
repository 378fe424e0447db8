"""The random-checkpoint builder: official layout, byte-exact sizes, determinism, useful weights."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from qwen3tts_cli.io.checkpoint import MODELS, build_checkpoint
from qwen3tts_cli.io.manifest import MANIFEST_NAME
from qwen3tts_cli.io.config import CodecConfig, ModelConfig
from qwen3tts_cli.io.repos import get_repo, repo_metadata_files
from qwen3tts_cli.io.weights import (expected_codec_tensors, expected_model_tensors, load_safetensors,
                                  read_header)

ROOT = Path(__file__).resolve().parents[1]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("model", MODELS)
def test_tiny_layout_matches_config(tiny_checkpoint, model):
    folder = tiny_checkpoint(model)
    repo = get_repo(model)
    for rel in repo_metadata_files(repo):
        assert (folder / rel).is_file(), rel
    codec_dir = folder if repo.kind == "tokenizer" else folder / "speech_tokenizer"
    codec_cfg = CodecConfig.from_file(codec_dir / "config.json")
    h = read_header(codec_dir / "model.safetensors")
    assert {n: (e.shape, e.dtype) for n, e in h.entries.items()} == {
        n: (s.shape, s.dtype) for n, s in expected_codec_tensors(codec_cfg).items()}
    assert h.metadata is None
    # Real rates and codebook sizes survive the shrink.
    assert codec_cfg.decode_upsample_rate == 1920 and codec_cfg.decoder.codebook_size == 2048
    assert codec_cfg.decoder.num_quantizers == 16 and codec_cfg.decoder.sliding_window == 72
    if repo.kind == "model":
        cfg = ModelConfig.from_file(folder / "config.json")
        h = read_header(folder / "model.safetensors")
        assert {n: (e.shape, e.dtype) for n, e in h.entries.items()} == {
            n: (s.shape, s.dtype) for n, s in expected_model_tensors(cfg).items()}
        assert all(e.dtype == "BF16" for e in h.entries.values())
        assert h.metadata == (None if cfg.tts_model_type == "base" else {"format": "pt"})
        # Real vocab sizes and special ids.
        assert cfg.talker.text_vocab_size == 151936 and cfg.talker.vocab_size == 3072
        assert (cfg.talker.codec_eos_token_id, cfg.talker.codec_pad_id, cfg.tts_pad_token_id) == (2150, 2148, 151671)
        assert cfg.talker.num_code_groups == 16
        has_proj = "talker.code_predictor.small_to_mtp_projection.weight" in h.entries
        assert has_proj == model.startswith("1.7B")
        assert ("speaker_encoder.fc.weight" in h.entries) == model.endswith("Base")


def test_same_seed_same_bytes_other_seed_differs(tmp_path):
    a = build_checkpoint("0.6B-CustomVoice", "tiny", 3, tmp_path / "a")
    b = build_checkpoint("0.6B-CustomVoice", "tiny", 3, tmp_path / "b")
    c = build_checkpoint("0.6B-CustomVoice", "tiny", 4, tmp_path / "c")
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert len(files) == 12
    for rel in files:
        assert (a / rel).read_bytes() == (b / rel).read_bytes(), rel
    assert _sha(a / "model.safetensors") != _sha(c / "model.safetensors")
    assert _sha(a / "vocab.json") == _sha(c / "vocab.json")


def test_manifest_records_every_file(tiny_checkpoint):
    folder = tiny_checkpoint("1.7B-VoiceDesign")
    m = json.loads((folder / MANIFEST_NAME).read_text())
    assert m["source"] == "make_checkpoint" and m["model"] == "1.7B-VoiceDesign" and m["seed"] == 0
    on_disk = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST_NAME}
    assert set(m["files"]) == on_disk
    for rel, info in m["files"].items():
        assert info["size"] == (folder / rel).stat().st_size
        assert info["sha256"] == _sha(folder / rel)


def test_weights_are_useful(tiny_checkpoint):
    folder = tiny_checkpoint("0.6B-CustomVoice")
    w = load_safetensors(folder / "speech_tokenizer" / "model.safetensors")
    # Codebooks are non-degenerate: every effective codebook row is distinct.
    table = w["decoder.quantizer.rvq_first.vq.layers.0._codebook.embedding_sum"] / \
        w["decoder.quantizer.rvq_first.vq.layers.0._codebook.cluster_usage"].clamp(min=1e-5)[:, None]
    assert torch.unique(table, dim=0).shape[0] == 2048
    assert 0.8 < float(table.std()) < 1.2
    m = load_safetensors(folder / "model.safetensors", dtype=torch.float32)
    # The logit head spreads logits widely so greedy argmax is robust to rounding.
    g = torch.Generator().manual_seed(0)
    h = torch.nn.functional.normalize(torch.randn(64, m["talker.codec_head.weight"].shape[1], generator=g), dim=-1)
    h = h * h.shape[1] ** 0.5
    logits = h @ m["talker.codec_head.weight"].T
    assert float(logits.std()) > 2.0
    top2 = logits.topk(2, dim=-1).values
    assert float((top2[:, 0] - top2[:, 1]).min()) > 1e-3


def test_refuses_non_empty_foreign_folder(tmp_path):
    (tmp_path / "x.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        build_checkpoint("Tokenizer-12Hz", "tiny", 0, tmp_path)
    assert (tmp_path / "x.txt").read_text() == "mine"


def test_script_cli(tmp_path):
    out = tmp_path / "tok"
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_checkpoint.py"), "--model", "Tokenizer-12Hz",
                        "--size", "tiny", "--seed", "1", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout == ""
    assert {p.name for p in out.iterdir()} == {"config.json", "configuration.json", "preprocessor_config.json",
                                                "model.safetensors", MANIFEST_NAME}
    r = subprocess.run([sys.executable, str(ROOT / "scripts" / "make_checkpoint.py"), "--model", "nope", str(out)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and "invalid choice" in r.stderr


@pytest.mark.slow
def test_full_size_0_6b_custom_voice_has_published_byte_size(full_checkpoint):
    # About 20 s and 2.5 GB of disk on a 2-core machine.
    folder = full_checkpoint("0.6B-CustomVoice")
    assert (folder / "model.safetensors").stat().st_size == 1_811_626_576
    assert (folder / "speech_tokenizer" / "model.safetensors").stat().st_size == 682_293_092
    for rel in ("config.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer_config.json",
                "speech_tokenizer/config.json"):
        assert (folder / rel).read_bytes() == repo_metadata_files(get_repo("0.6B-CustomVoice"))[rel].read_bytes()
    h = read_header(folder / "model.safetensors")
    assert len(h.entries) == 402 and h.metadata == {"format": "pt"}
