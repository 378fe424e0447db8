"""The scheduler (engine/scheduler.py): many requests on one loaded model, joining and leaving a
running batch, each giving exactly what it gives alone."""

import asyncio
import functools
import threading
import time

import numpy as np
import pytest
import torch

from qwen3tts_cli.engine import scheduler
from qwen3tts_cli.engine.scheduler import Scheduler
from qwen3tts_cli.model.continuous import ContinuousBatch
from qwen3tts_cli.errors import BusyError, RequestError


@pytest.fixture(params=["lane_step", "halves"])
def frame_kind(request, monkeypatch):
    """Run the test with the batch's frames as they run: one LaneStep when the rows share their
    settings and have their text (what CUDA graphs replay), then with every frame in two halves."""
    if request.param == "halves":
        monkeypatch.setattr(scheduler, "ContinuousBatch", functools.partial(ContinuousBatch, lane_step=False))
    return request.param


def run_together(sched, requests, delays):
    """Submit each (text, options) from its own thread after its delay; their SynthesisResults."""
    out = [None] * len(requests)
    errors = []

    def run(i):
        time.sleep(delays[i])
        try:
            text, options = requests[i]
            out[i] = sched.submit(text, **options).synthesis()
        except Exception as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(requests))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not errors, errors
    return out


def assert_same(alone, together):
    assert torch.equal(alone.codes, together.codes)
    assert np.array_equal(alone.audio, together.audio)
    assert alone.stop_reason == together.stop_reason and alone.truncated == together.truncated


CV_REQUESTS = [
    ("Hello there, how are you today?", dict(speaker="ryan", greedy=True, max_frames=30)),
    ("Short one.", dict(speaker="vivian", greedy=True, max_frames=9)),
    ("A much longer sentence that goes on and on. And then a second sentence, split from the first.",
     dict(speaker="ryan", language="english", greedy=True, max_frames=25, max_chars=50)),
    ("今天天气很好。", dict(speaker="serena", language="chinese", greedy=True, max_frames=20)),
    ("Seeded sampling, its own draws.", dict(speaker="aiden", seed=7, max_frames=24)),
    ("Another seed, other settings.", dict(speaker="ryan", seed=2**40 + 1, max_frames=18, temperature=0.7,
                                           top_k=20, subtalker_temperature=0.5)),
    ("The streaming layout, too.", dict(speaker="ryan", greedy=True, max_frames=15, non_streaming_mode=False)),
]


@pytest.mark.parametrize("max_batch,delays", [(3, [0, 0.02, 0.05, 0.1, 0.12, 0.3, 0.31]), (7, [0] * 7),
                                               (1, [0, 0, 0, 0, 0, 0, 0])])
def test_custom_voice_requests_equal_their_solo_runs(tiny_tts, frame_kind, max_batch, delays):
    tts = tiny_tts("0.6B-CustomVoice")
    alone = [tts.synthesize(text, **options) for text, options in CV_REQUESTS]
    with Scheduler(tts, max_batch=max_batch) as sched:
        together = run_together(sched, CV_REQUESTS, delays)
        assert sched.open_requests == 0
    for a, b in zip(alone, together):
        assert_same(a, b)
    assert together[2].chunks == 2


def test_voice_design_and_clones_equal_their_solo_runs(tiny_tts, frame_kind):
    from clone_goldens import load_goldens

    vd = tiny_tts("1.7B-VoiceDesign")
    reqs = [("Welcome to the evening news.", dict(instruct="A deep, calm male voice.", greedy=True, max_frames=20)),
            ("Bonjour!", dict(instruct="A bright young voice.", seed=3, max_frames=12))]
    alone = [vd.synthesize(t, **o) for t, o in reqs]
    with Scheduler(vd, max_batch=2) as sched:
        for a, b in zip(alone, run_together(sched, reqs, [0, 0.05])):
            assert_same(a, b)

    base = tiny_tts("0.6B-Base")
    signals, _ = load_goldens()
    icl = base.create_voice((signals["chirp"], 24000), ref_text="A short reference.")
    xv = base.create_voice((signals["voice"], 24000), xvector_only=True)
    reqs = [("Cloned in context.", dict(voice=icl, greedy=True, max_frames=16)),
            ("Cloned from the speaker embedding.", dict(voice=xv, greedy=True, max_frames=22)),
            ("In context, streaming layout.", dict(voice=icl, greedy=True, max_frames=10, non_streaming_mode=False))]
    alone = [base.synthesize(t, **o) for t, o in reqs]
    with Scheduler(base, max_batch=3) as sched:
        for a, b in zip(alone, run_together(sched, reqs, [0, 0.03, 0.06])):
            assert_same(a, b)


