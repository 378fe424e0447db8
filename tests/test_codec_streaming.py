"""Streaming codec decode: any chunking of the frames gives the offline decode's samples, including
the official 300/25 grid past 300 and 600 frames, and nothing emitted ever changes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3tts_cli.codec import CodecDecoder
from qwen3tts_cli.codec.streaming import DecoderState, StreamingDecoder, decode_in_chunks
from qwen3tts_cli.errors import InputError
from qwen3tts_cli.runtime import RuntimeSettings

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


def test_state_is_a_ring_over_the_attention_window(codec):
    state = DecoderState(codec)
    assert state.capacity == 300 + 71 and state.max_frames == 300
    positions, mask, slots, kv_len = state.attention_span(300)
    assert kv_len == 371 and positions.tolist() == list(range(300)) and slots.tolist() == list(range(300))
    assert mask.shape == (300, 371) and not mask[:, 300:].any()  # slots never written
    assert mask[0].tolist() == [True] + [False] * 370
    assert mask[299, 228:300].all() and mask[299].sum() == 72  # itself and the 71 before
    # 100 more: positions 300..399 go to slots 300..370, then wrap to 0..28.
    positions, mask, slots, kv_len = state.attention_span(100)
    assert int(state.pos) == 400 and positions[0] == 300
    assert slots.tolist() == list(range(300, 371)) + list(range(29))
    # Query 300 sees positions 229..300: slots 229..300. Query 399 sees 328..399: slots 328..370, 0..28.
    assert mask[0].nonzero().flatten().tolist() == list(range(229, 301))
    assert mask[99].nonzero().flatten().tolist() == list(range(29)) + list(range(328, 371))
    with pytest.raises(ValueError, match="at most 300"):
        state.attention_span(301)


def test_state_reset_and_snapshot_work_in_place(codec):
    codes = random_codes(9, 21)
    ref = decode_in_chunks(codec, codes, [3])
    state = DecoderState(codec)
    addresses = [b.data_ptr() for b in state.buffers()]
    with torch.inference_mode():
        codec(codes[:5].T[None], state)
        state.reset()
        a = codec(codes[:3].T[None], state)[0, 0]
        saved = state.snapshot()
        codec(codes[3:9].T[None], state)  # a detour, then back
        state.restore(saved)
        b = codec(codes[3:6].T[None], state)[0, 0]
        c = codec(codes[6:9].T[None], state)[0, 0]
    assert [b.data_ptr() for b in state.buffers()] == addresses
    assert torch.equal(torch.cat([a, b, c]), ref)


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

    def recording(x, weight, bias=None, onednn=True):
        seen.append((weight, onednn))
        return torch.nn.functional.linear(x, weight, bias)

    monkeypatch.setattr(decoder_module, "cpu_linear", recording)
    codes = random_codes(6, 4)
    codec.decode(codes)
    assert not any(w is lin.weight for w, _ in seen)  # offline: ATen's product, the official bits
    decode_in_chunks(codec, codes, [2])
    assert (lin.weight, True) in [(w, o) for w, o in seen if w is lin.weight]
    seen.clear()
    codec.decode(codes)  # the switch does not outlive the streaming call
    assert not any(w is lin.weight for w, _ in seen)
    # The decoder's own runtime settings choose the kernel: oneDNN off, ATen while streaming.
    monkeypatch.setattr(codec, "runtime", RuntimeSettings(cpu_kernels=False))
    decode_in_chunks(codec, codes, [2])
    assert seen and all(o is False for _, o in seen)


def test_streams_reuse_the_decoders_states(codec):
    codes = random_codes(30, 13)
    first = decode_in_chunks(codec, codes, [1, 2, 4, 8])
    states = codec._stream_states
    addresses = [b.data_ptr() for s in states.states for b in s.buffers()]
    second = decode_in_chunks(codec, codes, [1, 2, 4, 8])  # reset in place: the same audio
    assert codec._stream_states is states
    assert [b.data_ptr() for s in states.states for b in s.buffers()] == addresses
    assert torch.equal(first, second)


def test_a_second_live_stream_gets_states_of_its_own(codec):
    codes_a, codes_b = random_codes(12, 14), random_codes(12, 15)
    a, b = StreamingDecoder(codec), StreamingDecoder(codec)
    out_a, out_b = [], []
    for k in range(0, 12, 3):  # interleaved pushes
        out_a.append(a.push(codes_a[k:k + 3]))
        out_b.append(b.push(codes_b[k:k + 3]))
    assert a._states is codec._stream_states and b._states is not a._states
    assert max_diff(torch.cat(out_a), codec.decode(codes_a)) <= TOL
    assert max_diff(torch.cat(out_b), codec.decode(codes_b)) <= TOL
    del a
    c = StreamingDecoder(codec)
    c.push(codes_a[:1])
    assert c._states is codec._stream_states  # free again once the first stream is gone


def test_graph_replays_equal_the_eager_stream(codec, monkeypatch):
    # CUDA graphs cannot be captured on a CPU: a stand-in records nothing and replays by calling
    # the function again, but goes through the same steps (warm-up call, undo, capture, replay
    # into the captured output), so the states' snapshot/restore and the dispatch are what is tested.
    from qwen3tts_cli.model import cuda_graphs
    from qwen3tts_cli.codec import streaming

    class Replay:
        def __init__(self, fn, out):
            self.fn, self.out = fn, out

        def replay(self):
            self.out.copy_(self.fn())

    captured = []

    def stand_in(fn, pool, generators=(), before_capture=None, device=None):
        fn()  # the warm-up call, which advances the state
        before_capture()
        out = fn()  # a real capture runs nothing: undo this call too
        before_capture()
        captured.append(out.shape[-1] // HOP)
        return Replay(fn, out), out, 0.0

    codes = random_codes(320, 16)
    sizes = [1, 2, 4, 8, 20, 3, 16, 17, 5]
    eager = decode_in_chunks(codec, codes, sizes)
    monkeypatch.setattr(cuda_graphs, "use_cuda_graphs", lambda device, flag=None: flag is not False)
    monkeypatch.setattr(cuda_graphs, "capture_graph", stand_in)
    monkeypatch.setattr(torch.cuda, "graph_pool_handle", lambda: "pool")
    dec = StreamingDecoder(codec, cuda_graphs=True)
    out, i, k = [], 0, 0
    while i < 320:
        n = sizes[k % len(sizes)]
        out.append(dec.push(codes[i:i + n]))
        i, k = i + n, k + 1
    graphed = torch.cat(out)
    states = dec._states
    assert states.capture and states is codec._stream_states
    assert torch.equal(graphed, eager)
    assert max(captured) == streaming.GRAPH_MAX_FRAMES  # 17 and 20 ran eagerly
    assert {i for i, _ in states.graphs} == {0, 1}  # both states replayed across the 275..300 rebuild
    assert len(captured) == len(states.graphs)  # each (state, length) captured once


def test_graphed_push_needs_no_host(tiny_checkpoint):
    # What StreamStates captures, decoder(codes, state), for every graphed push length: on the
    # meta device (no data) a read back to the host or a host tensor in the call raises, as it
    # would break a CUDA graph capture. 136 frames in pushes of 1..16, so the ring's window fills.
    from qwen3tts_cli.codec.streaming import GRAPH_MAX_FRAMES

    meta = torch.device("meta")
    decoder = CodecDecoder.from_folder(tiny_checkpoint("Tokenizer-12Hz")).to(meta)
    state = DecoderState(decoder)
    with torch.inference_mode():
        for T in range(1, GRAPH_MAX_FRAMES + 1):
            audio = decoder(torch.zeros(1, 16, T, dtype=torch.long, device=meta), state)
            assert audio.device == meta and audio.shape == (1, 1, T * HOP)
    assert state.pos.device == meta
