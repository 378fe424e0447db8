"""Text front end for long inputs: a minimal, safe normalization and a splitter into speakable chunks.

``normalize_text`` never changes a word. It only:

* turns every line ending (CRLF, CR, NEL U+0085, U+2028, U+2029, vertical tab, form feed) into "\\n";
* removes control characters (Unicode category Cc) other than "\\n" and "\\t", unpaired surrogates
  (which no encoder can write) and the byte-order mark U+FEFF;
* applies NFC (the text tokenizer does too, so this changes no token);
* strips whitespace at both ends.

Ordinary text comes back unchanged, so a text that fits in one chunk is spoken exactly as given.

``split_text`` cuts the normalized text into chunks of at most ``max_chars`` (length as
``text_weight`` counts it: a wide character, i.e. CJK ideograph, kana, hangul or fullwidth form,
counts 3, since it takes about three times as long to say as a Latin letter). It prefers, in
order: sentence ends (. ! ? … and 。！？, plus paragraph breaks), then clause marks (, ; : and
，、；：, a spaced dash, a line break), then spaces, and only then a hard cut (long CJK runs, very
long words). Consecutive pieces are packed greedily into one chunk while they fit. A period is no
sentence end after a known abbreviation (Mr., Dr., e.g.), an initial or an acronym (J., U.S.),
inside a number (3.14) or before a lowercase word ("Wait... what"); closing quotes and brackets
stay with their sentence.

Invariant: the chunks are substrings of the normalized text, in order, and what lies between two
of them is whitespace only; nothing is lost, reordered or rewritten.
"""

from __future__ import annotations

import re
import unicodedata
from itertools import accumulate

from ..errors import InputError

DEFAULT_MAX_CHARS = 300  # ~20 s of English or ~100 CJK characters: long enough for natural prosody
MIN_MAX_CHARS = 10
WIDE_WEIGHT = 3

# Line endings other than "\n" (CRLF is one), and characters dropped: the cleaning rule that
# normalize_text applies to a whole text and text.incremental to a text arriving in pieces.
LINE_ENDS = "\r\x0b\x0c\x85\u2028\u2029"
_NEWLINES = re.compile(f"\r\n|[{LINE_ENDS}]")
DROPPED = {chr(c) for c in range(0x20) if chr(c) not in "\n\t"} | {chr(c) for c in range(0x7f, 0xa0) if c != 0x85}
DROPPED.add("\ufeff")

_CLOSERS = "\"'”’»›)]}」』）》〉】〕〗〙〛｣"
_LATIN_END = ".!?…‼⁇⁈⁉"
_CJK_END = "。！？｡"
_CJK_CLAUSE = "，、；：﹐﹑﹔﹕､"

# Sentence ends. CJK enders cut wherever they are; Latin ones only before whitespace (so 3.14 and
# example.com never cut), and the text after them must not start in lowercase.
_SENTENCE = re.compile(
    rf"[{_CJK_END}]+[{re.escape(_CLOSERS)}]*"
    rf"|[{re.escape(_LATIN_END)}]+[{re.escape(_CLOSERS)}]*(?=\s)"
    r"|\n[ \t]*\n\s*")
_CLAUSE = re.compile(
    rf"[{_CJK_CLAUSE}][{re.escape(_CLOSERS)}]*"
    rf"|[,;:][{re.escape(_CLOSERS)}]*(?=\s)"
    r"|(?<=\s)[—–-](?=\s)"
    r"|\n")
_SPACE = re.compile(r"\s+")

# Abbreviations after which a period does not end a sentence (compared lowercased, without the
# final period). Titles never end a sentence; "etc." may, so it is not here.
_ABBREVIATIONS = {
    "mr", "mrs", "ms", "mx", "dr", "prof", "sr", "jr", "st", "mt", "rev", "gen", "col", "lt", "sgt", "capt",
    "gov", "sen", "rep", "hon", "vs", "e.g", "i.e", "cf", "approx", "dept", "est", "inc", "ltd", "co", "corp",
    "jan", "feb", "mar", "apr", "jun", "jul", "aug", "sep", "sept", "oct", "nov", "dec", "a.m", "p.m",
}
# Only before a number: "No. 5", "Fig. 2", "p. 14" (but "I said no. Then" ends a sentence).
_NUMBER_ABBREVIATIONS = {"no", "nr", "nos", "fig", "figs", "vol", "p", "pp", "art", "ch", "sec", "op", "eq"}
_LANGUAGE_ABBREVIATIONS = {
    "german": {"z.b", "bzw", "usw", "ca", "hr", "fr", "dr", "evtl", "ggf", "vgl", "d.h", "u.a", "s"},
    "french": {"m", "mme", "mlle", "av", "env", "p.ex"},
    "spanish": {"sr", "sra", "srta", "ud", "uds", "dña", "p.ej"},
    "italian": {"sig", "sigg", "dott", "ecc"},
    "portuguese": {"sr", "sra", "dr", "dra", "ex"},
    "russian": {"г", "т.е", "т.д", "др", "им", "ул"},
}
_INITIALS = re.compile(r"^(?:\w\.)+\w?$|^\w$")  # U.S, e.g, J (before its period)


