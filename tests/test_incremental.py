"""Incremental tokenization: ids committed piece by piece equal the whole text's tokenization."""

from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qwen3tts_cli.engine.prompt import assistant_text
from qwen3tts_cli.text.incremental import IncrementalTokenizer, nfc_safe
from qwen3tts_cli.text.segment import normalize_text
from qwen3tts_cli.text.tokenizer import TextTokenizer

FOLDER = Path(__file__).resolve().parents[1] / "qwen3tts_cli" / "metadata" / "common" / "text_tokenizer"


@pytest.fixture(scope="module", params=["qwen2", "local-path"])
def tokenizer(request):
    return TextTokenizer.from_folder(FOLDER, request.param)


def feed(tok, pieces, as_bytes=False):
    inc = IncrementalTokenizer(tok)
    ids, steps = [], []
    for p in pieces:
        got = inc.push(p.encode("utf-8") if as_bytes and isinstance(p, str) else p)
        ids += got
        steps.append(got)
    ids += inc.close()
    return ids, steps, inc


def whole(tok, text):
    """What the prompt builder takes for a whole text: the template's slice."""
    clean = normalize_text(text)
    return tok.encode(assistant_text(clean))[3:-5] if clean else []


def cut(text, points):
    points = sorted({p % (len(text) + 1) for p in points})
    return [text[a:b] for a, b in zip([0] + points, points + [len(text)])]


# Pieces of text that stress every rule: letters that merge, marks that compose, Hangul jamo,
# digits, contractions, whitespace runs and line ends, emoji (surrogate pairs in UTF-16, 4 bytes
# in UTF-8, ZWJ sequences), CJK, and fragments of special tokens.
ATOMS = st.sampled_from([
    "a", "b", "Hello", " world", "don", "'t", "'s", "'", "it", "e", "\u0301", "\u0323", "\u0307", "q", "x",
    "\u1100", "\u1161", "\u11a8", "한", "국", "0", "1", "9", "3.14", " ", "  ", "\t", "\n", "\r", "\r\n", "\n\n",
    ".", ",", "!", "?", "...", "(", ")", "$", "—", "-", "😀", "👍🏽", "👨\u200d👩\u200d👧", "\U0001f1fa\U0001f1f8",
    "今天", "天气", "。", "，", "machine", "learning", "<", "<|", "<|im_", "<|im_end|>", "|>", "<tts_pad>",
    "\u00a0", "\u3000", "Ω", "\u2126", "\u212b", "A\u030a", "\u0b47", "\u0b3e", "\x07", "\ufeff", "ß", "İ",
    "\n \n", ">", "\u0338", "\u2028", "\x85", "\u093c", "\u0958",
])
TEXTS = st.one_of(
    st.lists(ATOMS, max_size=25).map("".join),
    st.text(max_size=60),  # any Unicode at all
    st.text(alphabet=st.characters(categories=("L", "M", "N", "P", "Zs", "S")), max_size=60),
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, points=st.lists(st.integers(0, 200), max_size=12))
@example(text="Hello  world, it's 1999!\n\nOK", points=[3, 6, 7, 20, 21, 22])
@example(text="e\u0301te\u0301 \u1100\u1161\u11a8", points=[1, 2, 5, 7, 8])
@example(text="a <|im_end|> b", points=[3, 5, 8])
@example(text="a\n \n\u0301", points=[])  # a whitespace run cut by the NFC hold-back (review of #17)
@example(text="e\x85\t\n\u093c", points=[])
@example(text="a\n \n\u1161", points=[2])
@example(text="<|im_end|>\u0338", points=[])  # NFC makes "≯": no special token then
@example(text="<|im_end|>\u0338 x", points=[10])
def test_committed_ids_equal_whole_text_ids(tokenizer, text, points):
    if any("\ud800" <= ch <= "\udfff" for ch in text):
        text = "".join(ch for ch in text if not "\ud800" <= ch <= "\udfff")
    ids, _, inc = feed(tokenizer, cut(text, points))
    assert ids == whole(tokenizer, text)
    assert inc.committed == len(ids)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=TEXTS, points=st.lists(st.integers(0, 400), max_size=16))
