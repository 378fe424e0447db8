"""TTS.synthesize: codes -> audio through the lazily loaded fp32 codec decoder; progress callback."""

import numpy as np
import pytest
import torch

from qwen3tts_cli.codec import CodecDecoder
from qwen3tts_cli.engine import SynthesisResult, load_tts


@pytest.fixture(scope="module")
def cv(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def test_synthesize_is_codes_then_official_decode(cv, tiny_checkpoint):
    assert cv._decoder is None  # not loaded before the first synthesis
    r = cv.synthesize("Hello there, world.", speaker="vivian", language="english", greedy=True, max_frames=5)
    assert isinstance(r, SynthesisResult)
    assert r.sample_rate == 24000 and r.stop_reason == "max_frames" and r.frames == 5
    assert r.audio.dtype == np.float32 and r.audio.shape == (5 * 1920,) and r.seconds == pytest.approx(0.4)
    codes = cv.generate_codes("Hello there, world.", speaker="vivian", language="english", greedy=True,
                              max_frames=5).codes
    assert torch.equal(r.codes, codes)
    want = CodecDecoder.from_folder(tiny_checkpoint("0.6B-CustomVoice")).decode(codes).numpy()
    np.testing.assert_array_equal(r.audio, want)
    assert np.abs(r.audio).max() > 0.01


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
    from qwen3tts_cli import engine
    def no_frames(*a, **k):
        return "eos"
        yield

    monkeypatch.setattr(engine, "iter_frames", no_frames)
    r = cv.synthesize("Hi.", greedy=True, max_frames=3)
    assert r.audio.shape == (0,) and r.stop_reason == "eos" and "no audio" in r.warnings[-1]