def check_unicode(value: str, field: str) -> None:
    """Refuse text holding a lone surrogate: an undecodable byte that Python kept from the command
    line or a file (U+DC80..U+DCFF), or a broken UTF-16 pair from JSON. The text tokenizer cannot
    encode it, and guessing what it meant would speak something the caller did not write."""
    from ..errors import RequestError

    for i, ch in enumerate(value):
        if "\ud800" <= ch <= "\udfff":
            raw = "\udc80" <= ch <= "\udcff"
            what = f"byte 0x{ord(ch) - 0xDC00:02x}" if raw else f"lone surrogate U+{ord(ch):04X}"
            raise RequestError(f"{field} holds an invalid character ({what}{' that is not UTF-8' if raw else ''}, "
                               f"at character {i + 1})", field, "not_unicode", what=what, at=i + 1)


def normalize_text(text: str) -> str:
    """Line endings to "\\n", control characters and unpaired surrogates removed, NFC, ends stripped."""
    if not isinstance(text, str):
        raise InputError(f"text must be a string, not {type(text).__name__}")
    text = _NEWLINES.sub("\n", text)
    text = "".join(ch for ch in text if ch not in DROPPED and not 0xD800 <= ord(ch) <= 0xDFFF)
    return unicodedata.normalize("NFC", text).strip()


def char_weight(ch: str) -> int:
    return WIDE_WEIGHT if unicodedata.east_asian_width(ch) in ("W", "F") else 1


def text_weight(text: str) -> int:
    """Length as the splitter counts it: wide (CJK, fullwidth) characters count 3, others 1."""
    return sum(char_weight(ch) for ch in text)


def split_text(text: str, max_chars: int = DEFAULT_MAX_CHARS, language: str | None = None) -> list[str]:
    """Normalize ``text`` and cut it into chunks of weight at most ``max_chars`` (see module doc).

    Returns [] for a text with nothing left after normalization. ``language`` (a model language
    name such as "german"; None or "auto" for none) adds that language's abbreviations.
    """
    if int(max_chars) < MIN_MAX_CHARS:
        raise InputError(f"max_chars must be at least {MIN_MAX_CHARS} (got {max_chars})")
    text = normalize_text(text)
    if not text:
        return []
    prefix = [0, *accumulate(char_weight(ch) for ch in text)]
    abbreviations = _ABBREVIATIONS | _LANGUAGE_ABBREVIATIONS.get((language or "").strip().lower(), set())
    splitter = _Splitter(text, prefix, int(max_chars), abbreviations)
    out: list[tuple[int, int]] = []
    splitter.chunk(0, len(text), 0, out)
    return [text[a:b] for a, b in out]


class _Splitter:
    def __init__(self, text: str, prefix: list[int], max_w: int, abbreviations: set[str]):
        self.text, self.prefix, self.max_w, self.abbreviations = text, prefix, max_w, abbreviations
        self.levels = (self._sentence_cuts, self._clause_cuts, self._space_cuts)

    def weight(self, a: int, b: int) -> int:
        return self.prefix[b] - self.prefix[a]

    def chunk(self, a: int, b: int, level: int, out: list[tuple[int, int]]) -> None:
        """Append the chunks of text[a:b] (no whitespace at either end) to ``out``."""
        if self.weight(a, b) <= self.max_w:
            out.append((a, b))
            return
        if level == len(self.levels):
            self._hard_cuts(a, b, out)
            return
        pieces = self._pieces(a, b, self.levels[level](a, b))
        if len(pieces) <= 1:
            self.chunk(a, b, level + 1, out)
            return
        cur = pieces[0]
        for pa, pb in pieces[1:]:
            if self.weight(cur[0], pb) <= self.max_w:
                cur = (cur[0], pb)
            else:
                self.chunk(cur[0], cur[1], level + 1, out)
                cur = (pa, pb)
        self.chunk(cur[0], cur[1], level + 1, out)

    def _pieces(self, a: int, b: int, cuts: list[int]) -> list[tuple[int, int]]:
        """text[a:b] cut at ``cuts``, each piece without surrounding whitespace, empty ones dropped."""
        pieces, start = [], a
        for c in [*cuts, b]:
            s, e = start, c
            while s < e and self.text[s].isspace():
                s += 1
            while e > s and self.text[e - 1].isspace():
                e -= 1
            if s < e:
                pieces.append((s, e))
            start = c
        return pieces

    def _sentence_cuts(self, a: int, b: int) -> list[int]:
        cuts = []
        for m in _SENTENCE.finditer(self.text, a, b):
            end = m.end()
            if end >= b:
                continue
            if m.group()[0] in _LATIN_END and not self._latin_sentence_end(m.start(), end, b):
                continue
            cuts.append(end)
        return cuts

    def _latin_sentence_end(self, start: int, end: int, b: int) -> bool:
        return _latin_sentence_end(self.text, start, end, b, self.abbreviations)

    def _clause_cuts(self, a: int, b: int) -> list[int]:
        return [m.end() for m in _CLAUSE.finditer(self.text, a, b) if m.end() < b]

    def _space_cuts(self, a: int, b: int) -> list[int]:
        return [m.start() for m in _SPACE.finditer(self.text, a, b) if a < m.start() < b]

    def _hard_cuts(self, a: int, b: int, out: list[tuple[int, int]]) -> None:
        """Cut text[a:b] (no usable break inside) into pieces of at most max_w, never between a
        character and the combining marks, joiners or variation selectors that belong to it."""
        text = self.text
        while a < b:
            if self.weight(a, b) <= self.max_w:
                out.append((a, b))
                return
            e = a + 1
            while e < b and self.weight(a, e + 1) <= self.max_w:
                e += 1
            f = e
            while f > a + 1 and _binds(text[f - 1], text[f]):
                f -= 1
            if _binds(text[f - 1], text[f]):
                # One cluster longer than max_chars: keep it whole rather than split it.
                f = e
                while f < b and _binds(text[f - 1], text[f]):
                    f += 1
            out.append((a, f))
            a = f
            while a < b and text[a].isspace():
                a += 1


