"""Text normalization and splitting (segment.py), its fuzz test, and split synthesis in the engine."""

import re
import time

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.errors import InputError
from qwen3tts_cli.text.segment import DEFAULT_MAX_CHARS, normalize_text, split_text, text_weight
from qwen3tts_cli.text.tokenizer import TextTokenizer


def assert_lossless(text: str, chunks: list[str]) -> None:
    """The chunks are the normalized text in order, with only whitespace between them."""
    norm = normalize_text(text)
    pos = 0
    for c in chunks:
        assert c and c == c.strip(), repr(c)
        i = norm.find(c, pos)
        assert i >= 0 and norm[pos:i].strip() == "", (norm[pos:i], c)
        pos = i + len(c)
    assert norm[pos:].strip() == ""
    assert re.sub(r"\s", "", "".join(chunks)) == re.sub(r"\s", "", norm)


def split(text, max_chars, **kw):
    chunks = split_text(text, max_chars=max_chars, **kw)
    assert_lossless(text, chunks)
    return chunks


# -- normalization -----------------------------------------------------------------------------

def test_normalize_keeps_ordinary_text_unchanged():
    for text in ["Hello world, this is a simple test.", "今天天气很好，我们去公园散步吧。",
                 "Line one\nline two\tand a tab", "Ünïcödé — “quotes” and emoji 👩‍👩‍👧"]:
        assert normalize_text(text) == text


def test_normalize_line_endings_controls_bom_surrogates_nfc():
    assert normalize_text("\ufeff  a\r\nb\rc\u2028d\u2029e\x85f\x0bg\x0ch  ") == "a\nb\nc\nd\ne\nf\ng\nh"
    assert normalize_text("a\x00b\x07c\x1bd\x7fe\x9bf") == "abcdef"
    assert normalize_text("x\ud800y\udfffz") == "xyz"
    assert normalize_text("e\u0301") == "\u00e9"  # NFC
    assert normalize_text("e\x00\u0301") == "\u00e9"  # NFC after removal: no stray combining mark
    assert normalize_text(" \t\n ") == "" and normalize_text("\x00\x01") == ""
    with pytest.raises(InputError):
        normalize_text(b"bytes")


# -- splitting ---------------------------------------------------------------------------------

def test_short_text_is_one_chunk_unchanged():
    text = "Hello world, this is a simple test. And a second sentence!"
    assert split(text, DEFAULT_MAX_CHARS) == [text]
    assert split("  padded \n", 300) == ["padded"]
    assert split_text(" \n ") == []


def test_sentences_abbreviations_decimals_ellipses_quotes():
    text = ('Mr. Smith paid $3.14 for e.g. apples at 5 p.m. today. "Stop!" she said. Wait... what? '
            'The U.S. Army is big. See No. 5 here. I said no. J. R. R. Tolkien wrote (a lot.) Then he left.')
    assert split(text, 55) == [
        "Mr. Smith paid $3.14 for e.g. apples at 5 p.m. today.",
        '"Stop!" she said. Wait... what? The U.S. Army is big.',
        "See No. 5 here. I said no.",
        "J. R. R. Tolkien wrote (a lot.) Then he left."]
    chunks = split(text, 20)
    for sentence in ['"Stop!" she said.', "Wait... what?", "See No. 5 here.", "I said no.", "wrote (a lot.)",
                     "Then he left."]:
        assert sentence in chunks, (sentence, chunks)
    assert all(text_weight(c) <= 20 for c in chunks)


def test_sentences_are_packed_greedily():
    text = "One. Two. Three. Four. Five. Six."
    assert split(text, 12) == ["One. Two.", "Three. Four.", "Five. Six."]


