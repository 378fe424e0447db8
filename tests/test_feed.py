"""Text feeds (engine/feed.py): text pushed in pieces while its speech is generated.

Parity: whatever pieces the text arrives in and whenever they come, the codes equal the official
streaming layout (non_streaming_mode=False) on the whole text (tests/fixtures/goldens/feed, made by
scripts/goldens_feed.py with qwen-tts 0.1.1 on the same tiny checkpoints, greedy, float32).
"""

import random
import threading
import time

import numpy as np
import pytest
import torch

from feed_goldens import cases, load, scale_eos_row
from qwen3tts_cli.engine import load_tts, pipeline
from qwen3tts_cli.engine.feed import FeedCancelled
from qwen3tts_cli.engine.guard import GuardSettings
from qwen3tts_cli.errors import RequestError

LOGIT_ATOL = 1e-4


@pytest.fixture(scope="module")
def engines(tiny_checkpoint, tmp_path_factory):
    cache = {}

    def get(model, eos_factor=None):
        if (model, eos_factor) not in cache:
            folder = tiny_checkpoint(model, 0)
            if eos_factor is not None:
                folder = scale_eos_row(folder, tmp_path_factory.mktemp("eos") / "ckpt", eos_factor)
            cache[model, eos_factor] = load_tts(folder, device="cpu", dtype=torch.float32)
        return cache[model, eos_factor]

    return get


def pieces(text: str, how: str, seed: int = 0) -> list[str]:
    if how == "words":
        words = text.split(" ")
        return [w + (" " if i < len(words) - 1 else "") for i, w in enumerate(words)]
    if how == "chars":
        return list(text)
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(1, 12))))
    return [text[a:b] for a, b in zip([0] + cuts, cuts + [len(text)])]


def produce(feed, parts, delay=0.0, seed=0, as_bytes=False):
    """Push ``parts`` from another thread, sleeping up to ``delay`` s between them, then close."""
    rng = random.Random(seed)

    def run():
        for p in parts:
            feed.push(p.encode() if as_bytes else p)
            if delay:
                time.sleep(rng.random() * delay)
        feed.close()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def voice_for(tts, g):
    if g["method"] != "voice_clone":
        return {}
    from clone_goldens import load_goldens

    signals, _ = load_goldens()
    return dict(voice=tts.create_voice((signals[g["signal"]], 24000), ref_text=g["ref_text"]))


def options(g, **extra):
    r = g["request"]
    o = dict(language=r["language"], greedy=True, guard=False, **extra)
    if r["speaker"]:
        o["speaker"] = r["speaker"]
    if r["instruct"]:
        o["instruct"] = r["instruct"]
    return o


def test_goldens_present():
    assert set(cases()) >= {"cv06_en", "cv06_zh", "vd17_en", "icl06_en", "cv06_early_end"}


@pytest.mark.reference
@pytest.mark.parametrize("how", ["words", "chars", "random"])
@pytest.mark.parametrize("name", cases())
def test_feed_matches_the_official_streaming_layout(name, how, engines):
    g, ref = load(name)
    tts = engines(g["model"], g["eos_factor"])
    text = g["request"]["text"]
    cap = g["reference_max_new_tokens"] - 1
    feed = tts.text_feed()
    stream = tts.stream(feed, max_frames=cap, **options(g), **voice_for(tts, g))
    produce(feed, pieces(text, how, seed=len(text)), delay=0.003 if how != "chars" else 0.0005, seed=7)
    audio = np.concatenate(list(stream))
    result = stream.result
    codes = result.codes.numpy()
    n = ref["codes"].shape[0]
    np.testing.assert_array_equal(codes[:n], ref["codes"])
    assert feed.ids == g["target_ids"][3:-5]
    if g["eos"] and n < g["text_ids"]:
        # The official run ended before reading its text: ours goes on with the rest, same voice.
        assert result.chunks >= 2 and codes.shape[0] > n
        assert result.texts[0] and text.startswith(result.texts[0]) and text.endswith(result.texts[-1])
    else:
        assert result.chunks == 1 and codes.shape[0] == n and result.stop_reason == "max_frames"
        assert result.texts == [text]
    assert len(audio) == result.samples


@pytest.mark.reference
@pytest.mark.parametrize("name", ["cv06_en", "icl06_en"])
def test_feed_logits_match(name, engines):
    g, ref = load(name)
    tts = engines(g["model"])
    feed = tts.text_feed()
    for p in pieces(g["request"]["text"], "random", seed=3):
        feed.push(p)
    feed.close()
    plan = tts.resolve(tts.request(feed, max_frames=8, **options(g), **voice_for(tts, g)))
    row = pipeline.feed_row(tts, plan, 0, 0)
    for _ in tts.generate([row], plan.sampling, record_logits=True):
        pass
    got = row.result().talker_logits.numpy()
    k = ref["talker_logits"].shape[0]
    np.testing.assert_allclose(got[:k], ref["talker_logits"], atol=LOGIT_ATOL, rtol=0)


