"""The runaway guard (guard.py) on synthetic frame streams, and its use in the engine."""

import dataclasses

import numpy as np
import pytest
import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.engine.guard import DEFAULT_SETTINGS, GuardSettings, RunawayGuard, frame_budget, spoken_units


def frames_of(first_codes, seed=0):
    """int64 [16] frames with the given first codes and random residual codes."""
    g = torch.Generator().manual_seed(seed)
    rest = torch.randint(0, 2048, (len(first_codes), 15), generator=g)
    return [torch.cat([torch.tensor([int(c)]), r]) for c, r in zip(first_codes, rest)]


def run(guard, first_codes):
    for frame in frames_of(first_codes):
        trip = guard.push(frame)
        if trip is not None:
            return trip
    return None


def speech_like(n, seed=0, pauses=True):
    """First codes shaped like speech: 1000 codes with Zipf-like frequencies (the commonest ~5 %),
    each held 1-3 frames (sustained sounds), with a 1.6 s pause of two silence codes every ~6 s."""
    rng = np.random.default_rng(seed)
    weights = 1 / np.arange(1, 1001) ** 0.8
    vocab = rng.permutation(2048)[:1000]
    out = []
    while len(out) < n:
        if pauses and len(out) % 75 > 55:
            out += list(rng.choice([7, 9], size=20))
            continue
        code = int(rng.choice(vocab, p=weights / weights.sum()))
        out += [code] * int(rng.integers(1, 4))
    return out[:n]


# -- the budget ----------------------------------------------------------------------------------

def test_budget_formula():
    s = DEFAULT_SETTINGS
    assert (s.floor_frames, s.frames_per_unit) == (80, 3.0)
    assert spoken_units("Hi.") == 3 and frame_budget("Hi.") == 80 + 9
    assert spoken_units("1999") == 4 + 12 and frame_budget("1999") == 80 + 48
    assert spoken_units("50% & $5") == 8 + 3 * 6  # 3 digits, 3 symbols
    assert spoken_units("你好。") == 9 and frame_budget("你好。") == 80 + 27
    assert frame_budget("a" * 300) == 980
    assert frame_budget("Hi.", GuardSettings(floor_frames=10, frames_per_unit=0.5)) == 12


@pytest.mark.parametrize("text, chars_per_second", [
    ("The quick brown fox jumps over the lazy dog. " * 6, 7.0),  # slow English: 7 chars/s (normal 14)
    ("It was 1999, and 42 people paid $3,500 each.", 4.0),  # numbers read out in full
    ("今天天气很好，我们去公园散步吧。" * 5, 2.0),  # slow Chinese: 2 chars/s (normal 4-5)
    ("Yes.", 0.8),  # a word said slowly, with breath around it
])
def test_budget_leaves_room_for_slow_speech(text, chars_per_second):
    slow_frames = len(text) / chars_per_second * 12.5
    assert frame_budget(text) >= 1.3 * slow_frames


def test_budget_trips_on_the_first_frame_past_it():
    guard = RunawayGuard(30)
    assert run(guard, speech_like(30, pauses=False)) is None and guard.frames == 30
    trip = guard.push(frames_of([5])[0])
    assert trip.reason == "frame_budget" and trip.frames == 30 and trip.keep == 30
    assert "frame budget" in trip.message() and "30 frames" in trip.message()
    assert guard.push(frames_of([6])[0]) is trip  # sticky


# -- loops and silence ---------------------------------------------------------------------------