def test_clauses_then_spaces_then_hard_cuts():
    text = "This sentence is long, with clauses; and more: yes it goes on and on"
    chunks = split(text, 25)
    assert chunks[0] == "This sentence is long," and chunks[1].startswith("with clauses;")
    assert split("aaaa bbbb cccc dddd eeee", 10) == ["aaaa bbbb", "cccc dddd", "eeee"]
    assert split("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]


def test_cjk_weights_punctuation_and_hard_cuts():
    text = "今天天气很好，我们去公园散步吧。明天会下雨！你觉得呢？"
    assert text_weight("今天") == 6 and text_weight("ab") == 2
    assert split(text, 300) == [text]
    chunks = split(text, 30)
    assert chunks == ["今天天气很好，", "我们去公园散步吧。", "明天会下雨！", "你觉得呢？"]
    assert split(text, 36) == ["今天天气很好，", "我们去公园散步吧。",
                               "明天会下雨！你觉得呢？"]
    run = "很" * 40  # no punctuation at all
    chunks = split(run, 30)
    assert chunks == ["很" * 10] * 4
    # Closing punctuation never starts a chunk, even in a hard cut.
    assert all(c[0] not in "，。！？」" for c in split("我们去公园散步吧，」好的。" * 5, 18))


def test_paragraphs_and_lines():
    text = "Title line\nSecond line without stop\n\nA new paragraph starts here."
    chunks = split(text, 40)
    assert chunks == ["Title line\nSecond line without stop", "A new paragraph starts here."]


def test_language_abbreviations():
    text = "Das ist z.B. ein Satz. Und bzw. noch einer hier."
    assert "z.B. ein Satz." in " ".join(split(text, 25, language="german"))
    assert split(text, 25, language="german")[1].startswith("Und bzw. noch")


def test_combining_marks_and_emoji_are_never_cut_apart():
    text = "a\u0301\u0302" * 12  # no precomposed form: stays decomposed under NFC
    for c in split(text, 10):
        assert not "\u0300" <= c[0] <= "\u036f"
    family = "👩\u200d👩\u200d👧" * 6
    for c in split(family, 10):
        assert c[0] != "\u200d" and c[-1] != "\u200d"


def test_max_chars_too_small():
    with pytest.raises(InputError, match="max_chars"):
        split_text("Hello.", max_chars=5)


def test_100k_characters_split_fast():
    text = ("Hello there, this is a rather long sentence. 这是一个中文句子，很长。" * 1800)[:100_000]
    t0 = time.perf_counter()
    chunks = split_text(text)
    assert time.perf_counter() - t0 < 3.0
    assert_lossless(text, chunks)
    assert all(text_weight(c) <= DEFAULT_MAX_CHARS for c in chunks) and len(chunks) > 300


# -- fuzz ----------------------------------------------------------------------------------------

ALPHABET = st.sampled_from(list("abcXYZ019 .,;:!?…-—\"'()[]«»“”\n\t\r\x00\x07\u00e9\u0301\u200d\ufeff"
                                "今天好。，、！？；：「」（）가나다ぁア👩👧😀\u3000"))
TEXTS = st.one_of(st.text(ALPHABET, max_size=300), st.text(max_size=200))


@pytest.fixture(scope="module")
def tokenizer(tiny_checkpoint):
    return TextTokenizer.from_folder(tiny_checkpoint("0.6B-CustomVoice"))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, max_chars=st.integers(10, 120), language=st.sampled_from([None, "auto", "english", "german"]))
def test_fuzz_front_end_never_raises_never_loses_text(tokenizer, text, max_chars, language):
    norm = normalize_text(text)
    assert normalize_text(norm) == norm  # idempotent
    chunks = split_text(text, max_chars=max_chars, language=language)
    assert_lossless(text, chunks)
    assert (chunks == []) == (norm == "")
    for c in chunks:
        # Over the limit only for one unbreakable cluster (a character with its combining marks).
        assert text_weight(c) <= max_chars or len(c.split()) == 1
        ids = tokenizer.encode(c)
        assert ids and tokenizer.decode(ids) == c


# -- split synthesis in the engine -----------------------------------------------------------------

@pytest.fixture(scope="module")
def cv(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def test_one_chunk_text_is_synthesized_exactly_as_before(cv):
    text = "Hello world, this is a simple test."
    r = cv.synthesize(text, greedy=True, max_frames=4)
    plain = cv.generate_codes(text, speaker="ryan", greedy=True, max_frames=4)
    assert r.chunks == 1 and torch.equal(r.codes, plain.codes) and r.truncated is None
    assert np.array_equal(r.audio, cv.decode_streamed(plain.codes))
    r2 = cv.synthesize(text, greedy=False, seed=7, max_frames=3, split=False, guard=False)
    r3 = cv.synthesize(text, greedy=False, seed=7, max_frames=3)
    assert torch.equal(r2.codes, r3.codes) and np.array_equal(r2.audio, r3.audio)


def test_split_audio_is_the_chunks_joined_by_pauses(cv):
    text = "First sentence is here. Second sentence is here! Third one?"
    chunks = cv.text_chunks(text, max_chars=25)
    assert chunks == ["First sentence is here.", "Second sentence is here!", "Third one?"]
    r = cv.synthesize(text, max_chars=25, pause=0.1, seed=11, max_frames=2)
    parts = [cv.synthesize(c, seed=11 + i, max_frames=2, split=False) for i, c in enumerate(chunks)]
    gap = np.zeros(2400, dtype=np.float32)
    want = np.concatenate([parts[0].audio, gap, parts[1].audio, gap, parts[2].audio])
    assert r.chunks == 3 and np.array_equal(r.audio, want)
    assert torch.equal(r.codes, torch.cat([p.codes for p in parts]))
    assert r.stop_reason == "max_frames" and r.truncated is None
    # Codes only: the same codes, no audio.
    c = cv.synthesize(text, max_chars=25, seed=11, max_frames=2, decode=False)
    assert torch.equal(c.codes, r.codes) and c.audio.shape == (0,)


def test_engine_rejects_empty_text_and_bad_pause(cv):
    with pytest.raises(InputError, match="empty"):
        cv.synthesize(" \n\x00 ")
    with pytest.raises(InputError, match="empty"):
        cv.synthesize("   ", split=False)
    with pytest.raises(InputError, match="pause"):
        cv.synthesize("Hi.", pause=-0.5)
    assert cv.text_chunks(" raw text ", split=False) == [" raw text "]