def test_audio_begins_before_the_feed_is_closed(engines):
    g, ref = load("cv06_en")
    tts = engines(g["model"])
    text = g["request"]["text"]
    third = len(text) // 3
    feed = tts.text_feed()
    stream = tts.stream(feed, max_frames=g["reference_max_new_tokens"] - 1, **options(g))
    first_audio = threading.Event()
    seen_open = []

    def writer():
        feed.push(text[:third])
        assert first_audio.wait(60), "no audio from the first third of the text"
        seen_open.append(not feed.closed)
        feed.push(text[third:])
        feed.close()

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    chunks = []
    for chunk in stream:
        chunks.append(chunk)
        first_audio.set()
    t.join(5)
    assert seen_open == [True]
    np.testing.assert_array_equal(stream.result.codes.numpy(), ref["codes"])


def test_frames_wait_for_text_instead_of_padding(engines):
    # A slow producer: every frame's row is the text's own id, so the codes equal a fast run's.
    g, ref = load("cv06_zh")
    tts = engines(g["model"])
    feed = tts.text_feed()
    stream = tts.stream(feed, max_frames=g["reference_max_new_tokens"] - 1, **options(g))
    produce(feed, pieces(g["request"]["text"], "chars"), delay=0.02, seed=1)
    t0 = time.perf_counter()
    list(stream)
    assert time.perf_counter() - t0 > 0.1  # it did wait
    np.testing.assert_array_equal(stream.result.codes.numpy(), ref["codes"])


def test_seeded_feed_equals_the_whole_text(engines):
    g, _ = load("cv06_en")
    tts = engines(g["model"])
    text = g["request"]["text"]
    o = options(g)
    del o["greedy"]
    for seed in (0, 12345, 2**40 + 3):
        whole = tts.generate_codes(text, non_streaming_mode=False, seed=seed, max_frames=40,
                                   **{k: v for k, v in o.items() if k != "guard"})
        feed = tts.text_feed()
        stream = tts.stream(feed, seed=seed, max_frames=40, **o)
        produce(feed, pieces(text, "random", seed=seed % 1000), delay=0.002)
        list(stream)
        assert torch.equal(stream.result.codes, whole.codes), seed


@pytest.mark.parametrize("voice", ["xvector", "voice_file"])
def test_xvector_clone_and_voice_files_feed(voice, engines, tmp_path):
    from clone_goldens import load_goldens
    from qwen3tts_cli.voice import load_voice, save_voice

    tts = engines("0.6B-Base")
    signals, _ = load_goldens()
    v = tts.create_voice((signals["voice"], 24000), ref_text="A voice." if voice == "voice_file" else None,
                         xvector_only=voice == "xvector")
    if voice == "voice_file":
        path = tmp_path / "v.safetensors"
        save_voice(path, v)
        v = load_voice(path)
    text = "Good evening, and welcome to the show. Tonight we talk about trains."
    whole = tts.generate_codes(text, voice=v, non_streaming_mode=False, greedy=True, max_frames=30)
    feed = tts.text_feed()
    stream = tts.stream(feed, voice=v, greedy=True, max_frames=30, guard=False)
    produce(feed, pieces(text, "words"), delay=0.002)
    list(stream)
    assert torch.equal(stream.result.codes, whole.codes)


def test_early_end_continues_with_the_unread_text(engines):
    g, ref = load("cv06_early_end")
    tts = engines(g["model"], g["eos_factor"])
    feed = tts.text_feed()
    for p in pieces(g["request"]["text"], "words"):
        feed.push(p)
    feed.close()
    stream = tts.stream(feed, max_frames=99, **options(g))
    list(stream)
    r = stream.result
    n = ref["codes"].shape[0]
    # Utterance 1 is the official run; utterance 2 starts at the first id the model had not read:
    # the prompt held id 0 and frames 0..n-1 read ids 1..n.
    plan = tts.resolve(tts.request(feed, max_frames=99, **options(g)))
    first = pipeline.feed_row(tts, plan, 0, 0)
    list(tts.generate([first], plan.sampling))
    assert first.stop_reason == "eos" and first.prompt.track.first_unread(first.kept) == n + 1
    second = pipeline.feed_row(tts, plan, n + 1, 1)
    list(tts.generate([second], plan.sampling))
    np.testing.assert_array_equal(r.codes[:n].numpy(), ref["codes"])
    assert torch.equal(r.codes[n:n + second.kept], second.codes())
    assert r.chunks >= 2 and "".join(r.texts).replace(" ", "") == g["request"]["text"].replace(" ", "")