@pytest.mark.parametrize("period", [2, 3, 7, 23, 40])
def test_loop_is_detected_and_cut_at_its_start(period):
    lead = speech_like(100, pauses=False)
    rng = np.random.default_rng(period)
    unit = list(rng.integers(100, 2000, size=period))
    stream = lead + unit * (400 // period + 1)
    guard = RunawayGuard(10_000)
    trip = run(guard, stream)
    if period <= DEFAULT_SETTINGS.silence_codes and trip.reason == "silence":  # as good a name for it
        assert 100 + DEFAULT_SETTINGS.silence_keep - 3 <= trip.keep <= 100 + DEFAULT_SETTINGS.silence_keep
        return
    assert trip is not None and trip.reason == "loop", trip
    need = max(DEFAULT_SETTINGS.loop_min_frames, DEFAULT_SETTINGS.loop_repeats * period) + period
    # Found at a check (every 12 frames) once the loop fills 90 % of the window.
    assert 100 + 0.8 * need <= trip.frames <= 100 + need + DEFAULT_SETTINGS.check_every
    assert trip.frames % DEFAULT_SETTINGS.check_every == 0
    # What is kept ends after the loop's first period (a held speech code may cost 2 frames).
    assert 100 + period - 3 <= trip.keep <= 100 + period


def test_a_stuck_first_code_is_caught_as_silence_or_loop():
    stream = speech_like(100, pauses=False) + [1234] * 200
    trip = run(RunawayGuard(10_000), stream)
    assert trip is not None and trip.reason in ("loop", "silence")
    assert 100 + 1 - 2 <= trip.keep <= 100 + DEFAULT_SETTINGS.silence_keep


def test_sampled_loop_with_some_noise_is_detected():
    rng = np.random.default_rng(3)
    unit = list(rng.integers(0, 2048, size=9))
    stream = speech_like(60, pauses=False) + unit * 40
    noisy = [c if rng.random() > 0.05 else int(rng.integers(0, 2048)) for c in stream]
    trip = run(RunawayGuard(10_000), noisy)
    assert trip is not None and trip.reason == "loop"


def test_silence_is_detected():
    rng = np.random.default_rng(1)
    room_tone = list(rng.choice([11, 12, 13], size=200))  # varied, but from 3 codes only: no loop
    stream = speech_like(90, pauses=False) + room_tone
    trip = run(RunawayGuard(10_000), stream)
    assert trip is not None and trip.reason == "silence", trip
    s = DEFAULT_SETTINGS
    assert 90 + int(0.8 * s.silence_frames) <= trip.frames <= 90 + s.silence_frames + s.check_every
    assert 90 + s.silence_keep - 3 <= trip.keep <= 90 + s.silence_keep
    assert "silence" in trip.message()


@pytest.mark.parametrize("seed", range(5))
def test_no_false_trip_on_varied_frames(seed):
    rng = np.random.default_rng(seed)
    for stream in (list(rng.integers(0, 2048, size=3000)), speech_like(3000, seed=seed)):
        guard = RunawayGuard(10_000)
        assert run(guard, stream) is None and guard.frames == 3000


def test_pauses_up_to_four_seconds_are_not_silence():
    stream = []
    for k in range(6):
        stream += speech_like(60, seed=k, pauses=False) + [7, 9] * 25  # 4 s of two silence codes
    assert run(RunawayGuard(10_000), stream) is None


def test_checks_run_once_per_block_on_the_host():
    guard = RunawayGuard(10_000, GuardSettings(check_every=10))
    calls = []
    real = guard._check
    guard._check = lambda: (calls.append(guard.frames), real())[1]
    run(guard, speech_like(95, pauses=False))
    assert calls == [10, 20, 30, 40, 50, 60, 70, 80, 90]


# -- in the engine ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def cv(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def test_engine_keeps_audio_before_a_budget_trip(cv):
    tight = GuardSettings(floor_frames=3, frames_per_unit=0.0)
    r = cv.synthesize("Hello there.", greedy=True, max_frames=6, guard=tight)
    ref = cv.synthesize("Hello there.", greedy=True, max_frames=3, guard=False)
    assert r.stop_reason == "frame_budget" and "frame budget" in r.truncated
    assert torch.equal(r.codes, ref.codes) and np.array_equal(r.audio, ref.audio)
    # The caller's own cap is no truncation.
    ok = cv.synthesize("Hello there.", greedy=True, max_frames=3, guard=tight)
    assert ok.stop_reason == "max_frames" and ok.truncated is None


def test_engine_trims_a_loop_and_names_the_chunk(cv, monkeypatch):
    # A model stuck on one first code: every talker step after the prefill picks code 100.
    raw = cv.talker.logits
    prefill = {"now": False}
    hook = cv.talker.register_forward_pre_hook(lambda m, args: prefill.update(now=args[0].shape[1] > 1))
    monkeypatch.setattr(cv.talker, "logits",
                        lambda h: raw(h) if prefill["now"] else raw(h).index_fill(-1, torch.tensor([100]), 1e3))
    loop = GuardSettings(check_every=4, loop_min_frames=8, loop_max_period=2, loop_repeats=2)
    try:
        r = cv.synthesize("One sentence here. Another sentence here.", max_chars=25, greedy=True, guard=loop)
    finally:
        hook.remove()
    assert r.chunks == 2 and r.stop_reason == "loop"
    assert r.truncated.startswith("chunk 1 of 2: generation fell into a loop") and "chunk 2 of 2" in r.truncated
    # Each chunk keeps its first real frame plus one period of the loop: 2 frames.
    assert r.codes.shape == (4, 16) and r.codes[1, 0] == r.codes[3, 0] == 100 and r.codes[0, 0] != 100


def test_engine_flags_the_models_frame_limit(cv, monkeypatch):
    monkeypatch.setattr(cv, "generation_config", dataclasses.replace(cv.generation_config, max_new_tokens=3))
    r = cv.synthesize("Hello there.", greedy=True)
    assert r.frames == 3 and r.stop_reason == "max_frames"
    assert "limit of 3 frames" in r.truncated


def test_the_guard_changes_nothing_when_nothing_trips(cv):
    guarded = cv.synthesize("Hello there.", speaker="ryan", greedy=True, max_frames=4, split=False)
    plain = cv.generate_codes("Hello there.", speaker="ryan", greedy=True, max_frames=4)
    assert guarded.truncated is None and guarded.stop_reason == plain.stop_reason == "max_frames"
    assert torch.equal(guarded.codes, plain.codes) and guarded.frames == 4