def _binds(before: str, after: str) -> bool:
    """True when no cut may fall between ``before`` and ``after``."""
    if before == "\u200d" or after == "\u200d":  # zero-width joiner (emoji sequences)
        return True
    after_cat = unicodedata.category(after)
    if after_cat in ("Mn", "Mc", "Me"):
        return True
    # Closing punctuation stays with the character before it (no chunk starts with "，" or "」").
    if after_cat in ("Po", "Pe", "Pf") and not unicodedata.category(before).startswith("P"):
        return True
    # Variation selectors and emoji skin-tone modifiers.
    return ("\ufe00" <= after <= "\ufe0f" or "\U000e0100" <= after <= "\U000e01ef"
            or "\U0001f3fb" <= after <= "\U0001f3ff")


def _latin_sentence_end(text: str, start: int, end: int, b: int, abbreviations: set[str]) -> bool:
    """Whether the Latin sentence mark text[start:end] ends a sentence (text[b:] not looked at)."""
    nxt = end
    while nxt < b and text[nxt].isspace():
        nxt += 1
    following = text[nxt] if nxt < b else ""
    if following.islower():
        return False
    run = text[start:end].rstrip(_CLOSERS)
    if run != ".":  # "!", "?", "...", "?!": no abbreviation question
        return True
    word_start = start
    while word_start > 0 and not text[word_start - 1].isspace():
        word_start -= 1
    word = text[word_start:start].lstrip(_CLOSERS + "(\"'“‘«‹[{¿¡").lower()
    if not word:
        return True
    if word in abbreviations or _INITIALS.match(word):
        return False
    if word in _NUMBER_ABBREVIATIONS and following.isdigit():
        return False
    return True


SENTENCE, CLAUSE, SPACE = 0, 1, 2


def break_at(text: str, i: int, language: str | None = None) -> int | None:
    """The best break between text[:i] and text[i:], ranked as ``split_text`` ranks them:
    SENTENCE, CLAUSE or SPACE (None: inside a word). For a text still arriving (a text feed):
    text[i:] must reach the next visible character, which a Latin sentence end depends on."""
    if not 0 < i < len(text):
        return None
    before = text[:i].rstrip()
    gap = len(text[:i]) - len(before)  # whitespace just before the break belongs to it
    a = max(0, len(before) - 16)  # sentence and clause marks are short runs
    for m in _SENTENCE.finditer(text, a, min(len(text), i + 1)):
        if m.group()[0] == "\n":
            if m.start() < i and text[m.start():i].isspace():
                return SENTENCE
            continue
        if m.end() != len(before):
            continue
        if m.group()[0] not in _LATIN_END:
            return SENTENCE
        abbreviations = _ABBREVIATIONS | _LANGUAGE_ABBREVIATIONS.get((language or "").strip().lower(), set())
        if _latin_sentence_end(text, m.start(), m.end(), len(text), abbreviations):
            return SENTENCE
    for m in _CLAUSE.finditer(text, a, min(len(text), i + 1)):
        if m.end() == len(before) or (m.group() == "\n" and m.end() <= i and text[m.end():i].isspace()):
            return CLAUSE
    if gap or text[i].isspace():
        return SPACE
    return None
