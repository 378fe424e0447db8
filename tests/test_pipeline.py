"""The pipeline (engine/pipeline.py) as TTS.stream: audio chunks while frames are generated, equal
to synthesize's audio; the warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3tts_cli.io.audio import pcm16
from qwen3tts_cli.engine import DEFAULT_STREAM_SCHEDULE, load_tts
from qwen3tts_cli.errors import InputError

HOP = 1920
TOL = 1e-5
TEXT = "Hello there, this is a streaming test."


@pytest.fixture(scope="module")
def cv(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


@pytest.fixture(scope="module")
def reference(cv):
    return cv.synthesize(TEXT, greedy=True, max_frames=20)


@pytest.mark.parametrize("schedule", [None, 1, 2, 4, 8, [3, 1, 5]], ids=str)
def test_stream_equals_synthesize_for_every_schedule(cv, reference, schedule):
    st = cv.stream(TEXT, schedule=schedule, greedy=True, max_frames=20)
    chunks = list(st)
    sizes = [len(c) // HOP for c in chunks]
    assert all(len(c) % HOP == 0 and c.dtype == np.float32 for c in chunks)
    want = list(DEFAULT_STREAM_SCHEDULE) if schedule is None else ([schedule] if isinstance(schedule, int) else schedule)
    # Every chunk has its scheduled size (the last size repeating) but the final one, which flushes.
    for k, n in enumerate(sizes[:-1]):
        assert n == want[min(k, len(want) - 1)]
    assert sum(sizes) == 20
    audio = np.concatenate(chunks)
    assert audio.shape == reference.audio.shape
    assert float(np.abs(audio - reference.audio).max()) <= TOL
    # As 16-bit PCM the rounding differences flip the odd sample by one step, never more.
    a = np.frombuffer(pcm16(audio), "<i2").astype(int)
    b = np.frombuffer(pcm16(reference.audio), "<i2").astype(int)
    assert np.abs(a - b).max() <= 1
    r = st.result
    assert r.finished and torch.equal(r.codes, reference.codes)
    assert r.stop_reason == reference.stop_reason == "max_frames" and r.truncated is None
    assert r.samples == len(audio) and r.chunks == 1 and r.frames == 20


def test_sampling_with_seed_and_split_text_with_pauses(cv):
    text = "First sentence here. And a second one!"
    kw = dict(seed=5, max_frames=6, max_chars=20, pause=0.1)
    ref = cv.synthesize(text, **kw)
    assert ref.chunks == 2
    st = cv.stream(text, **kw)
    chunks = list(st)
    audio = np.concatenate(chunks)
    assert audio.shape == ref.audio.shape
    assert float(np.abs(audio - ref.audio).max()) <= TOL
    assert torch.equal(st.result.codes, ref.codes) and st.result.chunks == 2
    # The pause is its own chunk of zeros, yielded as soon as the first text chunk is done.
    assert any(len(c) == 2400 and not c.any() for c in chunks)


def test_progress_and_early_close(cv):
    seen = []
    st = cv.stream(TEXT, greedy=True, max_frames=10, progress=seen.append)
    first = next(st)
    assert len(first) == HOP  # the first audio after one frame
    st.close()
    assert not st.result.finished
    assert seen and seen[0] == 1


def test_argument_errors_before_the_first_frame(cv):
    with pytest.raises(InputError, match="schedule"):
        cv.stream(TEXT, schedule=[2, 0])
    with pytest.raises(InputError, match="unknown speaker|speaker"):
        cv.stream(TEXT, speaker="nobody")
    with pytest.raises(InputError, match="temperature"):
        cv.stream(TEXT, temperature=0.0)
    with pytest.raises(InputError, match="pause"):
        cv.stream(TEXT, pause=-1)


def test_warm_up_is_a_no_op_without_cuda_graphs(cv):
    assert cv.warm_up() == 0.0
    with pytest.raises(InputError, match="schedule"):
        cv.stream(TEXT, schedule=[2, 0])


def test_warm_up_captures_what_the_first_stream_would(tiny_checkpoint, monkeypatch, stand_in_capture):
    # With the stand-in capture (conftest.py). What is tested: the warm-up covers the buckets and
    # push sizes of a stream that follows (nothing is captured during it), and the throwaway keys
    # the captures wrote change nothing.
    from qwen3tts_cli.model import cuda_graphs

    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"))
    plain = list(tts.stream(TEXT, seed=4, max_frames=24))  # graphs off: the eager loop

    captured = stand_in_capture()
    monkeypatch.setattr(cuda_graphs, "BUCKET", 16)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    assert tts.warm_up(seed=4, max_frames=24, prompt_rows=64) >= 0.0
    step, states = tts.talker._static_step, tts.decoder._stream_states
    assert sorted(step.graphs) == [16, 32, 48, 64]  # every bucket a frame below slot 64 uses
    assert sorted(states.graphs) == [(i, n) for i in (0, 1) for n in range(1, 9)]  # both states, every push size up to 8
    n = len(captured)
    warm = list(tts.stream(TEXT, seed=4, max_frames=24))
    assert len(captured) == n  # all replays, nothing captured inside the stream
    assert tts.talker._static_step is step
    assert [len(c) for c in warm] == [len(c) for c in plain]
    assert np.array_equal(np.concatenate(warm), np.concatenate(plain))


def test_one_request_three_consumers(cv):
    # The same SpeechRequest through synthesize, stream and a batch of one: one plan, one frame loop,
    # one way to join the chunks (codes, stop reason, truncation notes, pauses).
    from qwen3tts_cli.engine import SpeechRequest
    from qwen3tts_cli.engine.guard import GuardSettings

    request = SpeechRequest("A first sentence, long enough to split. Then a second one.", max_chars=40, seed=3,
                            max_frames=9, pause=0.1, guard=GuardSettings(floor_frames=3, frames_per_unit=0.1))
    whole = cv.synthesize(request)
    st = cv.stream(request)
    streamed = np.concatenate(list(st))
    [batched] = cv.synthesize_batch([request])
    assert whole.chunks == st.result.chunks == batched.chunks == 2
    assert torch.equal(whole.codes, st.result.codes) and torch.equal(whole.codes, batched.codes)
    assert whole.stop_reason == st.result.stop_reason == batched.stop_reason
    assert whole.truncated and batched.truncated == whole.truncated
    assert st.result.truncated.startswith(whole.truncated.split(" (the stream")[0][:40])
    assert whole.audio.shape == batched.audio.shape and np.abs(whole.audio - batched.audio).max() < 1e-5
    assert len(streamed) >= len(whole.audio)  # the stream also played the runaway stretch up to the trip
