"""Tokenization of a text that arrives in pieces, committing only ids that can no longer change.

A text fed by an LLM comes a few bytes at a time. The talker's streaming layout eats one text id
per frame, so ids must be handed over as early as possible, but an id once handed over has been
spoken: it must be exactly the id the tokenizer gives for the whole text. Four things can still
change at the end of what has arrived, and each is held back until later text settles it:

* an incomplete UTF-8 sequence (bytes pushed): Python's incremental decoder keeps it;
* a partial special token ("<|im_" may become "<|im_end|>", which the tokenizer matches whole in
  the raw text);
* a character that NFC could still combine with what follows (the text from the last "safe"
  character on: a starter that no canonical composition takes as its second part, ccc 0);
* whitespace at the end, which is dropped if the text ends there;
* the last pre-token of the split regex ("hel" may become "hello", a space run may lend its last
  space to the next word, "don" + "'t" is two pre-tokens, "." + "\\n" one).

What comes before that is tokenized and committed for good; the property test
(tests/test_incremental.py) checks that the ids committed over a whole run equal the tokenization
of the whole text for any cut points.

The text is cleaned as it comes, the way ``segment.normalize_text`` cleans a whole text (line
endings to "\\n", control characters dropped, whitespace at both ends dropped), so the committed ids
are those of ``normalize_text(whole text)`` (an ordinary text is unchanged by it). As in the
prompt template, the text follows "assistant\\n": with no leading whitespace, its ids are its own
tokenization's.
"""

from __future__ import annotations

import re
import functools
import unicodedata

from .segment import DROPPED, LINE_ENDS
from .tokenizer import TextTokenizer

# Hangul vowel and trailing-consonant jamo compose with the syllable before them (algorithmically,
# so unicodedata.decomposition does not list them).
_HANGUL_SECONDS = range(0x1161, 0x1176), range(0x11A8, 0x11C3)
_HANGUL_FIRSTS = range(0x1100, 0x1113), range(0xAC00, 0xD7A4)  # leading jamo; syllables (LV take a T)


@functools.lru_cache(maxsize=1)
def _compositions() -> tuple[frozenset[str], frozenset[str]]:
    """(characters NFC may compose with the one before them, characters it may compose with the
    one after them)."""
    seconds = {chr(c) for r in _HANGUL_SECONDS for c in r}
    firsts = {chr(c) for r in _HANGUL_FIRSTS for c in r}
    for cp in range(0x110000):
        d = unicodedata.decomposition(chr(cp))
        if d and not d.startswith("<"):
            parts = d.split()
            if len(parts) == 2:
                pair = chr(int(parts[0], 16)) + chr(int(parts[1], 16))
                if unicodedata.normalize("NFC", pair) == chr(cp):  # not a composition exclusion
                    firsts.add(pair[0])
                    seconds.add(pair[1])
    return frozenset(seconds), frozenset(firsts)


def nfc_safe(ch: str) -> bool:
    """Whether NFC never joins ``ch`` with the text before it: a boundary before it is stable."""
    seconds = _compositions()[0]
    if unicodedata.combining(ch) or ch in seconds:
        return False
    first = unicodedata.normalize("NFD", ch)[0]
    return not unicodedata.combining(first) and first not in seconds


def nfc_final(ch: str) -> bool:
    """Whether NFC never joins ``ch`` with what comes after it (a text may end after it)."""
    if not nfc_safe(ch):
        return False
    nfc = unicodedata.normalize("NFC", ch)
    return nfc[-1] not in _compositions()[1]


class Utf8Pieces:
    """UTF-8 bytes arriving cut anywhere -> text: an incomplete sequence at the end waits for the
    next piece; bytes that are not UTF-8 are dropped and counted (``count``, ``first``)."""

    def __init__(self):
        self.held = b""
        self.count = 0
        self.first: int | None = None

    def decode(self, data: bytes, final: bool = False) -> str:
        data = self.held + bytes(data)
        self.held = b""
        out = []
        while data:
            try:
                out.append(data.decode("utf-8"))
                break
            except UnicodeDecodeError as e:
                out.append(data[:e.start].decode("utf-8"))
                if not final and e.end == len(data) and e.reason == "unexpected end of data":
                    self.held = data[e.start:]  # may still be completed
                    break
                self._drop(data[e.start:e.end])
                data = data[e.end:]
        return "".join(out)

    def flush(self) -> None:
        """What is held can no longer be completed (text came, or the end)."""
        if self.held:
            self._drop(self.held)
            self.held = b""

    def _drop(self, bad: bytes) -> None:
        self.count += len(bad)
        if self.first is None:
            self.first = bad[0]


