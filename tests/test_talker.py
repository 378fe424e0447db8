import pytest
import torch
import torch.nn.functional as F

from qwen3tts_cli.io.config import ModelConfig
from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model.talker import Talker
from qwen3tts_cli.io.weights import expected_model_tensors, load_safetensors, safetensors_files


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def test_parameter_names_map_one_to_one_to_checkpoint(tiny_checkpoint):
    for model in ("0.6B-CustomVoice", "1.7B-VoiceDesign"):
        cfg = ModelConfig.from_file(tiny_checkpoint(model) / "config.json")
        with torch.device("meta"):
            talker = Talker(cfg.talker)
        ours = {"talker." + k: tuple(v.shape) for k, v in talker.state_dict().items()}
        theirs = {k: v.shape for k, v in expected_model_tensors(cfg).items()
                  if k.startswith("talker.") and not k.startswith("talker.code_predictor.")}
        assert ours == theirs


def test_weights_are_the_checkpoint_tensors(tiny_checkpoint, tts):
    raw = load_safetensors(safetensors_files(tiny_checkpoint("0.6B-CustomVoice")), dtype=torch.float32)
    assert torch.equal(tts.talker.codec_head.weight, raw["talker.codec_head.weight"])
    assert torch.equal(tts.talker.model.layers[1].self_attn.k_norm.weight,
                       raw["talker.model.layers.1.self_attn.k_norm.weight"])


def test_embed_text_is_projected_embedding(tiny_checkpoint, tts):
    raw = load_safetensors(safetensors_files(tiny_checkpoint("0.6B-CustomVoice")), dtype=torch.float32)
    ids = torch.tensor([151671, 151672, 872, 0])
    e = raw["talker.model.text_embedding.weight"][ids]
    h = F.linear(e, raw["talker.text_projection.linear_fc1.weight"], raw["talker.text_projection.linear_fc1.bias"])
    want = F.linear(F.silu(h), raw["talker.text_projection.linear_fc2.weight"],
                    raw["talker.text_projection.linear_fc2.bias"])
    with torch.inference_mode():
        got = tts.talker.embed_text(ids)
        assert got.shape == (4, tts.cfg.talker.hidden_size)
        torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-6)
        assert torch.equal(tts.talker.embed_codec(torch.tensor([2150])),
                           raw["talker.model.codec_embedding.weight"][2150:2151])


def test_incremental_decode_matches_prefill(tts):
    talker = tts.talker
    H = tts.cfg.talker.hidden_size
    x = torch.randn(1, 12, H, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        talker.setup_cache(1, 32)
        full = talker(x, torch.arange(12), kv_len=12)
        talker.setup_cache(1, 8)
        part = [talker(x[:, :5], torch.arange(5), kv_len=5)]
        for t in range(5, 12):
            if t + 1 > talker.max_seq:
                talker.grow_cache(2 * talker.max_seq)  # keeps what was written
            part.append(talker(x[:, t:t + 1], torch.tensor([t]), kv_len=t + 1))
        torch.testing.assert_close(torch.cat(part, dim=1), full, atol=1e-5, rtol=1e-5)
        # kv_len=None attends over the whole (masked) buffer: same result.
        talker.setup_cache(1, 32)
        torch.testing.assert_close(talker(x, torch.arange(12)), full, atol=1e-5, rtol=1e-5)
        # Output is final-normed: RMS ~ |norm weight| scale, and logits come from codec_head.
        assert talker.logits(full).shape == (1, 12, tts.cfg.talker.vocab_size)
