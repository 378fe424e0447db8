"""TTS.synthesize: codes -> audio through the lazily loaded fp32 codec decoder; progress callback."""

import numpy as np
import pytest
import torch

from qwen3tts_cli.codec import CodecDecoder
from qwen3tts_cli.engine import SynthesisResult, load_tts


@pytest.fixture(scope="module")
def cv(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def test_synthesize_is_codes_then_streamed_decode(cv, tiny_checkpoint):
    assert cv._decoder is None  # not loaded before the first synthesis
    r = cv.synthesize("Hello there, world.", speaker="vivian", language="english", greedy=True, max_frames=5)
    assert isinstance(r, SynthesisResult)
    assert r.sample_rate == 24000 and r.stop_reason == "max_frames" and r.frames == 5
    assert r.audio.dtype == np.float32 and r.audio.shape == (5 * 1920,) and r.seconds == pytest.approx(0.4)
    codes = cv.generate_codes("Hello there, world.", speaker="vivian", language="english", greedy=True,
                              max_frames=5).codes
    assert torch.equal(r.codes, codes)
    # Bit for bit what stream plays; within float rounding of the official offline decode.
    np.testing.assert_array_equal(r.audio, cv.decode_streamed(codes))
    official = CodecDecoder.from_folder(tiny_checkpoint("0.6B-CustomVoice")).decode(codes).numpy()
    assert np.abs(r.audio - official).max() <= 1e-5
    assert np.abs(r.audio).max() > 0.01


def test_decode_streamed_chunks_follow_the_schedule(cv):
    codes = cv.generate_codes("Hello there.", speaker="vivian", greedy=True, max_frames=12).codes
    pushed = []
    from qwen3tts_cli.codec import streaming

    real = streaming.StreamingDecoder.push

    def spy(self, c):
        pushed.append(int(c.shape[0]))
        return real(self, c)

    streaming.StreamingDecoder.push = spy
    try:
        audio = cv.decode_streamed(codes, schedule=(1, 2, 4))
        ref_audio = cv.decode_streamed(codes[:5], ref_codes=codes[5:8])
    finally:
        streaming.StreamingDecoder.push = real
    assert pushed == [1, 2, 4, 4, 1] + [3, 1, 2, 2]
    assert audio.shape == (12 * 1920,) and ref_audio.shape == (8 * 1920,)


def test_default_speaker_is_ryan(cv):
    assert cv.default_speaker == "ryan"
    a = cv.synthesize("Hi there.", greedy=True, max_frames=3)
    b = cv.synthesize("Hi there.", speaker="ryan", greedy=True, max_frames=3)
    c = cv.synthesize("Hi there.", speaker="serena", greedy=True, max_frames=3)
    np.testing.assert_array_equal(a.audio, b.audio)
    assert not torch.equal(a.codes, c.codes)


def test_default_speaker_falls_back_to_first_sorted(cv, monkeypatch):
    monkeypatch.setattr(type(cv.cfg), "speakers", property(lambda self: ["anna", "zed"]))
    assert cv.default_speaker == "anna"
    monkeypatch.setattr(type(cv.cfg), "speakers", property(lambda self: []))
    assert cv.default_speaker is None


def test_progress_called_once_per_frame(cv):
    seen = []
    r = cv.synthesize("Hello there, world.", greedy=True, max_frames=6, progress=seen.append)
    assert seen == [1, 2, 3, 4, 5, 6] and r.frames == 6


def test_interrupt_from_progress_propagates(cv):
    def stop(n):
        if n == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cv.synthesize("Hello there, world.", greedy=True, max_frames=6, progress=stop)
    # The engine is still usable afterwards.
    assert cv.synthesize("Hello there, world.", greedy=True, max_frames=2).frames == 2


def test_bf16_talker_keeps_fp32_decoder(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"), dtype="bfloat16")
    r = tts.synthesize("Hi there.", greedy=True, max_frames=2)
    assert tts.talker.codec_head.weight.dtype == torch.bfloat16
    assert tts.decoder.pre_conv.conv.weight.dtype == torch.float32
    assert r.audio.dtype == np.float32 and r.audio.shape == (2 * 1920,)


def test_no_frames_gives_empty_audio_and_a_warning(cv, monkeypatch):
    # EOS allowed from the first code and made the favourite: the utterance ends before a frame.
    raw = cv.talker.logits
    monkeypatch.setattr(cv.talker, "logits", lambda h: raw(h).index_fill(-1, torch.tensor([2150]), 1e3))
    r = cv.synthesize("Hi.", greedy=True, max_frames=3, min_new_tokens=0)
    assert r.audio.shape == (0,) and r.frames == 0 and r.stop_reason == "eos" and "no audio" in r.warnings[-1]
    st = cv.stream("Hi.", greedy=True, max_frames=3, min_new_tokens=0)
    assert list(st) == [] and st.result.finished and "no audio" in st.result.warnings[-1]


def test_parse_device_indexes_cuda(monkeypatch):
    # Tensors on CUDA report cuda:N; an unindexed "cuda" must become the same, or cache checks
    # comparing devices never match. Without CUDA, asking for it is a usage error.
    from qwen3tts_cli.engine import parse_device
    from qwen3tts_cli.errors import InputError

    assert parse_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(InputError, match="CUDA is not available"):
        parse_device("cuda")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert parse_device("cuda") == torch.device("cuda", 0) and parse_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(InputError, match="no CUDA device 2"):
        parse_device("cuda:2")
    with pytest.raises(InputError, match="unknown device"):
        parse_device("gpu")


def test_a_request_object_keeps_its_fields_through_every_method(cv):
    from qwen3tts_cli.engine import SpeechRequest

    request = SpeechRequest("Hello there, world.", speaker="vivian", seed=5, max_frames=4)
    a = cv.generate_codes(request)
    b = cv.generate_codes("Hello there, world.", speaker="vivian", seed=5, max_frames=4)
    assert a.frames == 4 and torch.equal(a.codes, b.codes)
    assert torch.equal(cv.synthesize(request).codes, a.codes)
    # Keywords replace a request's fields.
    assert cv.generate_codes(request, max_frames=2).frames == 2


def test_keywords_on_a_request_replace_only_what_they_name(cv):
    from qwen3tts_cli.engine import SpeechRequest

    request = SpeechRequest("Hello there, world.", speaker="vivian", seed=5, max_frames=5)
    warmer = cv.synthesize(request, temperature=0.5)  # a sampling name merges into request.sampling
    assert warmer.frames == 5 and not torch.equal(warmer.codes, cv.synthesize(request).codes)
    assert torch.equal(cv.synthesize(request, temperature=0.5).codes, warmer.codes)
    # None means "not given": the request keeps its own value.
    kept = cv.synthesize(request, max_frames=None, seed=None, speaker=None)
    assert torch.equal(kept.codes, cv.synthesize(request).codes)
    st = cv.stream(request, speaker=None, guard=None)
    assert np.concatenate(list(st)).shape == (5 * 1920,) and torch.equal(st.result.codes, kept.codes)
    assert cv.warm_up(request, progress=print) == 0.0  # stream's other keywords are welcome (CPU: nothing to do)
