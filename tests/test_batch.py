"""Batched generation: every row equals the same prompt generated alone (batch 1)."""

import pytest
import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.engine.guard import GuardSettings
from qwen3tts_cli.model.frames import Row, generate, left_pad_batch

EOS = 2150
TEXTS = ["Hi.", "Hello there, world, this is a much longer sentence than the first.", "Good morning to you."]
CASES = {"0.6B-CustomVoice": dict(speaker="ryan"), "1.7B-VoiceDesign": dict(instruct="A calm low voice.")}


@pytest.fixture(scope="module", params=sorted(CASES))
def model(request, tiny_checkpoint):
    return load_tts(tiny_checkpoint(request.param)), CASES[request.param]


def _alone(tts, voice, text, **kw):
    return tts.generate_codes(text, language="english", return_logits=True, **voice, **kw)


def _check_rows(batch, alone):
    for b, a in zip(batch, alone):
        assert b.stop_reason == a.stop_reason
        assert torch.equal(b.codes, a.codes)
        assert b.talker_logits.shape == a.talker_logits.shape
        assert b.cp_logits.shape == a.cp_logits.shape
        assert (b.talker_logits - a.talker_logits).abs().max() < 1e-4
        if a.cp_logits.numel():
            assert (b.cp_logits - a.cp_logits).abs().max() < 1e-4


def test_left_pad_layout(model):
    tts, voice = model
    prompts = [tts.prompt(t, language="english", **voice) for t in TEXTS]
    x, pad, text = left_pad_batch(prompts)
    lens = [p.embeds.shape[0] for p in prompts]
    assert pad == [max(lens) - n for n in lens] and min(pad) == 0
    for b, p in enumerate(prompts):
        assert torch.equal(x[b, pad[b]:], p.embeds) and not x[b, :pad[b]].any()
        m = p.trailing.shape[0]
        assert torch.equal(text[b, :m], p.trailing) and (text[b, m:] == p.pad).all()


def test_greedy_rows_equal_batch1_with_per_row_caps(model):
    tts, voice = model
    caps = [5, 3, 7]
    batch = tts.generate_codes_batch(TEXTS, language="english", greedy=True, max_frames=caps,
                                     return_logits=True, **voice)
    alone = [_alone(tts, voice, t, greedy=True, max_frames=c) for t, c in zip(TEXTS, caps)]
    assert [r.frames for r in batch] == caps
    _check_rows(batch, alone)
    # The rows really differ (padding and positions matter): no row is a copy of another.
    assert not torch.equal(batch[0].codes[:3], batch[1].codes[:3])


def test_seeded_sampling_rows_equal_batch1(model):
    tts, voice = model
    seeds = [3, 4, 3]
    batch = tts.generate_codes_batch(TEXTS, language="english", seed=seeds, max_frames=6, return_logits=True,
                                     **voice)
    alone = [_alone(tts, voice, t, seed=s, max_frames=6) for t, s in zip(TEXTS, seeds)]
    _check_rows(batch, alone)


def test_per_row_eos(model, monkeypatch):
    """EOS forced by a rule on each row's own hidden state, so rows end at different frames."""
    tts, voice = model
    raw = tts.talker.logits

    def logits(h):
        out = raw(h)
        fire = (h[..., 0] * 1000).floor().remainder(4) == 0
        return torch.where(fire[..., None], out.index_fill(-1, torch.tensor([EOS]), 1e3), out)

    monkeypatch.setattr(tts.talker, "logits", logits)
    texts = TEXTS + ["One more line, for a fourth row.", "Yes."]
    done = []
    batch = tts.generate_codes_batch(texts, language="english", greedy=True, max_frames=12, return_logits=True,
                                     on_row=lambda i, r: done.append((i, r.frames)), **voice)
    alone = [_alone(tts, voice, t, greedy=True, max_frames=12) for t in texts]
    _check_rows(batch, alone)
    assert "eos" in {r.stop_reason for r in batch}
    assert len({r.frames for r in batch}) >= 2  # rows stopped at different frames
    # on_row fires once per row, in the order the rows ended.
    assert sorted(done) == sorted(enumerate(r.frames for r in batch))
    assert [f for _, f in done] == sorted(f for _, f in done)


