"""CPU linear kernels: the oneDNN path keeps the model's results; int8 weight-only stays close."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model.linear import Int8Linear, PackedLinear, W8A8Linear, accelerate_cpu, weight_bytes

MODEL = "0.6B-CustomVoice"


def test_packed_linear_matches_f_linear():
    g = torch.Generator().manual_seed(0)
    lin = nn.Linear(1024, 1024, bias=False)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(1024, 1024, generator=g) / 32)
    x = torch.randn(3, 5, 1024, generator=g)
    ref = F.linear(x, lin.weight)
    weight = lin.weight
    assert accelerate_cpu(lin) == 0  # a bare Linear is not walked into; its parent is
    parent = nn.Sequential(lin)
    assert accelerate_cpu(parent) == 1
    assert type(parent[0]) is PackedLinear and parent[0].weight is weight
    assert list(parent.state_dict()) == ["0.weight"]
    torch.testing.assert_close(parent(x), ref, rtol=1e-5, atol=1e-5)


def test_linears_with_bias_and_small_ones_are_left_alone():
    m = nn.Sequential(nn.Linear(1024, 1024, bias=True), nn.Linear(1024, 1024, bias=False),
                      nn.Linear(8, 8, bias=False))
    assert accelerate_cpu(m) == 1
    assert type(m[0]) is nn.Linear and type(m[1]) is PackedLinear and type(m[2]) is nn.Linear


def test_int8_linear_quantizes_per_channel():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, 256, generator=g) * torch.linspace(0.01, 3, 64)[:, None]  # very different row scales
    w[5] = 0  # an all-zero row must not divide by zero
    q = Int8Linear(w)
    assert q.qweight.dtype == torch.int8 and q.qweight.abs().max() <= 127
    step = q.scale.float()
    rows = torch.arange(64) != 5
    torch.testing.assert_close(step[rows], w.abs().amax(1)[rows] / 127, rtol=2 ** -8, atol=0)
    assert step[5] == 1
    err = (q.dequantized() - w).abs()
    # Round to nearest with the kernel's own (bf16) scale: at most half a step per row.
    assert (err <= step[:, None] * 0.5 * (1 + 1e-6)).all()
    assert (q.dequantized()[5] == 0).all()
    x = torch.randn(2, 256, generator=g).bfloat16()
    y = q(x)
    ref = F.linear(x.float(), q.dequantized())
    assert y.dtype == torch.bfloat16 and y.shape == (2, 64)
    assert (y.float() - ref).abs().max() <= 0.02 * ref.abs().max()


def test_int8_keeps_output_heads_in_float(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint(MODEL), "cpu", quantize="int8")
    assert tts.dtype == torch.bfloat16 and tts.quantize == "int8"
    heads = [tts.talker.codec_head, *tts.predictor.lm_head]
    assert all(isinstance(h, nn.Linear) and h.weight.dtype == torch.bfloat16 for h in heads)
    assert isinstance(tts.talker.model.layers[0].self_attn.qkv_proj, Int8Linear)
    assert tts.talker.model.layers[0].self_attn.q_proj is None  # only the fused weights stay
    assert isinstance(tts.predictor.model.layers[0].mlp.down_proj, Int8Linear)
    plain = load_tts(tiny_checkpoint(MODEL), "cpu", "bfloat16")
    assert weight_bytes(tts.talker.model.layers) < 0.6 * weight_bytes(plain.talker.model.layers)


@pytest.fixture(scope="module")
def greedy_pair(tiny_checkpoint, monkeypatch_module):
    """The tiny model with plain nn.Linear, and with every bias-free linear on the oneDNN kernel
    (the size threshold lowered so that the tiny shapes use it too)."""
    import qwen3tts_cli.model.linear as linear

    folder = tiny_checkpoint(MODEL)
    monkeypatch_module.setattr(linear, "MIN_PACKED_ELEMENTS", 0)
    monkeypatch_module.setenv("QWEN3TTS_CPU_KERNELS", "0")
    plain = load_tts(folder, "cpu", "float32")
    monkeypatch_module.setenv("QWEN3TTS_CPU_KERNELS", "1")
    fast = load_tts(folder, "cpu", "float32")
    return plain, fast


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def test_fast_kernels_keep_greedy_codes_and_logits(greedy_pair):
    plain, fast = greedy_pair
    assert type(plain.talker.codec_head) is nn.Linear and type(fast.talker.codec_head) is PackedLinear
    kw = dict(speaker="ryan", language="english", greedy=True, max_frames=12, return_logits=True)
    a = plain.generate_codes("Fused kernels must not change a single code.", **kw)
    b = fast.generate_codes("Fused kernels must not change a single code.", **kw)
    assert torch.equal(a.codes, b.codes) and a.frames > 0
    assert (a.talker_logits - b.talker_logits).abs().max() <= 1e-4
    assert (a.cp_logits - b.cp_logits).abs().max() <= 1e-4


def test_unknown_quantization_is_refused(tiny_checkpoint):
    from qwen3tts_cli.errors import InputError

    with pytest.raises(InputError):
        load_tts(tiny_checkpoint(MODEL), "cpu", quantize="int4")


def test_dtype_int8_string_means_int8_weights(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint(MODEL), "cpu", "int8")
    assert tts.quantize == "int8" and tts.dtype == torch.bfloat16


def test_w8a8_linear_is_close_and_fp32():
    g = torch.Generator().manual_seed(2)
    w = torch.randn(512, 1024, generator=g) / 32
    x = torch.randn(1, 3, 1024, generator=g)
    lin = W8A8Linear(w)
    y, ref = lin(x), F.linear(x, w)
    assert y.dtype == torch.float32 and y.shape == ref.shape
    # 8-bit weights and activations: about 1% of the output's magnitude on Gaussian data.
    assert (y - ref).abs().mean() < 0.03 * ref.abs().mean()
    assert lin.nbytes == 512 * 1024 + 8 * 512


def test_w8a8_model_runs_in_fp32(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint(MODEL), "cpu", "w8a8")
    assert tts.dtype == torch.float32 and tts.quantize == "w8a8"
    assert isinstance(tts.predictor.model.layers[0].self_attn.o_proj, W8A8Linear)
    assert all(isinstance(h, W8A8Linear) for h in tts.predictor.lm_head)
    assert isinstance(tts.talker.codec_head, nn.Linear)  # picks the first code and EOS: stays float
    assert tts.generate_codes("Hi.", speaker="ryan", greedy=True, max_frames=3).frames == 3


@pytest.mark.parametrize("quantize", ["int8", "w8a8"])
def test_fused_projections_give_the_unfused_results(quantize, monkeypatch):
    """q/k/v and gate/up fused into one quantized product: per-row weight scales and a per-tensor
    activation scale of the same input make it the same arithmetic as three (two) products."""
    import copy

    import qwen3tts_cli.model.linear as linear
    from qwen3tts_cli.model.layers import DecoderBlock, KVCache, rope_cos_sin

    torch.manual_seed(3)
    dtype = torch.bfloat16 if quantize == "int8" else torch.float32
    block = DecoderBlock(64, 192, n_heads=4, n_kv_heads=2, head_dim=32, eps=1e-6).to(dtype)
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) / 8 + (1 if p.ndim == 1 else 0))
    fused, split = block, copy.deepcopy(block)
    assert accelerate_cpu(fused, quantize) == 4  # qkv, o, gate_up, down
    with monkeypatch.context() as mp:
        mp.setattr(linear, "_fuse_projections", lambda module, kind: 0)
        assert accelerate_cpu(split, quantize) == 7
    assert fused.self_attn.qkv_proj.out_features == (4 + 2 + 2) * 32
    assert fused.mlp.gate_up_proj.out_features == 2 * 192 and fused.mlp.gate_proj is None
    assert weight_bytes(fused) == weight_bytes(split)
    pos = torch.arange(5)
    cos, sin = rope_cos_sin(pos, 32, 10000.0, dtype)
    for m in (fused, split):
        m.self_attn.kv_cache = KVCache(1, 8, 2, 32, dtype)
    x = torch.randn(1, 5, 64, dtype=dtype)
    with torch.inference_mode():
        a = fused(x, cos, sin, None, pos, 5)
        b = split(x, cos, sin, None, pos, 5)
    assert a.dtype == dtype and torch.isfinite(a.float()).all()
    torch.testing.assert_close(a, b, rtol=0, atol=0) if quantize == "w8a8" else \
        torch.testing.assert_close(a, b, rtol=1e-2, atol=1e-2)


def test_cpu_linear_matches_f_linear_and_switches_off():
    from qwen3tts_cli.model.linear import cpu_linear

    g = torch.Generator().manual_seed(5)
    x = torch.randn(3, 64, generator=g)
    w = torch.randn(48, 64, generator=g)
    b = torch.randn(48, generator=g)
    w_t = torch.randn(64, 48, generator=g).t()  # a transposed view, as the codec passes it
    torch.testing.assert_close(cpu_linear(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(cpu_linear(x, w_t), F.linear(x, w_t), rtol=1e-5, atol=1e-5)
    # Other dtypes are not routed to the fp32 kernel.
    assert torch.equal(cpu_linear(x.double(), w.double()), F.linear(x.double(), w.double()))
    assert torch.equal(cpu_linear(x, w, b, onednn=False), F.linear(x, w, b))


def test_float_fusion_keeps_the_models_results(tiny_checkpoint, monkeypatch):
    """What build_tts does on CUDA in bf16, run on CPU in fp32 (plain nn.Linear both ways): one
    product over the concatenated weights gives the three products' values, so greedy codes match."""
    import qwen3tts_cli.model.layers as layers
    from qwen3tts_cli.runtime import RuntimeSettings

    plain = RuntimeSettings(cpu_kernels=False)
    split = load_tts(tiny_checkpoint(MODEL), "cpu", "float32", runtime=plain)
    monkeypatch.setattr(layers, "fused_ops", lambda device, dtype, enabled=True: enabled)
    fused = load_tts(tiny_checkpoint(MODEL), "cpu", "float32", runtime=plain)
    for m in (fused.talker, fused.predictor):
        for layer in m.model.layers:
            attn, mlp = layer.self_attn, layer.mlp
            assert attn.q_proj is None and mlp.gate_proj is None and mlp.up_proj is None
            assert type(attn.qkv_proj) is nn.Linear and attn.qkv_proj.weight.dtype == torch.float32
    a0, b0 = fused.talker.model.layers[0].self_attn, split.talker.model.layers[0].self_attn
    assert torch.equal(a0.qkv_proj.weight, torch.cat([b0.q_proj.weight, b0.k_proj.weight, b0.v_proj.weight]))
    assert weight_bytes(fused.talker) == weight_bytes(split.talker)
    assert weight_bytes(fused.predictor) == weight_bytes(split.predictor)
    assert not any(p.requires_grad for p in fused.talker.parameters())
    runs = [t.generate_codes("Hello there.", speaker="ryan", greedy=True, max_frames=8, return_logits=True)
            for t in (fused, split)]
    assert torch.equal(runs[0].codes, runs[1].codes) and runs[0].frames == 8
    torch.testing.assert_close(runs[0].talker_logits, runs[1].talker_logits, rtol=1e-4, atol=1e-4)


def test_packed_rows_match_the_plain_product():
    from qwen3tts_cli.model.linear import PackedLinear, _mkl_packed_available, pack_for_rows

    if not _mkl_packed_available():
        pytest.skip("this torch has no MKL packed GEMM")
    torch.manual_seed(0)
    lin = torch.nn.Linear(1024, 1536, bias=False)
    lin.__class__ = PackedLinear
    module = torch.nn.Sequential(lin)
    assert pack_for_rows(module, 4) == 1 and lin.packed_rows == 4
    assert pack_for_rows(module, 4) == 0  # already packed for 4
    for shape in ((1, 1024), (2, 1024), (3, 1024), (4, 1024), (2, 2, 1024), (5, 1024), (1, 7, 1024)):
        x = torch.randn(*shape)
        y = lin(x)
        assert y.shape == (*shape[:-1], 1536)
        torch.testing.assert_close(y, torch.nn.functional.linear(x, lin.weight), atol=2e-4, rtol=1e-4)
    # One row keeps the oneDNN product: bit for bit what it was before packing.
    x = torch.randn(1, 1024)
    assert torch.equal(lin(x), torch.ops.mkldnn._linear_pointwise(x, lin.weight, None, "none", [], ""))
    assert pack_for_rows(module, 1) == 0
