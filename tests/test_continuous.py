"""Continuous batching (model/continuous.py): rows joining and leaving a running batch give the
codes they give alone."""

import pytest
import torch

from qwen3tts_cli.engine import load_tts
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


def run(tts, entries, max_batch):
    """entries: (join at step, prompt, cap, settings, seed); rows join when their step comes."""
    batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, max_batch)
    rows, ended, waiting, step = {}, set(), sorted(range(len(entries)), key=lambda i: entries[i][0]), 0
    while len(ended) < len(entries):
        while waiting and entries[waiting[0]][0] <= step and batch.free:
            i = waiting.pop(0)
            _, prompt, cap, settings, seed = entries[i]
            rows[i] = Row(prompt, cap=cap, seed=seed)
            batch.join(rows[i], settings, lambda f, i=i: ended.add(i) if f is None else None)
        batch.step()
        step += 1
    return [rows[i] for i in range(len(entries))]


def test_rows_joining_and_leaving_equal_their_solo_runs(tts):
    greedy, sampled = tts.sampling(greedy=True), tts.sampling()
    cool = tts.sampling(temperature=0.6, subtalker_temperature=0.4, top_k=10)
    p = [tts.prompt(t, speaker=s) for t, s in (("Hello there.", "ryan"), ("A longer line of text to say.", "vivian"),
                                               ("Third.", "serena"), ("The fourth joins late.", "ryan"))]
    entries = [(0, p[0], 20, greedy, None), (0, p[1], 35, sampled, 11), (3, p[2], 12, cool, 5),
               (7, p[3], 25, greedy, None)]
    together = run(tts, entries, max_batch=3)  # the fourth waits for a free row
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
