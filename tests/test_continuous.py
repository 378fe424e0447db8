"""Continuous batching (model/continuous.py): rows joining and leaving a running batch give the
codes they give alone."""

import pytest
import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model import cuda_graphs
from qwen3tts_cli.model.continuous import ContinuousBatch
from qwen3tts_cli.model.frames import CACHE_CHUNK, Row


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)


def alone(tts, prompt, cap, settings, seed=None):
    row = Row(prompt, cap=cap, seed=seed)
    for _ in tts.generate([row], settings):
        pass
    return row


def run(tts, entries, max_batch, lane_step=True):
    """entries: (join at step, prompt, cap, settings, seed); rows join when their step comes."""
    batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, max_batch,
                            lane_step=lane_step)
    rows, ended, waiting, step = {}, set(), sorted(range(len(entries)), key=lambda i: entries[i][0]), 0
    while len(ended) < len(entries):
        while waiting and entries[waiting[0]][0] <= step and batch.free:
            i = waiting.pop(0)
            _, prompt, cap, settings, seed = entries[i]
            rows[i] = Row(prompt, cap=cap, seed=seed)
            batch.join(rows[i], settings, lambda f, i=i: ended.add(i) if f is None else None)
        batch.step()
        step += 1
    run.lane_frames, run.steps = batch.lane_frames, step
    return [rows[i] for i in range(len(entries))]


@pytest.fixture
def small_buckets(monkeypatch):
    # KV buckets of 4 slots: a graphed frame crosses several within a few frames.
    monkeypatch.setattr(cuda_graphs, "BUCKET", 4)


@pytest.mark.parametrize("lane_step", [True, False])
def test_rows_joining_and_leaving_equal_their_solo_runs(tts, lane_step):
    greedy, sampled = tts.sampling(greedy=True), tts.sampling()
    cool = tts.sampling(temperature=0.6, subtalker_temperature=0.4, top_k=10)
    p = [tts.prompt(t, speaker=s) for t, s in (("Hello there.", "ryan"), ("A longer line of text to say.", "vivian"),
                                               ("Third.", "serena"), ("The fourth joins late.", "ryan"))]
    entries = [(0, p[0], 20, greedy, None), (0, p[1], 35, sampled, 11), (3, p[2], 12, cool, 5),
               (7, p[3], 25, greedy, None)]
    together = run(tts, entries, max_batch=3, lane_step=lane_step)  # the fourth waits for a free row
    assert (run.lane_frames > 0) == lane_step  # the greedy rows' frames once the sampled one has gone
    for (_, prompt, cap, settings, seed), row in zip(entries, together):
        solo = alone(tts, prompt, cap, settings, seed)
        assert torch.equal(solo.codes(), row.codes()) and solo.stop_reason == row.stop_reason


def test_the_cache_grows_past_its_first_size(tts):
    greedy = tts.sampling(greedy=True)
    p = tts.prompt("Grow the cache.", speaker="ryan")
    cap = CACHE_CHUNK + 40 - p.embeds.shape[0]
    row = run(tts, [(0, p, cap, greedy, None), (5, p, 30, greedy, None)], max_batch=2)
    assert tts.talker.max_seq > CACHE_CHUNK
    assert torch.equal(row[0].codes(), alone(tts, p, cap, greedy).codes())


def test_a_cancelled_row_leaves_at_the_next_step(tts):
    greedy = tts.sampling(greedy=True)
    p = tts.prompt("Cancel me.", speaker="ryan")
    batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, 2)
    got = []
    slot = batch.join(Row(p, cap=100), greedy, got.append)
    for _ in range(3):
        batch.step()
    slot.cancelled = True
    batch.step()
    assert got[-1] is None and len(got) == 4 and batch.free == 2 and slot.row.stop_reason == "cancelled"