def test_runaway_guard_applies_to_feed_utterances(engines):
    g, _ = load("cv06_en")
    tts = engines(g["model"])
    feed = tts.text_feed()
    feed.push("Hi. ")
    stream = tts.stream(feed, speaker="ryan", greedy=True, guard=GuardSettings(floor_frames=3, frames_per_unit=0.5))
    produce(feed, ["there ", "you."], delay=0.001)
    list(stream)
    r = stream.result
    assert r.stop_reason == "frame_budget"
    assert r.truncated.startswith("utterance 1: generation ran past its frame budget")


def test_long_feeds_are_cut_at_sentence_ends(engines):
    tts = engines("0.6B-CustomVoice")
    sentences = ["The first sentence is right here.", "Then comes a second one, a bit longer.", "Short.",
                 "And the last sentence ends it all."]
    feed = tts.text_feed()
    stream = tts.stream(feed, speaker="ryan", greedy=True, guard=False, max_chars=20, max_frames=60)
    produce(feed, pieces(" ".join(sentences), "words"), delay=0.001)
    list(stream)
    r = stream.result
    # Every utterance that ended by the limit ended at a sentence end; none ran far past it.
    assert len(r.texts) >= 3
    assert "".join(r.texts).replace(" ", "") == "".join(sentences).replace(" ", "")
    for t in r.texts:
        assert t.rstrip().endswith(".") or t.endswith(" ")  # a sentence end (or the model ended early)


def test_cut_levels_fall_back_to_clauses_and_spaces(engines):
    tts = engines("0.6B-CustomVoice")
    text = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    feed = tts.text_feed()
    stream = tts.stream(feed, speaker="ryan", greedy=True, guard=False, max_chars=10, max_frames=40)
    produce(feed, pieces(text, "words"))
    list(stream)
    texts = stream.result.texts
    assert len(texts) >= 2
    assert all(len(t.strip()) <= 2 * 10 + len("fourteen") for t in texts)


def test_cancel_stops_a_waiting_stream(engines):
    tts = engines("0.6B-CustomVoice")
    feed = tts.text_feed()
    stream = tts.stream(feed, speaker="ryan", greedy=True)
    feed.push("Hello there ")
    threading.Timer(0.3, feed.cancel).start()
    with pytest.raises(FeedCancelled):
        list(stream)


def test_feed_requests_are_checked(engines):
    tts = engines("0.6B-CustomVoice")
    feed = tts.text_feed()
    with pytest.raises(RequestError) as e:
        tts.stream(feed, speaker="ryan", non_streaming_mode=True)
    assert e.value.code == "feed_non_streaming"
    with pytest.raises(RequestError) as e:
        tts.synthesize(feed, speaker="ryan")
    assert e.value.code == "feed_not_streamed"
    with pytest.raises(RequestError):
        tts.stream(feed, speaker="ryan", max_chars=3)
    feed.close()
    with pytest.raises(ValueError):
        feed.push("late")
    with pytest.raises(TypeError):
        tts.text_feed().push(5)


def test_an_empty_feed_speaks_nothing(engines):
    tts = engines("0.6B-CustomVoice")
    feed = tts.text_feed()
    stream = tts.stream(feed, speaker="ryan")
    feed.push("  \n ")
    feed.close()
    assert list(stream) == []
    assert stream.result.chunks == 0 and stream.result.finished


def test_static_step_matches_the_eager_step_with_stalls(engines):
    # The graph step's two halves (run eagerly here) give the codes of the eager step, stalls included.
    g, ref = load("cv06_en")
    tts = engines(g["model"])
    out = []
    for static in (False, True):
        feed = tts.text_feed()
        plan = tts.resolve(tts.request(feed, max_frames=30, **options(g)))
        produce(feed, pieces(g["request"]["text"], "words"), delay=0.01, seed=2)
        row = pipeline.feed_row(tts, plan, 0, 0)
        for _ in tts.generate([row], plan.sampling, static=static):
            pass
        out.append(row.codes())
    assert torch.equal(out[0], out[1])
    np.testing.assert_array_equal(out[0].numpy(), ref["codes"][:30])


def test_an_icl_utterance_that_reads_no_text_ends_the_stream(engines):
    # A 1 s reference with a long transcript: the prompt's rows are all reference transcript, and
    # a frame cap that ends each utterance before any text is read must not loop forever.
    from clone_goldens import load_goldens

    tts = engines("0.6B-Base")
    signals, _ = load_goldens()
    words = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen " * 2
    voice = tts.create_voice((signals["chirp"][:24000], 24000), ref_text=words.strip())
    feed = tts.text_feed()
    stream = tts.stream(feed, voice=voice, greedy=True, max_frames=4, guard=False)
    feed.push("Hello there, this text is never reached.")
    feed.close()
    t0 = time.perf_counter()
    list(stream)
    assert time.perf_counter() - t0 < 30
    r = stream.result
    assert r.chunks == 1 and "before it read any of its text" in r.truncated
