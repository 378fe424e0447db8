"""Streaming codec decode: any chunking of the frames gives the offline decode's samples, including
the official 300/25 grid past 300 and 600 frames, and nothing emitted ever changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3tts_cli.codec import CodecDecoder
from qwen3tts_cli.codec.streaming import DecoderState, StreamingDecoder, decode_in_chunks
from qwen3tts_cli.errors import InputError

HOP = 1920
TOL = 1e-5  # fp32: the same arithmetic on other shapes rounds differently (~3e-6 seen)


@pytest.fixture(scope="module")
def codec(tiny_checkpoint):
    return CodecDecoder.from_folder(tiny_checkpoint("Tokenizer-12Hz"))


def random_codes(T: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2048, (T, 16), generator=g)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


@pytest.mark.parametrize("sizes", [[1], [2], [4], [8], [3, 1, 7, 2, 16, 5]], ids=str)
def test_every_schedule_equals_offline_across_the_grid(codec, sizes):
    # 310 frames: the second grid chunk (from 300, rebuilt from 275..299) is inside.
    codes = random_codes(310, 1)
    ref = codec.decode(codes)
    assert max_diff(decode_in_chunks(codec, codes, sizes), ref) <= TOL


@pytest.mark.parametrize("T", [1, 2, 26, 275, 276, 300, 301, 326, 601, 650])
def test_lengths_around_grid_boundaries(codec, T):
    codes = random_codes(T, T)
    sizes = torch.randint(1, 40, (50,), generator=torch.Generator().manual_seed(T)).tolist()
    ref = codec.decode(codes)
    out = decode_in_chunks(codec, codes, sizes)
    assert out.shape == (T * HOP,)
    assert max_diff(out, ref) <= TOL


def test_grid_matters_and_is_reproduced(codec):
    # Past 300 frames the official grid differs from one pass: the stream must follow the grid.
    codes = random_codes(330, 7)
    grid, whole = codec.decode(codes), codec.decode(codes, whole_sequence=True)
    assert max_diff(grid[300 * HOP:], whole[300 * HOP:]) > 100 * TOL
    out = decode_in_chunks(codec, codes, [4, 9])
    assert max_diff(out, grid) <= TOL


def test_whole_sequence_never_resets(codec):
    # 400 frames in pieces of 50 also moves the KV window inside its buffers (capacity 371).
    codes = random_codes(400, 3)
    ref = codec.decode(codes, whole_sequence=True)
    assert max_diff(decode_in_chunks(codec, codes, [50], whole_sequence=True), ref) <= TOL
    assert max_diff(decode_in_chunks(codec, codes, [1, 13], whole_sequence=True), ref) <= TOL


def test_emitted_samples_are_final(codec):
    # Frame k's samples come out with frame k and equal the offline decode of the first k+1 frames.
    codes = random_codes(12, 5)
    dec = StreamingDecoder(codec)
    for k in range(12):
        out = dec.push(codes[k])
        assert out.shape == (HOP,) and out.dtype == torch.float32
        prefix = codec.decode(codes[:k + 1])
        assert max_diff(out, prefix[k * HOP:]) <= TOL
    assert dec.frames == 12 and dec.samples == 12 * HOP


def test_inputs_and_errors(codec):
    codes = random_codes(5, 9)
    dec = StreamingDecoder(codec)
    a = dec.push(codes[:2].numpy().astype(np.int32))  # numpy ints
    b = dec.push(codes[2])  # one frame [16]
    c = dec.push(codes[3:])
    assert max_diff(torch.cat([a, b, c]), codec.decode(codes)) <= TOL
    with pytest.raises(InputError, match="0..2047"):
        dec.push(torch.full((1, 16), 2048))
    with pytest.raises(InputError, match="shape"):
        dec.push(torch.zeros(2, 15, dtype=torch.long))
    with pytest.raises(ValueError):
        StreamingDecoder(codec, chunk=25, context=25)


def test_state_keeps_only_the_attention_window(codec):
    state = DecoderState(codec)
    assert state.capacity == 300 + 71
    positions, mask, slots, kv_len = state.attention_span(300)
    assert kv_len == 300 and positions[-1] == 299 and mask.shape == (300, 300)
    positions, mask, slots, kv_len = state.attention_span(100)  # 400 > 371: the last 71 move to slot 0
    assert state.offset == 300 - 71 and kv_len == 171
    assert slots.tolist() == list(range(71, 171)) and positions[0] == 300
    assert mask[0].sum() == 72 and mask[0, 0] and not mask[0, 72]  # itself and the 71 before


@pytest.mark.slow
def test_full_size_codec(full_checkpoint):
    codec = CodecDecoder.from_folder(full_checkpoint("Tokenizer-12Hz"))
    codes = random_codes(20, 11)
    ref = codec.decode(codes)
    assert max_diff(decode_in_chunks(codec, codes, [1, 2, 4, 8]), ref) <= TOL


def test_transformer_products_switch_to_cpu_linear_only_while_streaming(codec, monkeypatch):
    from qwen3tts_cli.codec import decoder as decoder_module

    lin = codec.pre_transformer.layers[0].mlp.down_proj
    assert isinstance(lin, decoder_module.StreamingAwareLinear)
    assert "pre_transformer.layers.0.mlp.down_proj.weight" in codec.state_dict()
    seen = []

    def recording(x, weight, bias=None):
        seen.append(weight)
        return torch.nn.functional.linear(x, weight, bias)

    monkeypatch.setattr(decoder_module, "cpu_linear", recording)
    codes = random_codes(6, 4)
    codec.decode(codes)
    assert not any(w is lin.weight for w in seen)  # offline: ATen's product, the official bits
    decode_in_chunks(codec, codes, [2])
    assert any(w is lin.weight for w in seen)
    seen.clear()
    codec.decode(codes)  # the switch does not outlive the streaming call
    assert not any(w is lin.weight for w in seen)