class IncrementalTokenizer:
    """``push(text or bytes) -> ids now final``; ``close() -> the rest``. Not thread-safe (the
    text feed serializes its calls)."""

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer
        tok = tokenizer.tokenizer
        self._specials = sorted({t.content for t in tok.get_added_tokens_decoder().values()}, key=len)
        self._longest = max((len(s) for s in self._specials), default=0)
        self._special_re = re.compile("|".join(re.escape(s) for s in reversed(self._specials))) if self._specials else None
        self._bytes = Utf8Pieces()
        self.pending = ""  # cleaned text not yet committed
        self.started = False  # something other than whitespace has arrived
        self._cr = False  # the last character was "\r": a "\n" right after it is the same line end
        self.committed = 0  # ids committed so far
        self.text = ""  # everything committed, cleaned
        self.spans: list[tuple[int, int]] = []  # each committed id's characters in ``text``
        self.closed = False

    @property
    def undecodable_bytes(self) -> int:
        """Bytes dropped because they were not UTF-8."""
        return self._bytes.count

    @property
    def first_undecodable(self) -> int | None:
        return self._bytes.first

    def push(self, piece: str | bytes) -> list[int]:
        if self.closed:
            raise ValueError("the text is closed")
        if isinstance(piece, (bytes, bytearray, memoryview)):
            text = self._bytes.decode(piece)
        else:
            self._bytes.flush()  # text between the bytes of one character: they cannot complete it
            text = piece
        self.pending += self._clean(text)
        if not self.started:
            self.pending = self.pending.lstrip()
            self.started = bool(self.pending)
        return self._commit(self._stable_end())

    def close(self) -> list[int]:
        """The ids of everything still held back (whitespace at the end dropped)."""
        if self.closed:
            return []
        self._bytes.flush()
        self.closed = True
        # NFC before the special tokens are matched, as normalize_text does for a whole text.
        self.pending = unicodedata.normalize("NFC", self.pending).rstrip()
        if not self.pending:
            return []
        enc = self.tokenizer.tokenizer.encode(self.pending, add_special_tokens=False)
        return self._take(enc, len(enc.ids), len(self.pending))

    # -- internals -------------------------------------------------------------------------------

    def _clean(self, text: str) -> str:
        out = []
        for ch in text:
            if ch == "\n" and self._cr:
                self._cr = False
                continue  # the second half of CRLF: "\r" already became "\n"
            self._cr = ch == "\r"
            if ch in LINE_ENDS:
                out.append("\n")
            elif ch in DROPPED or "\ud800" <= ch <= "\udfff":
                continue
            else:
                out.append(ch)
        return "".join(out)

    def _stable_end(self) -> int:
        """Normalize (NFC) the part of ``pending`` that can no longer change under NFC, and return
        where, after that, the text that may still change begins, before the pre-token rule: a
        partial special token, or a character NFC could still join with what follows."""
        p = self.pending
        end = len(p)
        if end and not nfc_final(p[-1]):
            end -= 1  # a mark may still follow and join the last character
        while 0 < end < len(p) and not nfc_safe(p[end]):
            end -= 1
        # NFC first, then the special tokens, as for a whole text: ">" + U+0338 is "≯", and then
        # "<|im_end|>" is no special token.
        head = unicodedata.normalize("NFC", p[:end])
        self.pending = p = head + p[end:]
        end = len(head)
        for start in range(max(0, end - self._longest + 1), end):
            tail = p[start:end]
            if any(s.startswith(tail) and s != tail for s in self._specials):
                end = start
                break
        # Never inside a whole special token.
        if self._special_re is not None:
            for m in self._special_re.finditer(p, 0, len(p)):
                if m.start() < end < m.end():
                    return m.start()
        return end

    def _commit(self, end: int) -> list[int]:
        if end <= 0:
            return []
        p = self.pending
        # Whitespace is committed only once text follows it: at the end of the text it is dropped,
        # and at the end of the encoded part the split regex may still join it with what comes
        # (a run of "\n \n" is one pre-token, "\n" and " \n" while it is cut).
        stripped = min(len(p.rstrip()), len(p[:end].rstrip()))
        enc = self.tokenizer.tokenizer.encode(p[:end], add_special_tokens=False)
        words, offsets = enc.word_ids, enc.offsets
        # Hold back the last pre-token, and more while the cut would fall before an unsafe
        # character (a pre-token boundary between a letter and its combining mark) or leave
        # only whitespace after the committed text.
        k = len(words)
        while k > 0:
            first = k - 1
            while first > 0 and words[first - 1] == words[k - 1]:
                first -= 1
            k = first
            if k == 0:
                return []
            # One raw character may give several normalized ones (a composition exclusion such as
            # U+0958 is a letter and a mark): the cut must leave every committed token before it.
            cut = offsets[k][0]
            if 0 < cut <= stripped and offsets[k - 1][1] <= cut and nfc_safe(p[cut]):
                break
        return self._take(enc, k, cut)

    def _take(self, enc, k: int, cut: int) -> list[int]:
        """Commit the first ``k`` ids of ``enc`` (the encoding of pending[:cut] and beyond)."""
        base = len(self.text)
        self.spans += [(base + a, base + b) for a, b in enc.offsets[:k]]
        self.text += self.pending[:cut]
        self.pending = self.pending[cut:]
        self.committed += k
        return enc.ids[:k]