@pytest.mark.parametrize("max_batch", [3, 4])
def test_graphed_frames_equal_solo_runs(tts, small_buckets, max_batch):
    """The frame CUDA graphs replay (cuda_graphs.LaneStep; eager on the CPU): lanes rounded up to a
    power of two, KV buckets, rows joining and leaving."""
    sampled = tts.sampling(top_k=20)
    p = [tts.prompt(t, speaker=s) for t, s in (("Hello there.", "ryan"), ("A longer line of text to say.", "vivian"),
                                               ("Third.", "serena"), ("The fourth joins late.", "ryan"))]
    for settings, seeds in ((tts.sampling(greedy=True), [None] * 4), (sampled, [11, 5, 2**40, 7])):
        entries = [(0, p[0], 20, settings, seeds[0]), (0, p[1], 35, settings, seeds[1]),
                   (3, p[2], 12, settings, seeds[2]), (7, p[3], 25, settings, seeds[3])]
        together = run(tts, entries, max_batch=max_batch)
        assert run.lane_frames == run.steps  # every frame: the rows share their settings and have their text
        for (_, prompt, cap, _, seed), row in zip(entries, together):
            solo = alone(tts, prompt, cap, settings, seed)
            assert torch.equal(solo.codes(), row.codes()) and solo.stop_reason == row.stop_reason


def test_graphed_frames_block_eos_per_lane(tts, monkeypatch):
    """A lane's EOS block is its own: rows at different steps, one past its min_new_tokens."""
    raw = tts.talker.logits
    eos = tts.cfg.talker.codec_eos_token_id
    monkeypatch.setattr(tts.talker, "logits", lambda h: raw(h).index_fill(-1, torch.tensor([eos]), 1e3))
    greedy = tts.sampling(greedy=True)
    late = tts.sampling(greedy=True, min_new_tokens=5)
    p = tts.prompt("Stop soon.", speaker="ryan")
    entries = [(0, p, 30, greedy, None), (1, p, 30, late, None)]
    together = run(tts, entries, max_batch=2)
    assert [r.frames and len(r.frames) for r in together] == [2, 5]
    assert all(r.stop_reason == "eos" for r in together) and run.lane_frames > 0


def test_mixed_settings_fall_back_to_the_eager_frame(tts):
    greedy, cool = tts.sampling(greedy=True), tts.sampling(temperature=0.6, top_k=10)
    p = tts.prompt("Two kinds of rows.", speaker="ryan")
    entries = [(0, p, 12, greedy, None), (0, p, 8, cool, 3)]
    together = run(tts, entries, max_batch=2)
    assert run.lane_frames == 4  # the eight frames side by side ran eagerly, the last four alone
    for (_, prompt, cap, settings, seed), row in zip(entries, together):
        assert torch.equal(alone(tts, prompt, cap, settings, seed).codes(), row.codes())


def test_prepared_lanes_give_solo_runs(tts, small_buckets):
    """prepare runs every (lane bucket, KV bucket) frame on free lanes; rows joining after it are
    untouched by what those frames left behind."""
    sampled = tts.sampling(top_k=20)
    batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, 3)
    assert batch.prepare(sampled, 10) == 0  # nothing to capture on the CPU
    assert batch.prepare(sampled, 10, run_eagerly=True) == 3 * 3  # lanes 1, 2, 3 x KV buckets of 4 below slot 10
    assert tts.talker.max_seq >= 12
    p = tts.prompt("After the warm-up.", speaker="vivian")
    rows = [Row(p, cap=14, seed=s) for s in (3, 4)]
    ended = []
    for r in rows:
        batch.join(r, sampled, lambda f: ended.append(f) if f is None else None)
    while len(ended) < 2:
        batch.step()
    for r, s in zip(rows, (3, 4)):
        assert torch.equal(r.codes(), alone(tts, p, 14, sampled, s).codes())
    with pytest.raises(RuntimeError, match="before rows join"):
        batch.join(Row(p, cap=2), sampled, lambda f: None)
        batch.prepare(sampled, 10, run_eagerly=True)
    halves = ContinuousBatch(tts.talker, tts.predictor, 2150, 2, lane_step=False)
    assert halves.prepare(sampled, 10, run_eagerly=True) == 0