def test_single_row_and_errors(model):
    tts, voice = model
    one = tts.generate_codes_batch(TEXTS[:1], language="english", greedy=True, max_frames=4, **voice)
    assert torch.equal(one[0].codes, tts.generate_codes(TEXTS[0], language="english", greedy=True,
                                                        max_frames=4, **voice).codes)
    settings = tts.sampling(greedy=True)
    prompts = [tts.prompt(t, language="english", **voice) for t in TEXTS[:2]]
    with pytest.raises(ValueError):
        list(generate(tts.talker, tts.predictor, [Row(prompts[0], 3), Row(prompts[1], 0)], settings, EOS))
    assert list(generate(tts.talker, tts.predictor, [], settings, EOS)) == []


def test_synthesize_batch_equals_synthesize_with_split_and_guard(tiny_checkpoint, monkeypatch):
    """Long text is split into chunk rows (seed + i per chunk) and the runaway guard watches each
    row, so every text's result equals synthesize() of it alone; each row's cap (and so its cache
    room) is its guard's budget + 1 frame, not the global cap."""
    from qwen3tts_cli.engine.guard import frame_budget

    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"))
    guard = GuardSettings(floor_frames=3, frames_per_unit=0.2)  # tiny budgets: some rows trip
    texts = ["Hi.", "First sentence of a longer text. And its second sentence, here.", "Good morning to you."]
    kw = dict(language="english", seed=9, max_frames=12, max_chars=40, pause=0.1, guard=guard)
    got, caps = {}, []
    real = tts.generate
    monkeypatch.setattr(tts, "generate", lambda rows, *a, **k: caps.append([r.cap for r in rows]) or real(rows, *a, **k))
    out = tts.synthesize_batch(texts, on_result=lambda i, r: got.setdefault(i, r), **kw)
    monkeypatch.undo()
    rows = [c for t in texts for c in tts.text_chunks(t, max_chars=40, language="english")]
    assert caps == [[min(12, frame_budget(c, guard) + 1) for c in rows]] and min(caps[0]) < 12
    assert [r.chunks for r in out] == [1, 2, 1]
    assert any(r.truncated for r in out) and len({r.frames for r in out}) >= 2
    for i, r in enumerate(out):
        want = tts.synthesize(texts[i], **kw)
        assert got[i] is r
        assert torch.equal(r.codes, want.codes) and r.stop_reason == want.stop_reason
        assert r.truncated == want.truncated and r.chunks == want.chunks
        assert r.audio.shape == want.audio.shape and abs(r.audio - want.audio).max() < 1e-5


def test_a_batch_shares_one_sampling_setup(tiny_checkpoint):
    from qwen3tts_cli.errors import RequestError

    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"))
    greedy, warm = tts.request("Hi.", greedy=True), tts.request("Hello.", temperature=0.5)
    with pytest.raises(RequestError, match="share their sampling"):
        tts.synthesize_batch([greedy, warm])


def test_batch_progress_counts_every_lock_step_frame(model):
    tts, voice = model
    steps = []
    tts.generate_codes_batch(TEXTS, language="english", greedy=True, max_frames=[3, 5, 4], progress=steps.append,
                             **voice)
    assert steps == [1, 2, 3, 4, 5]
    out = []
    tts.synthesize_batch(TEXTS[:2], language="english", greedy=True, max_frames=4, guard=False, progress=out.append,
                         **voice)
    assert out == [1, 2, 3, 4]
    from qwen3tts_cli.errors import RequestError

    with pytest.raises(RequestError, match="share their sampling"):
        tts.generate_codes_batch([tts.request("Hi.", greedy=True, **voice), tts.request("Yo.", seed=3, **voice)])
