import pytest
import torch

from qwen3tts_cli.model.code_predictor import CodePredictor
from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model.layers import attention_mask, rope_cos_sin
from qwen3tts_cli.model.sampling import make_generator
from qwen3tts_cli.io.weights import expected_model_tensors


@pytest.fixture(scope="module", params=["0.6B-CustomVoice", "1.7B-CustomVoice"])
def tts(request, tiny_checkpoint):
    return load_tts(tiny_checkpoint(request.param))


def test_parameter_names_and_projection(tts):
    with torch.device("meta"):
        cp = CodePredictor(tts.cfg.talker)
    ours = {"talker.code_predictor." + k: tuple(v.shape) for k, v in cp.state_dict().items()}
    theirs = {k: v.shape for k, v in expected_model_tensors(tts.cfg).items()
              if k.startswith("talker.code_predictor.")}
    assert ours == theirs
    has_proj = tts.cfg.talker.code_predictor.hidden_size != tts.cfg.talker.hidden_size
    assert isinstance(cp.small_to_mtp_projection, torch.nn.Linear) == has_proj
    assert len(cp.lm_head) == 15 and len(cp.model.codec_embedding) == 15


def _uncached_greedy(cp: CodePredictor, past_hidden, c0_emb):
    """Recompute the whole sequence for every group (no cache), as a plain causal LM."""
    seq = [past_hidden, c0_emb]
    codes, logits = [], []
    for g in range(1, 16):
        x = cp.small_to_mtp_projection(torch.stack(seq, dim=1))
        pos = torch.arange(x.shape[1])
        cos, sin = rope_cos_sin(pos, cp.cfg.head_dim, cp.cfg.rope_theta, x.dtype)
        mask = attention_mask(pos, pos)
        for layer in cp.model.layers:
            a = layer.self_attn
            h = layer.input_layernorm(x)
            saved, a.kv_cache = a.kv_cache, None
            x = x + a(h, cos, sin, mask)
            a.kv_cache = saved
            x = x + layer.mlp(layer.post_attention_layernorm(x))
        lg = cp.lm_head[g - 1](cp.model.norm(x)[:, -1])
        c = lg.argmax(-1)
        codes.append(c)
        logits.append(lg)
        seq.append(cp.model.codec_embedding[g - 1](c))
    return torch.stack(codes, 1), torch.stack(logits, 1)


def test_greedy_predict_matches_uncached_recompute(tts):
    H = tts.cfg.talker.hidden_size
    g = torch.Generator().manual_seed(3)
    past = torch.randn(2, H, generator=g)
    c0 = torch.tensor([5, 1999])
    with torch.inference_mode():
        c0_emb = tts.embeddings.embed_codec(c0)
        codes, frame, logits = tts.predictor.predict(past, c0_emb, return_logits=True)
        want_codes, want_logits = _uncached_greedy(tts.predictor, past, c0_emb)
        assert codes.shape == (2, 15) and codes.dtype == torch.long
        assert torch.equal(codes, want_codes)
        torch.testing.assert_close(logits, want_logits, atol=1e-5, rtol=1e-5)
        # Frame embedding: C(c0) + sum_g E_g(c_g), one stacked sum.
        embs = [c0_emb] + [tts.predictor.model.codec_embedding[i](codes[:, i]) for i in range(15)]
        assert torch.equal(frame, torch.stack(embs, 1).sum(1))
        assert torch.equal(tts.embeddings.embed_frame(torch.cat([c0[:, None], codes], 1)), frame)
        # Positions restart every frame: a second call with the same inputs repeats itself.
        tts.predictor.predict(torch.randn(2, H), c0_emb)
        again, _, _ = tts.predictor.predict(past, c0_emb)
        assert torch.equal(again, codes)


def test_sampled_predict_is_seeded(tts):
    H = tts.cfg.talker.hidden_size
    past = torch.randn(1, H, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        c0_emb = tts.embeddings.embed_codec(torch.tensor([7]))
        kw = dict(do_sample=True, temperature=1.5, top_k=0, top_p=1.0)
        a = tts.predictor.predict(past, c0_emb, generator=make_generator(1, "cpu"), **kw)[0]
        b = tts.predictor.predict(past, c0_emb, generator=make_generator(1, "cpu"), **kw)[0]
        c = tts.predictor.predict(past, c0_emb, generator=make_generator(2, "cpu"), **kw)[0]
        greedy = tts.predictor.predict(past, c0_emb)[0]
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert not torch.equal(a, greedy)
    assert ((a >= 0) & (a < 2048)).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_predict_has_no_host_sync(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint("1.7B-CustomVoice"), device="cuda", dtype="bfloat16")
    H = tts.cfg.talker.hidden_size
    past = torch.randn(1, H, device="cuda", dtype=torch.bfloat16)
    with torch.inference_mode():
        c0_emb = tts.embeddings.embed_codec(torch.tensor([7], device="cuda"))
        gen = make_generator(0, "cuda")
        tts.predictor.predict(past, c0_emb, do_sample=True, generator=gen)  # warm-up allocates the cache
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            codes, frame, _ = tts.predictor.predict(past, c0_emb, do_sample=True, generator=gen)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert codes.shape == (1, 15) and frame.dtype == torch.bfloat16