def test_streaming_handles_equal_tts_stream(tiny_tts, frame_kind):
    tts = tiny_tts("0.6B-CustomVoice")
    with Scheduler(tts, max_batch=2) as sched:
        handles = [sched.submit(t, **o) for t, o in CV_REQUESTS[:3]]
        got = [np.concatenate(list(h)) for h in handles[:1]]  # one consumer at a time is fine too
        rest = [None, None]

        def consume(i):
            rest[i] = np.concatenate(list(handles[i + 1]))

        threads = [threading.Thread(target=consume, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        got += rest
    for (text, options), audio, h in zip(CV_REQUESTS[:3], got, handles):
        want = np.concatenate(list(tts.stream(text, **options)))
        assert np.array_equal(audio, want)
        assert h.result.finished


def test_a_text_feed_waiting_for_text_holds_no_one_back(tiny_tts, frame_kind):
    tts = tiny_tts("0.6B-CustomVoice")
    text = "A slow writer feeds this text, word by word, while others speak."
    solo_feed = tts.text_feed()
    solo = tts.stream(solo_feed, speaker="ryan", greedy=True, max_frames=30, guard=False)
    solo_feed.push(text)
    solo_feed.close()
    want = np.concatenate(list(solo))
    with Scheduler(tts, max_batch=2) as sched:
        feed = tts.text_feed()
        fh = sched.submit(feed, speaker="ryan", greedy=True, max_frames=30, guard=False)
        got = {}
        t = threading.Thread(target=lambda: got.setdefault("feed", np.concatenate(list(fh))))
        t.start()
        feed.push("A slow ")
        t0 = time.perf_counter()
        other = sched.submit("Meanwhile, another request.", speaker="vivian", greedy=True, max_frames=20).synthesis()
        other_s = time.perf_counter() - t0
        for w in text[len("A slow "):].split(" "):
            time.sleep(0.05)
            feed.push(w + " ")
        feed.close()
        t.join(120)
        counts = sched.frame_counts
    assert np.array_equal(got["feed"], want)
    # Graphed: the frames the two rows share, not those the feed's row waits out.
    lane, ran = counts["lane_frames"], counts["frames"]
    assert (lane == 0) if frame_kind == "halves" else (0 < lane < ran)
    assert counts["graphed_frames"] == 0  # no CUDA here
    assert_same(tts.synthesize("Meanwhile, another request.", speaker="vivian", greedy=True, max_frames=20), other)
    assert other_s < 0.05 * len(text.split(" "))  # done long before the feed's text was all there


def test_a_full_queue_is_busy(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    with Scheduler(tts, max_batch=1, max_queue=1) as sched:
        a = sched.submit("One.", speaker="ryan", greedy=True, max_frames=5)
        b = sched.submit("Two.", speaker="ryan", greedy=True, max_frames=5)
        with pytest.raises(BusyError, match="busy"):
            sched.submit("Three.", speaker="ryan")
        a.synthesis()
        c = sched.submit("Three.", speaker="ryan", greedy=True, max_frames=5)  # room again
        b.synthesis()
        c.synthesis()
        assert sched.open_requests == 0


def test_bad_requests_fail_in_the_callers_thread(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    with Scheduler(tts) as sched:
        with pytest.raises(RequestError):
            sched.submit("Hi.", speaker="nobody")
        assert sched.open_requests == 0


def test_cancel_from_another_thread_frees_the_row(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    with Scheduler(tts, max_batch=1) as sched:
        long = sched.submit("This one would run for a long time.", speaker="ryan", greedy=True, max_frames=2000,
                            guard=False)
        chunks = []

        def consume():
            for c in long:
                chunks.append(c)

        t = threading.Thread(target=consume)
        t.start()
        while not chunks:
            time.sleep(0.01)
        threading.Thread(target=long.cancel).start()
        t.join(60)
        assert not t.is_alive() and not long.result.finished
        # The only row is free again: the next request runs.
        done = sched.submit("Next.", speaker="ryan", greedy=True, max_frames=6).synthesis()
        assert done.frames == 6 and sched.open_requests == 0


def test_an_error_in_one_request_fails_that_request_only(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")

    class Boom:
        def push(self, frame):
            raise RuntimeError("watcher failed")

    from qwen3tts_cli.engine import pipeline

    real = pipeline.chunk_row

    def chunk_row(tts_, plan, i):
        row = real(tts_, plan, i)
        if plan.request.text.startswith("Broken"):
            row.watch = Boom()
        return row

    pipeline.chunk_row = chunk_row
    try:
        with Scheduler(tts, max_batch=2) as sched:
            ok = sched.submit("Fine request.", speaker="ryan", greedy=True, max_frames=12)
            bad = sched.submit("Broken request.", speaker="ryan", greedy=True, max_frames=12)
            results = {}

            def run(name, h):
                try:
                    results[name] = h.synthesis()
                except Exception as e:  # noqa: BLE001
                    results[name] = e

            ts = [threading.Thread(target=run, args=a) for a in (("ok", ok), ("bad", bad))]
            for t in ts:
                t.start()
            for t in ts:
                t.join(60)
            assert isinstance(results["bad"], RuntimeError)
            assert_same(tts.synthesize("Fine request.", speaker="ryan", greedy=True, max_frames=12), results["ok"])
            assert sched.open_requests == 0
    finally:
        pipeline.chunk_row = real


def test_many_threads_and_an_asyncio_loop(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    texts = [f"Caller number {i} says hello." for i in range(8)]
    alone = [tts.synthesize(t, speaker="ryan", greedy=True, max_frames=8 + i) for i, t in enumerate(texts)]

    async def main(sched):
        async def one(i):
            h = sched.submit(texts[i], speaker="ryan", greedy=True, max_frames=8 + i)
            return await asyncio.to_thread(h.synthesis)

        return await asyncio.gather(*(one(i) for i in range(8)))

    with Scheduler(tts, max_batch=3, max_queue=8) as sched:
        got = asyncio.run(main(sched))
    for a, b in zip(alone, got):
        assert_same(a, b)


def test_dropped_or_cancelled_unstarted_handles_free_their_place(tiny_tts):
    import gc

    tts = tiny_tts("0.6B-CustomVoice")
    with Scheduler(tts, max_batch=1, max_queue=0) as sched:
        h = sched.submit("Never consumed.", speaker="ryan")
        with pytest.raises(BusyError):
            sched.submit("Second.", speaker="ryan")
        del h
        gc.collect()
        h = sched.submit("Cancelled before it started.", speaker="ryan")
        h.cancel()
        assert sched.open_requests == 0
        assert sched.submit("Now there is room.", speaker="ryan", greedy=True, max_frames=4).synthesis().frames == 4


def test_synthesize_all_yields_each_as_it_ends_and_isolates_failures(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    requests = [tts.request("A long one, it runs the longest.", speaker="ryan", greedy=True, max_frames=30),
                tts.request("Short.", speaker="vivian", greedy=True, max_frames=4),
                tts.request("Unknown speaker.", speaker="ryan", greedy=True, max_frames=4).with_options(
                    speaker="nobody"),
                tts.request("Middle.", speaker="ryan", greedy=True, max_frames=12)]
    alone = {i: tts.synthesize(r) for i, r in enumerate(requests) if i != 2}
    progress_for = []
    with Scheduler(tts, max_batch=3) as sched:
        got = list(sched.synthesize_all(requests, progress=lambda i: progress_for.append(i)))
        assert sched.open_requests == 0
    order = [i for i, _ in got]
    assert sorted(order) == [0, 1, 2, 3] and order.index(1) < order.index(3) < order.index(0)
    outcome = dict(got)
    assert isinstance(outcome[2], RequestError) and "nobody" in str(outcome[2])
    for i, result in alone.items():
        assert_same(result, outcome[i])
    assert sorted(progress_for) == [0, 1, 3]  # asked for each request that started


def test_closing_synthesize_all_early_cancels_the_rest(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    requests = [tts.request("Quick.", speaker="ryan", greedy=True, max_frames=2)] + [
        tts.request(f"Long request {i}.", speaker="ryan", greedy=True, max_frames=2000, guard=False)
        for i in range(3)]
    with Scheduler(tts, max_batch=2) as sched:
        results = sched.synthesize_all(requests)
        first, outcome = next(results)
        t = time.perf_counter()
        results.close()  # the long ones are cancelled, not run to 2000 frames
        assert time.perf_counter() - t < 20
        assert first == 0 and outcome.frames == 2 and sched.open_requests == 0


def test_warm_up_prepares_the_batch_in_its_worker(tiny_tts):
    tts = tiny_tts("0.6B-CustomVoice")
    with Scheduler(tts, max_batch=2) as sched:
        seconds = sched.warm_up(speaker="ryan", slots=300)
        assert seconds == 0.0  # nothing to capture without CUDA
        with pytest.raises(RequestError):
            sched.warm_up(temperature=-1)
        got = sched.submit(*CV_REQUESTS[0][:1], **CV_REQUESTS[0][1]).synthesis()
    assert_same(tts.synthesize(CV_REQUESTS[0][0], **CV_REQUESTS[0][1]), got)
    with pytest.raises(RuntimeError, match="closed"):
        sched.warm_up()


@pytest.fixture
def stand_in_graphs(monkeypatch, stand_in_capture):
    """The stand-in capture (conftest.py), with small KV buckets and a small first cache, so that
    the lanes' save/restore, the graph keys, when captures happen and the re-capture after the
    cache grows are exercised within a few frames."""
    from qwen3tts_cli.model import continuous, cuda_graphs

    captured = stand_in_capture()
    monkeypatch.setattr(cuda_graphs, "BUCKET", 16)
    monkeypatch.setattr(continuous, "CACHE_CHUNK", 32)
    return captured


def test_prepared_graphs_replay_and_a_grown_cache_is_prepared_again_when_idle(tiny_checkpoint, stand_in_graphs):
    from qwen3tts_cli.engine import load_tts

    captured = stand_in_graphs
    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)  # caches of its own
    short = [("Hello there, how are you?", dict(speaker="ryan", greedy=True, max_frames=12)),
             ("Short one.", dict(speaker="vivian", greedy=True, max_frames=9))]
    long = ("A longer line that runs past the prepared cache.", dict(speaker="ryan", greedy=True, max_frames=70,
                                                                     min_new_tokens=70))
    alone = [tts.synthesize(t, **o) for t, o in short + [long]]
    with Scheduler(tts, max_batch=2) as sched:
        assert sched.warm_up(greedy=True, slots=64) > 0
        batch = sched._batch
        step = batch.lane_step
        assert sorted(k[:2] for k in step.graphs) == [(n, kv) for n in (1, 2) for kv in (16, 32, 48, 64)]
        made = len(captured)
        for a, b in zip(alone, run_together(sched, short, [0, 0.01])):
            assert_same(a, b)
        assert len(captured) == made  # replays only: nothing captured while requests run
        assert 0 < sched.frame_counts["graphed_frames"] == sched.frame_counts["frames"]
        assert_same(alone[2], sched.submit(long[0], **long[1]).synthesis())  # grows the cache past 64 slots
        deadline = time.monotonic() + 60
        while batch.stale and time.monotonic() < deadline:  # idle now: the worker prepares again
            time.sleep(0.05)
        assert not batch.stale and len(captured) > made
        assert max(k[1] for k in step.graphs) == tts.talker.max_seq
        made, before = len(captured), sched.frame_counts
        for a, b in zip(alone, run_together(sched, short, [0, 0.01])):
            assert_same(a, b)
        after = sched.frame_counts
        assert len(captured) == made  # and every frame a replay of what was prepared again:
        assert after["graphed_frames"] - before["graphed_frames"] == after["frames"] - before["frames"] > 0


def test_a_failed_capture_leaves_the_batch_running_without_graphs(tiny_tts, stand_in_graphs, capsys):
    tts = tiny_tts("0.6B-CustomVoice")
    reqs = [("Seeded, after the failure.", dict(speaker="ryan", seed=3, max_frames=10)),
            ("Greedy too.", dict(speaker="vivian", greedy=True, max_frames=8))]
    alone = [tts.synthesize(t, **o) for t, o in reqs]
    stand_in_graphs.failure = ("LaneStep", RuntimeError("operation not permitted when stream is capturing"))
    with Scheduler(tts, max_batch=2) as sched:
        sched.warm_up(speaker="ryan", seed=3, slots=64)
        assert not sched._batch.lane_step.capture and not sched._batch.lane_step.graphs
        for a, b in zip(alone, run_together(sched, reqs, [0, 0])):
            assert_same(a, b)
        assert sched.frame_counts["graphed_frames"] == 0 < sched.frame_counts["lane_frames"]
    assert "preparing CUDA graphs failed (RuntimeError: operation not permitted" in capsys.readouterr().err


def test_each_prepared_setting_is_prepared_again_after_the_cache_grows(tiny_checkpoint, stand_in_graphs):
    from qwen3tts_cli.engine import load_tts

    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)
    batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, 2)
    greedy, sampled = tts.sampling(greedy=True), tts.sampling()
    batch.prepare(greedy, 32)
    assert not batch.stale
    batch.prepare(sampled, 64)  # grows the cache: the greedy graphs are gone with the old one
    assert batch.stale and tts.talker.max_seq == 64
    calls = []
    batch.prepare_again(stop=lambda: len(calls.append(1) or calls) > 3)  # stopped early: still stale
    assert batch.stale
    batch.prepare_again()
    assert not batch.stale
    keys = {(k[0], k[1], k[2].do_sample) for k in batch.lane_step.graphs}
    assert keys == {(n, kv, s) for n in (1, 2) for kv in (16, 32, 48, 64) for s in (False, True)}


def test_a_worker_that_dies_fails_every_caller_with_its_reason(tiny_tts, monkeypatch):
    def out_of_memory(*args, **kwargs):  # what a GPU without room for the batch's caches does
        raise MemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(scheduler, "ContinuousBatch", out_of_memory)
    tts = tiny_tts("0.6B-CustomVoice")
    sched = Scheduler(tts, max_batch=2)
    sched._thread.join(10)
    for call in (lambda: sched.warm_up(), lambda: sched.submit("Hello.", speaker="ryan").synthesis()):
        with pytest.raises(RuntimeError, match="the scheduler stopped: MemoryError: CUDA out of memory"):
            call()
    sched.close()
