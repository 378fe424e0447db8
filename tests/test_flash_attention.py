"""flash-attn's KV-cache kernel behind ``layers.CacheSpan``: the spans the talker builds must
describe exactly the keys its SDPA masks allow. flash-attn needs CUDA, so a stand-in written from
flash-attn's documented semantics runs here: ``cache_seqlens`` is each row's end slot (exclusive),
``cache_leftpad`` its first slot, and causal attention is aligned to the end (query i of L sees
keys up to end - L + i). On a GPU with flash-attn installed, scripts/gpu_check.py compares the real
kernel with SDPA."""

import pytest
import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model import cuda_graphs, layers
from qwen3tts_cli.model.frames import Row, generate
from qwen3tts_cli.model.layers import Attention, CacheSpan, KVCache, attention_mask, rope_cos_sin

EOS = 2150


class StandIn:
    """flash_attn_with_kvcache(q, k_cache, v_cache, cache_seqlens=, softmax_scale=, causal=,
    cache_leftpad=) for q [B, L, H, D] and caches [B, S, kv_heads, D] (strided views allowed)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, q, k_cache, v_cache, cache_seqlens, softmax_scale, causal, cache_leftpad=None):
        assert causal and cache_seqlens.dtype == torch.int32 and k_cache.stride(-1) == 1
        assert cache_leftpad is None or cache_leftpad.dtype == torch.int32
        self.calls += 1
        B, L, H, D = q.shape
        group = H // k_cache.shape[2]
        out = torch.zeros_like(q)
        for b in range(B):
            start = 0 if cache_leftpad is None else int(cache_leftpad[b])
            end = int(cache_seqlens[b])
            k = k_cache[b, start:end].repeat_interleave(group, dim=1)  # [n, H, D]
            v = v_cache[b, start:end].repeat_interleave(group, dim=1)
            n = end - start
            scores = torch.einsum("lhd,nhd->hln", q[b], k) * softmax_scale
            seen = torch.arange(n)[None, :] <= (n - L + torch.arange(L))[:, None]
            p = scores.masked_fill(~seen, float("-inf")).softmax(-1).nan_to_num(0.0)  # no key: zeros
            out[b] = torch.einsum("hln,nhd->lhd", p, v)
        return out


@pytest.fixture
def flash(monkeypatch):
    fn = StandIn()
    monkeypatch.setattr(layers, "flash_attention_for", lambda q, span, enabled=True: fn)
    return fn


def test_attention_with_a_span_equals_the_masked_sdpa(flash):
    torch.manual_seed(0)
    attn = Attention(64, 4, 2, 16, qk_norm_eps=1e-6)
    B, S, L = 3, 12, 3
    start = torch.tensor([0, 2, 5], dtype=torch.int32)
    slots = torch.arange(6, 6 + L)  # queries at slots 6..8 of a cache holding 0..5
    keys = torch.arange(S)
    mask = attention_mask(slots, keys)[None] & (keys[None, None, :] >= start[:, None, None].long())
    span = CacheSpan(mask[:, None], torch.full((B,), 6 + L, dtype=torch.int32), start)
    cos, sin = rope_cos_sin(slots, 16, 10000.0, torch.float32)
    past = torch.randn(B, 2, S, 16), torch.randn(B, 2, S, 16)
    x = torch.randn(B, L, 64)
    out = {}
    for name, m in (("flash", span), ("sdpa", span.mask)):
        attn.kv_cache = KVCache(B, S, 2, 16, torch.float32)
        attn.kv_cache.k_cache.copy_(past[0])
        attn.kv_cache.v_cache.copy_(past[1])
        out[name] = attn(x, cos, sin, m, slots, S)
    assert flash.calls == 1
    assert (out["flash"] - out["sdpa"]).abs().max() <= 1e-5
    assert out["flash"].abs().max() > 0.1  # real values, not zeros


def _rows(tts, prompts, settings, caps, seed=None, **kw):
    rows = [Row(p, c, seed) for p, c in zip(prompts, caps)]
    for _ in generate(tts.talker, tts.predictor, rows, settings, EOS, record_logits=True, **kw):
        pass
    return [r.result() for r in rows]


def _frames(tts, prompt, settings, n, **kw):
    r = _rows(tts, [prompt], settings, [n], seed=3, **kw)[0]
    return r.codes, r.talker_logits


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def test_talker_prefill_and_graph_step_through_flash(tts, monkeypatch):
    monkeypatch.setattr(cuda_graphs, "BUCKET", 4)  # masked buckets: the graph step's span
    p = tts.prompt("Hello there, world.", language="english", speaker="ryan")
    greedy = tts.sampling(greedy=True)
    want = _frames(tts, p, greedy, 10, cuda_graphs=False)
    sdpa_static = _frames(tts, p, greedy, 10, static=True)
    fn = StandIn()
    monkeypatch.setattr(layers, "flash_attention_for", lambda q, span, enabled=True: fn)
    got = _frames(tts, p, greedy, 10, static=True)
    layers_n = len(tts.talker.model.layers)
    assert fn.calls == layers_n * 11  # the prefill and every frame's talker step
    assert torch.equal(got[0], want[0]) and torch.equal(got[0], sdpa_static[0])
    assert (got[1] - want[1]).abs().max() <= 1e-4


def test_left_padded_batch_through_flash(tts, monkeypatch):
    prompts = [tts.prompt(t, language="english", speaker="ryan")
               for t in ("Hi.", "A much longer line of text for the second row.", "Hello there.")]
    settings = tts.sampling(greedy=True)
    caps = [5, 7, 6]
    alone = [_frames(tts, q, settings, c, cuda_graphs=False) for q, c in zip(prompts, caps)]
    fn = StandIn()
    monkeypatch.setattr(layers, "flash_attention_for", lambda q, span, enabled=True: fn)
    eager = _rows(tts, prompts, settings, caps, cuda_graphs=False)
    layers_n = len(tts.talker.model.layers)
    assert fn.calls == layers_n * 7  # prefill + 6 steps (the 7th frame's step is not needed)
    static = _rows(tts, prompts, settings, caps, static=True)
    assert fn.calls > layers_n * 7
    for e, s, a in zip(eager, static, alone):
        assert torch.equal(e.codes, a[0]) and torch.equal(s.codes, a[0])
        assert (e.talker_logits - a[1]).abs().max() <= 1e-4


def test_flash_only_for_half_precision_on_cuda(monkeypatch):
    span = CacheSpan(torch.ones(1, 1, dtype=torch.bool), torch.ones(1, dtype=torch.int32))
    monkeypatch.setattr(layers, "_flash_attn_with_kvcache", lambda: StandIn())
    assert layers.flash_attention_for(torch.zeros(1, 1, 1, 8), span) is None  # CPU fp32
    assert layers.flash_attention_for(torch.zeros(1, 1, 1, 8, dtype=torch.bfloat16), span) is None  # CPU


def test_flash_attn_can_be_turned_off(monkeypatch):
    import sys
    import types

    fake = types.ModuleType("flash_attn")
    fake.flash_attn_with_kvcache = StandIn()
    monkeypatch.setitem(sys.modules, "flash_attn", fake)
    layers._flash_attn_with_kvcache.cache_clear()
    try:
        assert layers._flash_attn_with_kvcache() is fake.flash_attn_with_kvcache
        # What flash_attention_for reads of a bf16 query on CUDA.
        q = types.SimpleNamespace(is_cuda=True, dtype=torch.bfloat16)
        span = CacheSpan(torch.ones(1, 1, dtype=torch.bool), torch.ones(1, dtype=torch.int32))
        assert layers.flash_attention_for(q, span) is fake.flash_attn_with_kvcache
        assert layers.flash_attention_for(q, span, enabled=False) is None  # RuntimeSettings.flash_attn
        # A flash-attn without cache_leftpad (< 2.6) still serves unpadded rows only.
        assert layers._takes_leftpad(StandIn()) and not layers._takes_leftpad(lambda q, k, v, cache_seqlens: q)
    finally:
        layers._flash_attn_with_kvcache.cache_clear()
