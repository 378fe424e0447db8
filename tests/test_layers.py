import math

import pytest
import torch

from qwen3tts_cli.model.layers import (Attention, DecoderBlock, KVCache, RMSNorm, apply_rope, attention_mask,
                                 rope_cos_sin)


def test_rope_matches_direct_formula():
    D, theta = 16, 1e6
    pos = torch.tensor([0, 1, 5, 37, 1000])
    x = torch.randn(2, 3, len(pos), D, generator=torch.Generator().manual_seed(0))
    cos, sin = rope_cos_sin(pos, D, theta, torch.float32)
    assert cos.shape == (len(pos), D) and cos.dtype == torch.float32
    y = apply_rope(x, cos, sin)
    xd = x.double()
    expect = torch.empty_like(xd)
    half = D // 2
    for p_i, p in enumerate(pos.tolist()):
        for i in range(half):
            a = p * theta ** (-2 * i / D)
            x1, x2 = xd[..., p_i, i], xd[..., p_i, i + half]
            expect[..., p_i, i] = x1 * math.cos(a) - x2 * math.sin(a)
            expect[..., p_i, i + half] = x2 * math.cos(a) + x1 * math.sin(a)
    torch.testing.assert_close(y.double(), expect, atol=2e-4, rtol=1e-4)
    # Position 0 is the identity.
    torch.testing.assert_close(y[..., 0, :], x[..., 0, :])


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_is_the_reference_formula_bit_for_bit(dtype):
    # The reference: x*cos + rotate_half(x)*sin with rotate_half(x) = [-x2, x1] and the plain sin.
    D, pos = 128, torch.arange(0, 4000, 7)
    x = (torch.randn(2, 3, len(pos), D, generator=torch.Generator().manual_seed(1)) * 4).to(dtype)
    inv = 1.0 / (1e6 ** (torch.arange(0, D, 2, dtype=torch.int64).float() / D))
    emb = torch.cat([pos.float()[:, None] * inv] * 2, dim=-1)
    cos, sin = emb.cos().to(dtype), emb.sin().to(dtype)
    x1, x2 = x[..., :D // 2], x[..., D // 2:]
    want = x * cos + torch.cat((-x2, x1), dim=-1) * sin
    tables = rope_cos_sin(pos, D, 1e6, dtype)
    assert torch.equal(tables[0], cos) and torch.equal(tables[1][..., D // 2:], sin[..., D // 2:])
    assert torch.equal(apply_rope(x, *tables), want)


def test_rope_cos_sin_cast_to_activation_dtype():
    pos = torch.arange(300)
    c32, s32 = rope_cos_sin(pos, 128, 1e6, torch.float32)
    c16, s16 = rope_cos_sin(pos, 128, 1e6, torch.bfloat16)
    assert c16.dtype == torch.bfloat16
    # Angles in fp32, cast once: bf16 values are exactly the rounded fp32 values.
    assert torch.equal(c16, c32.to(torch.bfloat16)) and torch.equal(s16, s32.to(torch.bfloat16))


def test_rmsnorm_casts_before_weight_multiply():
    g = torch.Generator().manual_seed(1)
    n = RMSNorm(64, 1e-6)
    with torch.no_grad():
        n.weight.copy_(torch.randn(64, generator=g) * 3)
    n = n.to(torch.bfloat16)
    x = (torch.randn(8, 64, generator=g) * 5).to(torch.bfloat16)
    y = n(x)
    assert y.dtype == torch.bfloat16
    x32 = x.float()
    normed = x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert torch.equal(y, n.weight * normed.to(torch.bfloat16))
    # The other order (multiply in fp32, cast last) rounds differently somewhere.
    assert not torch.equal(y, (n.weight.float() * normed).to(torch.bfloat16))


@pytest.mark.parametrize("shape", [(1, 1, 1024), (1, 16, 1, 128), (3, 7, 64), (2, 5, 1000)])
def test_rmsnorm_fp32_is_the_official_formula_bit_for_bit(shape):
    # fp32 on CPU takes F.rms_norm (one call); it must round exactly like the written-out formula.
    g = torch.Generator().manual_seed(shape[-1] + len(shape))
    n = RMSNorm(shape[-1], 1e-6)
    with torch.no_grad():
        n.weight.copy_(torch.randn(shape[-1], generator=g) * 3)
    x = torch.randn(*shape, generator=g) * 5
    normed = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert torch.equal(n(x), n.weight * normed)


def test_fused_ops_only_in_half_precision_on_cuda():
    from qwen3tts_cli.model.layers import fused_ops

    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert fused_ops(cuda, torch.bfloat16) and fused_ops(cuda, torch.float16)
    assert not fused_ops(cuda, torch.float32)  # fp32 keeps the reference's arithmetic (greedy parity)
    assert not fused_ops(cpu, torch.bfloat16) and not fused_ops(cpu, torch.float32)
    assert not fused_ops(cuda, torch.bfloat16, enabled=False)


def test_apply_runtime_sets_every_norm_and_attention():
    from qwen3tts_cli.model.layers import apply_runtime

    block = DecoderBlock(64, 128, 4, 2, 16, 1e-6)
    norms = [m for m in block.modules() if isinstance(m, RMSNorm)]
    assert len(norms) == 4 and not any(n.fused for n in norms) and block.self_attn.flash_attn
    apply_runtime(block, torch.device("cuda"), torch.bfloat16, fused=True, flash_attn=False)
    assert all(n.fused for n in norms) and not block.self_attn.flash_attn
    apply_runtime(block, torch.device("cuda"), torch.float32, fused=True, flash_attn=True)
    assert not any(n.fused for n in norms) and block.self_attn.flash_attn


def test_rmsnorm_fused_form_is_one_call_within_a_bf16_ulp(monkeypatch):
    # What bf16 on CUDA runs (F.rms_norm, one kernel there), here on CPU: rounding once instead of
    # before the weight multiply moves a value by at most one bf16 ulp.
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(2)
    n = RMSNorm(1024, 1e-6)
    with torch.no_grad():
        n.weight.copy_(torch.randn(1024, generator=g) * 3)
    n = n.to(torch.bfloat16)
    x = (torch.randn(4, 16, 1024, generator=g) * 5).to(torch.bfloat16)
    op_by_op = n(x).float()
    calls = []
    real = F.rms_norm
    monkeypatch.setattr(F, "rms_norm", lambda *a, **k: calls.append(a[0].dtype) or real(*a, **k))
    n.fused = True  # as apply_runtime sets it for bf16 on CUDA
    fused = n(x)
    assert calls == [torch.bfloat16] and fused.dtype == torch.bfloat16
    ulp = 2.0 ** (torch.floor(torch.log2(op_by_op.abs().clamp_min(1e-30))) - 7)
    assert ((fused.float() - op_by_op).abs() <= ulp).all()


def _manual_attention(attn: Attention, x, pos, window=None):
    B, L, _ = x.shape
    q = attn.q_norm(attn.q_proj(x).view(B, L, attn.n_heads, -1)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(B, L, attn.n_kv_heads, -1)).transpose(1, 2)
    v = attn.v_proj(x).view(B, L, attn.n_kv_heads, -1).transpose(1, 2)
    cos, sin = rope_cos_sin(pos, attn.head_dim, 1e4, x.dtype)
    q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
    rep = attn.n_heads // attn.n_kv_heads
    k, v = k.repeat_interleave(rep, dim=1), v.repeat_interleave(rep, dim=1)  # head h -> kv head h // rep
    scores = q @ k.transpose(-1, -2) / math.sqrt(attn.head_dim)
    i, j = pos[:, None], pos[None, :]
    allowed = j <= i
    if window is not None:
        allowed &= j > i - window
    scores = scores.masked_fill(~allowed, float("-inf"))
    y = scores.softmax(-1) @ v
    return attn.o_proj(y.transpose(1, 2).reshape(B, L, -1))


@pytest.mark.parametrize("window", [None, 3])
def test_attention_gqa_and_window_match_manual(window):
    torch.manual_seed(0)
    attn = Attention(32, n_heads=4, n_kv_heads=2, head_dim=16, qk_norm_eps=1e-6)
    x = torch.randn(2, 7, 32)
    pos = torch.arange(7)
    cos, sin = rope_cos_sin(pos, 16, 1e4, x.dtype)
    y = attn(x, cos, sin, attention_mask(pos, pos, window))
    torch.testing.assert_close(y, _manual_attention(attn, x, pos, window), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_attention_ropes_q_and_k_together_bit_for_bit(dtype):
    # Attention applies RoPE to q and k in one go; the values must be those of one call each.
    import torch.nn.functional as F

    torch.manual_seed(4)
    attn = Attention(64, n_heads=4, n_kv_heads=2, head_dim=16, qk_norm_eps=1e-6).to(dtype)
    x = torch.randn(2, 5, 64).to(dtype)
    pos = torch.arange(5)
    cos, sin = rope_cos_sin(pos, 16, 1e4, dtype)
    mask = attention_mask(pos, pos)
    q = attn.q_norm(attn.q_proj(x).view(2, 5, 4, 16)).transpose(1, 2)
    k = attn.k_norm(attn.k_proj(x).view(2, 5, 2, 16)).transpose(1, 2)
    v = attn.v_proj(x).view(2, 5, 2, 16).transpose(1, 2)
    y = F.scaled_dot_product_attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v, attn_mask=mask,
                                       scale=0.25, enable_gqa=True)
    want = attn.o_proj(y.transpose(1, 2).reshape(2, 5, 64))
    assert torch.equal(attn(x, cos, sin, mask), want)


def test_attention_mask_window_includes_self():
    m = attention_mask(torch.arange(5), torch.arange(5), window=2)
    assert m.tolist()[4] == [False, False, False, True, True]
    assert m.tolist()[0] == [True, False, False, False, False]


def test_static_cache_incremental_equals_full_sequence():
    torch.manual_seed(0)
    blocks = [DecoderBlock(32, 48, 4, 2, 16, 1e-6) for _ in range(2)]
    x = torch.randn(1, 9, 32)
    pos = torch.arange(9)

    def run(inp, p, mask, kv_len=None):
        cos, sin = rope_cos_sin(p, 16, 1e6, inp.dtype)
        for b in blocks:
            inp = b(inp, cos, sin, mask, p, kv_len)
        return inp

    full = run(x, pos, attention_mask(pos, pos))
    for b in blocks:
        b.self_attn.kv_cache = KVCache(1, 16, 2, 16, torch.float32)
    # Prefill 4 positions (mask over the whole buffer), then one token at a time.
    first = run(x[:, :4], pos[:4], attention_mask(pos[:4], torch.arange(16)))
    steps = [run(x[:, t:t + 1], pos[t:t + 1], None, kv_len=t + 1) for t in range(4, 9)]
    inc = torch.cat([first] + steps, dim=1)
    torch.testing.assert_close(inc, full, atol=1e-5, rtol=1e-5)
    # Garbage beyond the read region is never seen.
    for b in blocks:
        b.self_attn.kv_cache.k_cache[:, :, 9:] = 1e4
    again = run(x[:, 8:9], pos[8:9], None, kv_len=9)
    torch.testing.assert_close(again, full[:, 8:9], atol=1e-5, rtol=1e-5)
