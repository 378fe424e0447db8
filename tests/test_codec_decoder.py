"""Codec decoder: primitives, the official chunk grid, input checks, and parity with the reference.

The parity goldens (tests/fixtures/goldens/codec/) are the official qwen-tts decoder's float32 output
for seeded random codes on seed-0 random checkpoints; scripts/goldens_codec.py regenerates them.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from qwen3tts_cli.io.checkpoint import build_checkpoint
from qwen3tts_cli.codec import CHUNK_FRAMES, LEFT_CONTEXT_FRAMES, CodecDecoder, check_codes, chunk_grid
from qwen3tts_cli.codec.decoder import CausalConv1d, CausalConvTranspose1d, SnakeBeta
from qwen3tts_cli.errors import InputError, ModelError

GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "codec"
HOP = 1920


def snr_db(ref: np.ndarray, out: np.ndarray) -> float:
    ref = ref.astype(np.float64)
    noise = np.sum((out.astype(np.float64) - ref) ** 2)
    return float("inf") if noise == 0 else 10 * np.log10(np.sum(ref ** 2) / noise)


# ---------------------------------------------------------------------------------------------
# Primitives
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,dilation", [(1, 1), (3, 1), (7, 1), (7, 3), (7, 9)])
def test_causal_conv_matches_direct_sum(k, dilation):
    torch.manual_seed(k * 10 + dilation)
    conv = CausalConv1d(3, 2, k, dilation=dilation).double()
    x = torch.randn(1, 3, 40, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (1, 2, 40)
    w, b = conv.conv.weight, conv.conv.bias
    expect = torch.zeros(1, 2, 40, dtype=torch.float64)
    for t in range(40):
        acc = b.clone()
        for j in range(k):
            src = t - (k - 1 - j) * dilation  # zeros to the left, nothing from the right
            if src >= 0:
                acc += w[:, :, j] @ x[0, :, src]
        expect[0, :, t] = acc
    torch.testing.assert_close(y, expect)


def test_causal_conv_depthwise_is_causal():
    torch.manual_seed(0)
    conv = CausalConv1d(4, 4, 7, groups=4)
    x = torch.randn(1, 4, 30)
    x2 = x.clone()
    x2[..., 20:] += 1.0
    y, y2 = conv(x), conv(x2)
    assert torch.equal(y[..., :20], y2[..., :20])
    assert not torch.equal(y[..., 20:], y2[..., 20:])


@pytest.mark.parametrize("k,s", [(2, 2), (16, 8), (10, 5), (8, 4), (6, 3)])
def test_causal_transposed_conv_trims_right(k, s):
    torch.manual_seed(k)
    tconv = CausalConvTranspose1d(3, 2, k, s)
    x = torch.randn(1, 3, 11)
    y = tconv(x)
    assert y.shape == (1, 2, 11 * s)
    full = tconv.conv(x)
    assert full.shape[-1] == 10 * s + k
    # The left edge is kept: the first samples come from frame 0 alone.
    assert torch.equal(y, full[..., : 11 * s])
    x2 = x.clone()
    x2[..., 6:] += 1.0
    assert torch.equal(tconv(x2)[..., : 6 * s], y[..., : 6 * s])


def test_snakebeta_formula_and_order():
    torch.manual_seed(0)
    act = SnakeBeta(8)
    with torch.no_grad():
        act.alpha.normal_(0, 0.5)
        act.beta.normal_(0, 0.5)
    x = torch.randn(2, 8, 500) * 3
    a = torch.exp(act.alpha)[None, :, None]
    b = torch.exp(act.beta)[None, :, None]
    with torch.no_grad():
        y = act(x)
    # Reciprocal first, then a multiply: bit for bit.
    assert torch.equal(y, x + (1.0 / (b + 1e-9)) * torch.pow(torch.sin(x * a), 2))
    # Dividing instead is the same function but rounds differently somewhere.
    divided = x + torch.pow(torch.sin(x * a), 2) / (b + 1e-9)
    torch.testing.assert_close(y, divided)
    assert not torch.equal(y, divided)
    # alpha and beta are logs: with both 0, y = x + sin(x)^2.
    with torch.no_grad():
        act.alpha.zero_()
        act.beta.zero_()
        torch.testing.assert_close(act(x), x + torch.sin(x) ** 2)


# ---------------------------------------------------------------------------------------------
# The chunk grid
# ---------------------------------------------------------------------------------------------

def test_chunk_grid_boundaries():
    assert CHUNK_FRAMES == 300 and LEFT_CONTEXT_FRAMES == 25
    assert chunk_grid(1) == [(0, 1, 0)]
    assert chunk_grid(300) == [(0, 300, 0)]
    assert chunk_grid(301) == [(0, 300, 0), (300, 301, 25)]
    assert chunk_grid(330) == [(0, 300, 0), (300, 330, 25)]
    assert chunk_grid(900) == [(0, 300, 0), (300, 600, 25), (600, 900, 25)]
    # The reference's rule: context only where start - context > 0.
    assert chunk_grid(50, chunk=20, context=25) == [(0, 20, 0), (20, 40, 20), (40, 50, 25)]
    assert chunk_grid(0) == []


@pytest.fixture(scope="module")
def tiny_decoder(tiny_checkpoint):
    return CodecDecoder.from_folder(tiny_checkpoint("Tokenizer-12Hz"))


def _codes(T: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 2048, size=(T, 16))


def test_330_frames_are_two_independent_chunks(tiny_decoder):
    codes = _codes(330, 1)
    chunks = list(tiny_decoder.iter_decode(codes))
    assert [len(c) for c in chunks] == [300 * HOP, 30 * HOP]
    out = torch.cat(chunks)
    assert out.dtype == torch.float32
    t = torch.from_numpy(codes).T.unsqueeze(0)
    with torch.inference_mode():
        first = tiny_decoder(t[..., 0:300])[0, 0]
        second = tiny_decoder(t[..., 275:330])[0, 0, 25 * HOP:]
    assert torch.equal(out, torch.cat([first, second]))
    # The grid matters beyond 300 frames: one whole pass gives other audio after frame 300
    # (the first 300 frames agree up to rounding: causal, but the pass is longer) ...
    whole = tiny_decoder.decode(codes, whole_sequence=True)
    assert whole.shape == out.shape
    torch.testing.assert_close(whole[: 300 * HOP], out[: 300 * HOP], rtol=0, atol=1e-5)
    assert (whole[300 * HOP:] - out[300 * HOP:]).abs().max() > 1e-3
    # ... and the same audio up to 300 frames (one chunk either way).
    assert torch.equal(tiny_decoder.decode(codes[:30], whole_sequence=True), tiny_decoder.decode(codes[:30]))


def test_decoder_is_causal_across_frames(tiny_decoder):
    codes = _codes(40, 2)
    changed = codes.copy()
    changed[30:] = (changed[30:] + 1) % 2048
    a, b = tiny_decoder.decode(codes), tiny_decoder.decode(changed)
    assert torch.equal(a[: 30 * HOP], b[: 30 * HOP])
    assert not torch.equal(a[30 * HOP:], b[30 * HOP:])


def test_every_codebook_is_used(tiny_decoder):
    codes = _codes(5, 3)
    base = tiny_decoder.decode(codes)
    for g in (0, 1, 15):
        changed = codes.copy()
        changed[:, g] = (changed[:, g] + 7) % 2048
        assert not torch.equal(tiny_decoder.decode(changed), base), g


def test_loads_from_model_folder(tiny_checkpoint):
    folder = tiny_checkpoint("0.6B-CustomVoice")
    dec = CodecDecoder.from_folder(folder)
    same = CodecDecoder.from_folder(folder / "speech_tokenizer")
    codes = _codes(3, 4)
    assert torch.equal(dec.decode(codes), same.decode(codes))


def test_load_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(ModelError, match="not a folder"):
        CodecDecoder.from_folder(tmp_path / "nope")
    with pytest.raises(ModelError, match="config.json"):
        CodecDecoder.from_folder(tmp_path)
    # A checkpoint whose config promises other widths fails the strict tensor check.
    src = tiny_checkpoint("Tokenizer-12Hz")
    bad = tmp_path / "bad"
    bad.mkdir()
    cfg = json.loads((src / "config.json").read_text())
    cfg["decoder_config"]["latent_dim"] = 96
    (bad / "config.json").write_text(json.dumps(cfg))
    (bad / "model.safetensors").symlink_to(src / "model.safetensors")
    with pytest.raises(ModelError, match="latent_dim|shape"):
        CodecDecoder.from_folder(bad)


# ---------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("codes,message", [
    (np.zeros((4, 16), dtype=np.float32), "integers"),
    (np.zeros((4, 16), dtype=bool), "integers"),
    (torch.zeros(4, 16), "integers"),
    (np.zeros((4, 15), dtype=np.int64), r"shape \(frames, 16\)"),
    (np.zeros((16,), dtype=np.int64), "shape"),
    (np.zeros((1, 4, 16), dtype=np.int64), "shape"),
    (np.zeros((0, 16), dtype=np.int64), "no frames"),
    (np.full((2, 16), 2048), "0..2047, found 2048"),
    (np.full((2, 16), -1), "found -1"),
    (np.full((2, 16), 2**63, dtype=np.uint64), "0..2047"),
    ([[0] * 16], "integer array"),
])
def test_bad_codes(codes, message):
    with pytest.raises(InputError, match=message):
        check_codes(codes)


def test_good_codes_become_long():
    for codes in (np.full((3, 16), 2047, dtype=np.int16), np.zeros((1, 16), dtype=np.uint8),
                  torch.full((2, 16), 5, dtype=torch.int32)):
        t = check_codes(codes)
        assert t.dtype == torch.long and t.shape == tuple(codes.shape)
        assert int(t.max()) == int(codes.max())


def test_decode_validates(tiny_decoder):
    with pytest.raises(InputError):
        tiny_decoder.decode(np.zeros((3, 15), dtype=np.int64))
    with pytest.raises(InputError):
        tiny_decoder.iter_decode(np.full((3, 16), 4096))  # at the call, before any iteration


# ---------------------------------------------------------------------------------------------
# Parity with the official decoder
# ---------------------------------------------------------------------------------------------

def _goldens(size: str):
    meta = json.loads((GOLDENS / "meta.json").read_text())
    with np.load(GOLDENS / "codes.npz") as c, np.load(GOLDENS / f"wav_{size}.npz") as w:
        return meta, {k: c[k] for k in c.files}, {k: w[k] for k in w.files}


def _check_parity(folder: Path, size: str, names: list[str]):
    meta, codes, wavs = _goldens(size)
    manifest = json.loads((folder / ".qwen3tts-manifest.json").read_text())
    assert manifest["files"]["model.safetensors"]["sha256"] == meta["sizes"][size]["model.safetensors sha256"], \
        "the checkpoint builder changed: regenerate the goldens (scripts/goldens_codec.py)"
    dec = CodecDecoder.from_folder(folder)
    for name in names:
        ref = wavs[name]
        out = dec.decode(codes[name]).numpy()
        assert out.shape == (codes[name].shape[0] * HOP,) == ref.shape, name
        assert np.abs(out - ref).max() <= 1e-4, name
        assert snr_db(ref, out) >= 60, name
        assert np.sqrt(np.mean(ref ** 2)) > 0.05  # the golden is real audio-range signal, not silence


def test_parity_tiny(tiny_checkpoint):
    _check_parity(tiny_checkpoint("Tokenizer-12Hz"), "tiny", ["f1", "f7", "f100", "f330"])


@pytest.fixture(scope="session")
def full_tokenizer(tmp_path_factory):
    """The full-size random tokenizer (682 MB), built once per session."""
    return build_checkpoint("Tokenizer-12Hz", "full", 0, tmp_path_factory.mktemp("tokenizer-full"))


def test_parity_full_short(full_tokenizer):
    _check_parity(full_tokenizer, "full", ["f1", "f7"])


@pytest.mark.slow
def test_parity_full_long(full_tokenizer):
    _check_parity(full_tokenizer, "full", ["f100", "f330"])


# -- the streaming decoder's matrix-product forms of its convolutions ----------------------------

@pytest.mark.parametrize("kernels", ["1", "0"])
@pytest.mark.parametrize("c_in,c_out,k,dilation,T,B", [
    (16, 24, 7, 1, 4, 1), (16, 24, 7, 3, 9, 2), (8, 8, 7, 9, 1, 1), (12, 5, 3, 1, 30, 1), (6, 6, 1, 1, 5, 2)])
def test_conv1d_as_matmul_equals_conv1d(request, kernels, c_in, c_out, k, dilation, T, B):
    from qwen3tts_cli.codec import decoder as decoder_module
    from qwen3tts_cli.codec.decoder import conv1d_as_matmul

    # Inside a streaming call the decoder's RuntimeSettings.cpu_kernels picks the kernel.
    token = decoder_module._STREAMING.set(kernels == "1")
    request.addfinalizer(lambda: decoder_module._STREAMING.reset(token))
    g = torch.Generator().manual_seed(T * 31 + k)
    w = torch.randn(c_out, c_in, k, generator=g)
    b = torch.randn(c_out, generator=g)
    x = torch.randn(B, c_in, T + (k - 1) * dilation, generator=g)
    want = F.conv1d(x, w, b, dilation=dilation)
    got = conv1d_as_matmul(x, w, b, dilation)
    assert got.shape == want.shape == (B, c_out, T) and got.is_contiguous()
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    no_bias = conv1d_as_matmul(x, w, None, dilation)
    torch.testing.assert_close(no_bias, F.conv1d(x, w, None, dilation=dilation), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kernels", ["1", "0"])
@pytest.mark.parametrize("c_in,c_out,stride,L,B", [(16, 8, 8, 1, 1), (16, 8, 5, 7, 2), (12, 6, 3, 40, 1), (8, 8, 2, 3, 1)])
def test_conv_transpose_as_matmul_equals_conv_transpose(request, kernels, c_in, c_out, stride, L, B):
    from qwen3tts_cli.codec import decoder as decoder_module
    from qwen3tts_cli.codec.decoder import conv_transpose_as_matmul

    # Inside a streaming call the decoder's RuntimeSettings.cpu_kernels picks the kernel.
    token = decoder_module._STREAMING.set(kernels == "1")
    request.addfinalizer(lambda: decoder_module._STREAMING.reset(token))
    g = torch.Generator().manual_seed(L * 7 + stride)
    w = torch.randn(c_in, c_out, 2 * stride, generator=g)
    x = torch.randn(B, c_in, L, generator=g)
    want = F.conv_transpose1d(x, w, None, stride)
    got = conv_transpose_as_matmul(x, w, stride)
    assert got.shape == want.shape == (B, c_out, (L + 1) * stride)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
