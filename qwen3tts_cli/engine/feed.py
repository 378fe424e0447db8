"""A text feed: text pushed in piece by piece while its speech is generated (§3.6–§3.7).

In the streaming text layout the prompt holds only the first text id, and text id t(s+1) rides
along with generated frame s. That is what lets speech start before the text is complete: a
``TextFeed`` takes text from any thread (``push``, ``close``), tokenizes it as it comes without
ever changing a committed id (text.incremental), and the frame loop reads one id per frame from a
``FeedTrack``:

* Frame s waits for its text row while the feed is open: the step stalls (its codes and audio
  come out first; only the talker step that reads the row waits). Padding never stands in for
  text that has not arrived. After ``close()`` come the end-of-text row, then padding, exactly as
  in the official layout.
* Each text id is projected on its own, so the rows, and with them the codes, do not depend on
  how the text was cut into pieces or when they arrived.

What a track hands out ends an utterance in one of three ways, and the pipeline starts the next
utterance, in the same voice, at the first id the model has not read (``first_unread``):

* the feed is closed and every id read: the end-of-text row, then the model's end token (done);
* the model says its end token before it has read all the text (an early end), or the runaway
  guard or the frame cap stops it: the rest is not dropped but spoken as a new utterance (after a
  runaway, from the text read where the runaway stretch began);
* the utterance has grown long (``request.max_chars``, the splitter's limit): at the next sentence
  end the track gives the end-of-text row instead of the next id, which bounds the context and
  how far the text track can run ahead of the speech. Past 1.5x the limit a clause end will do,
  past 2x a space, past 3x any token boundary.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import torch

from ..text.incremental import IncrementalTokenizer
from ..text.segment import CLAUSE, SENTENCE, SPACE, break_at, text_weight
from ..text.tokenizer import TextTokenizer

# How long past the limit each kind of break waits before a lesser one is taken (multiples of max_chars).
_CUT_LEVELS = ((1.0, SENTENCE), (1.5, CLAUSE), (2.0, SPACE), (3.0, None))


class FeedCancelled(Exception):
    """The feed was cancelled: its consumer stops."""


class TextFeed:
    """Text for one stream of speech, pushed from any thread (see the module doc).

        feed = tts.text_feed()
        stream = tts.stream(feed, speaker="ryan")      # generation waits for the text it needs
        threading.Thread(target=lambda: [feed.push(t) for t in llm_tokens()] and feed.close()).start()
        for chunk in stream: play(chunk)

    ``push`` takes str or bytes (UTF-8, cut anywhere); bytes that are not UTF-8 are dropped and
    counted (``undecodable_bytes``).
    """

    is_text_feed = True  # engine.request tells a feed from a text by this, without importing torch

    def __init__(self, tokenizer: TextTokenizer):
        self.tokenizer = tokenizer
        self._inc = IncrementalTokenizer(tokenizer)
        self._cond = threading.Condition()
        self.ids: list[int] = []
        self.closed = False
        self.cancelled = False
        self._listeners: list = []  # called after new text, the close or a cancel (a scheduler's wake-up)
        self.first_text_at: float | None = None  # time.perf_counter() of the first non-empty push
        self.last_text_at: float | None = None  # ... of the last non-empty push

    # -- the producer's side ---------------------------------------------------------------------

    def push(self, text: str | bytes) -> None:
        if not isinstance(text, (str, bytes, bytearray, memoryview)):
            raise TypeError(f"push takes str or bytes, not {type(text).__name__}")
        with self._cond:
            if self.closed:
                raise ValueError("the text feed is closed")
            if len(text):
                now = time.perf_counter()
                self.first_text_at = self.first_text_at or now
                self.last_text_at = now
            new = self._inc.push(text)
            if new:
                self.ids += new
                self._cond.notify_all()
        if new:
            self._tell()

    def close(self) -> None:
        """No more text: what is held back is committed and the speech can end."""
        with self._cond:
            if self.closed:
                return
            self.ids += self._inc.close()
            self.closed = True
            self._cond.notify_all()
        self._tell()

    def cancel(self) -> None:
        """Stop: a consumer waiting for text raises FeedCancelled."""
        with self._cond:
            self.cancelled = True
            self._cond.notify_all()
        self._tell()

    def add_listener(self, fn) -> None:
        """``fn()`` is called (from the pushing thread) whenever text arrives, the feed closes or is
        cancelled: a scheduler serving the feed wakes up then instead of polling."""
        with self._cond:
            if fn not in self._listeners:
                self._listeners.append(fn)

    def _tell(self) -> None:
        for fn in list(self._listeners):
            fn()

    # -- the consumer's side ---------------------------------------------------------------------

    @property
    def text(self) -> str:
        """The committed text (cleaned as text.incremental cleans it)."""
        return self._inc.text

    @property
    def undecodable_bytes(self) -> int:
        return self._inc.undecodable_bytes

    @property
    def first_undecodable(self) -> int | None:
        return self._inc.first_undecodable

    def span(self, i: int) -> tuple[int, int]:
        """Characters of ``text`` that id i came from."""
        return self._inc.spans[i]

    def wait(self, n: int, timeout: float | None = None) -> bool:
        """Block until at least ``n`` ids exist (True) or the feed is closed with fewer (False)."""
        with self._cond:
            ok = self._cond.wait_for(lambda: len(self.ids) >= n or self.closed or self.cancelled, timeout)
            if self.cancelled:
                raise FeedCancelled()
            if not ok:
                raise TimeoutError(f"no text for {timeout} s")
            return len(self.ids) >= n

    def has(self, n: int) -> bool | None:
        """Whether ``n`` ids exist: True, False once closed with fewer, None while that is unknown."""
        with self._cond:
            if self.cancelled:
                raise FeedCancelled()
            return True if len(self.ids) >= n else (False if self.closed else None)


class FeedTrack:
    """One utterance's text rows from a feed, one per generated frame (see the module doc).

    ``start``: the feed index of the utterance's first id; the prompt (built from
    ``feed.ids[start:start + prompt.text_in_prompt]`` and possibly more) tells how many ids it
    holds and which rows of its own trailing come before the first feed id (an ICL clone's
    reference transcript may run past its frames). ``embed(id) -> [H]`` projects one text id;
    ``on_text(text)`` hears the utterance's text so far as it grows (the runaway guard's budget).
    """

    def __init__(self, feed: TextFeed, start: int, prompt, eos: torch.Tensor, embed: Callable[[int], torch.Tensor],
                 max_chars: int, language: str | None = None, on_text: Callable[[str], None] | None = None):
        self.feed, self.start, self.eos, self.pad = feed, start, eos, prompt.pad
        self.embed, self.max_chars, self.language, self.on_text = embed, max_chars, language, on_text
        self.next = start + prompt.text_in_prompt  # feed index of the next id to hand out
        n_given = len(prompt.token_ids["text"])
        if prompt.eos_in_prompt:
            self.pre, self.end = prompt.trailing, start + n_given  # the end-of-text row is in the prompt
        else:
            # Rows of the prompt's trailing before the first text id (reference transcript leftovers).
            self.pre = prompt.trailing[:max(0, prompt.trailing.shape[0] - 1 - (n_given - prompt.text_in_prompt))]
            self.end = None  # feed index where the end-of-text row went (None: not yet)
        self._last: tuple[int, torch.Tensor] | None = None
        self._from: dict[int, int] = {}  # step -> feed index of the id handed out for it
        if on_text is not None:
            on_text(self.text())

    def text(self, upto: int | None = None) -> str:
        """The utterance's text read so far (up to feed index ``upto``)."""
        upto = self.next if upto is None else upto
        if upto <= self.start:
            return ""
        return self.feed.text[self.feed.span(self.start)[0]:self.feed.span(upto - 1)[1]]

    def first_unread(self, steps: int) -> int:
        """Feed index of the first id the model had not read after ``steps`` talker steps (rows
        handed out for later steps were speculative: the frame loop overlaps a frame's end-token
        test with the next step)."""
        later = [i for s, i in self._from.items() if s >= steps]
        return min(later) if later else self.next

    def row(self, s: int, block: bool) -> torch.Tensor | None:
        """The text row of frame ``s`` (asked in order; the same s may be asked again), or None
        when it has not arrived and ``block`` is False."""
        if self._last is not None and self._last[0] == s:
            return self._last[1]
        out = self._row(s, block)
        if out is not None:
            self._last = (s, out)
        return out

    def _row(self, s: int, block: bool) -> torch.Tensor | None:
        if s < self.pre.shape[0]:
            return self.pre[s]
        if self.end is not None:
            return self.pad
        has = self.feed.has(self.next + 1)
        if has is None and block:
            has = self.feed.wait(self.next + 1)
        if has is None:
            return None
        if not has or self._cut_here():
            self.end = self.next
            return self.eos
        i = self.next
        self.next += 1
        self._from[s] = i
        if self.on_text is not None:
            self.on_text(self.text())
        return self.embed(self.feed.ids[i])

    def _cut_here(self) -> bool:
        """A long utterance ends at the break before the next id, when that break is good enough."""
        if self.next <= self.start:
            return False
        a, b = self.feed.span(self.start)[0], self.feed.span(self.next - 1)[1]
        c = self.feed.span(self.next)[0]
        if c < b:  # the next id continues the same character (byte pieces of a rare one)
            return False
        weight = text_weight(self.feed.text[a:b])
        if weight < self.max_chars:
            return False
        level = break_at(self.feed.text, c, self.language)
        for factor, needed in _CUT_LEVELS:
            if weight >= factor * self.max_chars and (needed is None or (level is not None and level <= needed)):
                return True
        return False