def test_bytes_cut_inside_utf8_sequences(tokenizer, text, points):
    text = "".join(ch for ch in text if not "\ud800" <= ch <= "\udfff")
    data = text.encode("utf-8")
    points = sorted({p % (len(data) + 1) for p in points})
    pieces = [data[a:b] for a, b in zip([0] + points, points + [len(data)])]
    ids, _, inc = feed(tokenizer, pieces)
    assert ids == whole(tokenizer, text)
    assert inc.undecodable_bytes == 0


def test_ids_come_before_the_end(tokenizer):
    # Words are committed as soon as the next one has begun: the feed never waits for the end.
    _, steps, _ = feed(tokenizer, ["Hello", " wor", "ld, how", " are", " you"])
    assert steps[0] == []  # "Hello" may still grow
    assert tokenizer.decode(steps[1]) == "Hello"
    assert tokenizer.decode(steps[2]) == " world,"  # " how" held back
    assert tokenizer.decode(steps[3]) == " how"
    assert tokenizer.decode(steps[4]) == " are"


def test_a_space_after_a_word_ends_it(tokenizer):
    inc = IncrementalTokenizer(tokenizer)
    assert tokenizer.decode(inc.push("Hello ")) == "Hello"  # a space ends the word; it is held itself
    assert inc.pending == " "
    assert inc.push("\n") == []  # whitespace only goes out once text follows it


def test_held_back_cases(tokenizer):
    inc = IncrementalTokenizer(tokenizer)
    assert tokenizer.decode(inc.push("ok <|im_")) == "ok"  # " <|im_" may still become a special token
    assert inc.pending == " <|im_"
    assert inc.push("end|> x") == tokenizer.encode(" <|im_end|>")
    inc = IncrementalTokenizer(tokenizer)
    assert tokenizer.decode(inc.push("cafe more")) == "cafe"
    assert inc.push("e") == []
    assert tokenizer.decode(inc.push("\u0301 y")) == " more\u00e9"  # NFC: the last e and the acute composed
    assert inc.pending == " y"


def test_leading_and_trailing_whitespace_and_control_characters(tokenizer):
    ids, steps, inc = feed(tokenizer, ["  \n", "\t", " Hi\x07 there\r", "\nyou  \n "])
    assert ids == tokenizer.encode("Hi there\nyou")
    assert inc.text == "Hi there\nyou"


def test_undecodable_bytes_are_dropped_and_counted(tokenizer):
    ids, _, inc = feed(tokenizer, [b"ab\xff", b"c d\xe2\x82", b"\xac x"])
    assert ids == tokenizer.encode("abc d€ x")
    assert inc.undecodable_bytes == 1 and inc.first_undecodable == 0xFF
    inc = IncrementalTokenizer(tokenizer)
    ids = inc.push(b"ok \xe2\x82")  # an incomplete sequence at the end counts once closed
    assert ids + inc.close() == tokenizer.encode("ok")
    assert inc.undecodable_bytes == 2


def test_text_between_the_bytes_of_a_character_keeps_the_order(tokenizer):
    # The held bytes cannot be completed once text comes: they are dropped, and order is kept.
    ids, _, inc = feed(tokenizer, [b"a \xe2\x82", "x", b"\xac y"])
    assert ids == tokenizer.encode("a x y") and inc.undecodable_bytes == 3


def test_nfc_safe():
    assert nfc_safe("a") and nfc_safe(" ") and nfc_safe("한") and nfc_safe("😀")
    assert not nfc_safe("\u0301")  # a combining mark
    assert not nfc_safe("\u1161") and not nfc_safe("\u11a8")  # Hangul jamo that compose backwards
    assert not nfc_safe("\u0b3e")  # a starter that composes with the vowel sign before it


def test_closed_feed_refuses_more(tokenizer):
    inc = IncrementalTokenizer(tokenizer)
    inc.close()
    with pytest.raises(ValueError):
        inc.push("x")
    assert inc.close() == []


def test_spans_locate_each_id_in_the_committed_text(tokenizer):
    ids, _, inc = feed(tokenizer, ["Hello wo", "rld. 今天", "好"])
    assert len(inc.spans) == len(ids)
    assert [inc.text[a:b] for a, b in inc.spans][:4] == ["Hello", " world", ".", " "]
    assert inc.spans[-1][1] == len(inc.text) == len("Hello world. 今天好")
