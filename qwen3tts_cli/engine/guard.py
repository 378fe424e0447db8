"""Runaway guard: stop an utterance whose end token never comes.

In a small share of requests (about 0.3 % in public reports) the talker never samples its end
token and keeps producing frames: a phrase said over and over, or minutes of near-silent "room
tone". Three checks catch that, each far from what normal speech does:

* **Frame budget.** ``frame_budget(text) = floor + per_unit * units(text)``, with ``units`` the
  splitter's ``text_weight`` (a CJK character counts 3) plus 3 more per digit or symbol (numbers
  and signs are spoken much longer than written: "1999" is "nineteen ninety-nine"). With the
  defaults (80 frames + 3 per unit; a frame is 80 ms) that allows 4.2 characters per second of
  English, about a third of a normal speaking rate and half of a very slow one, 1.4 CJK characters
  per second, and 6.4 s for any text however short. A 300-character chunk gets 980 frames (78 s).
* **Loop.** The first code of each frame (the talker's own token; the other 15 are acoustic
  detail) repeats with a period of 1 to 40 frames (up to 3.2 s) for at least 4 periods and at least
  75 frames (6 s), at 90 % of positions. Speech never repeats itself that exactly; a pause may, as
  one or two silence codes, which is why short periods too need 6 s.
* **Silence.** In the last 75 frames (6 s), 4 first-code values cover 90 % of the frames. The codec
  spells silence and room tone with a handful of first codes, while 6 s of speech uses dozens;
  recognising it from the codes costs nothing, where decoding to audio to measure its level would
  cost a codec pass. A pause in speech lasts a second or two; pauses up to 4 s never trip.

Frames arrive one at a time as int64 [16] tensors, possibly on the GPU. The guard keeps them until
it has ``check_every`` (12, about 1 s of audio), then moves only their first codes to the host in
one copy and runs the checks: one host sync per second of audio, not per frame. So a loop or
silence is noticed up to 12 frames after it qualifies; the budget is exact.

A trip says why and how many frames are worth keeping: everything for the budget; for a loop or
silence, the frames before the repeating stretch (found as the best change point in the recent
history) plus one period (a loop) or 0.5 s (silence), so the kept audio ends where the runaway
began.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch

from ..text.segment import text_weight


@dataclass(frozen=True)
class GuardSettings:
    floor_frames: int = 80
    frames_per_unit: float = 3.0
    check_every: int = 12
    loop_min_frames: int = 75
    loop_max_period: int = 40
    loop_repeats: int = 4
    loop_match: float = 0.9
    silence_frames: int = 75
    silence_codes: int = 4
    silence_share: float = 0.9
    silence_keep: int = 6

    @property
    def history(self) -> int:
        """First codes the checks look back on."""
        loop = max(self.loop_min_frames, self.loop_repeats * self.loop_max_period) + self.loop_max_period
        return max(loop, self.silence_frames)


DEFAULT_SETTINGS = GuardSettings()

REASONS = {
    "frame_budget": "ran past its frame budget",
    "loop": "fell into a loop of repeated codes",
    "silence": "produced only silence",
}


def spoken_units(text: str) -> int:
    """The budget's measure of a text: its splitter weight, plus 3 per digit or symbol."""
    extra = sum(1 for ch in text if ch.isdigit() or ch in "%&@#°§/" or unicodedata.category(ch) in ("Sc", "Sm"))
    return text_weight(text) + 3 * extra


def frame_budget(text: str, settings: GuardSettings = DEFAULT_SETTINGS) -> int:
    """Most frames an utterance of ``text`` may take before the guard calls it a runaway."""
    return settings.floor_frames + math.ceil(settings.frames_per_unit * spoken_units(text))


@dataclass
class Trip:
    reason: str  # "frame_budget" | "loop" | "silence"
    frames: int  # frames seen when the guard tripped
    keep: int  # frames worth keeping (the start of the runaway stretch)
    detail: str

    def message(self) -> str:
        return (f"generation {REASONS[self.reason]} ({self.detail}): stopped after {self.frames} frames, "
                f"kept the first {self.keep} ({self.keep * 0.08:.2f} s)")


class RunawayGuard:
    """Watch the frames of one utterance; ``push`` returns a Trip when generation should stop.

        guard = RunawayGuard(frame_budget(text))
        for frame in frames:
            trip = guard.push(frame)
            if trip: break
    """

    def __init__(self, budget: int, settings: GuardSettings = DEFAULT_SETTINGS):
        if budget < 1:
            raise ValueError("budget must be >= 1")
        self.budget, self.settings = int(budget), settings
        self.frames = 0
        self.trip: Trip | None = None
        self._block: list[torch.Tensor] = []
        self._first = np.zeros(0, dtype=np.int64)  # recent first codes, on the host
        self._offset = 0  # frame index of self._first[0]

    @classmethod
    def for_text(cls, text: str, settings: GuardSettings = DEFAULT_SETTINGS) -> "RunawayGuard":
        return cls(frame_budget(text, settings), settings)

    def grow(self, text: str) -> None:
        """The utterance's text has grown to ``text`` (a text feed): the budget grows with it."""
        self.budget = max(self.budget, frame_budget(text, self.settings))

    def push(self, frame: torch.Tensor) -> Trip | None:
        """Record one frame (int64 [16], any device). A trip is sticky: later pushes return it."""
        if self.trip is not None:
            return self.trip
        if self.frames >= self.budget:
            # A frame past the budget: the model wanted more than the text can need.
            self.trip = Trip("frame_budget", self.frames, self.frames,
                             f"{self.budget} frames, {self.budget * 0.08:.1f} s, for this text")
            return self.trip
        self.frames += 1
        self._block.append(frame.reshape(-1)[0])
        if len(self._block) >= self.settings.check_every:
            self._check()
        return self.trip

    def _check(self) -> None:
        s = self.settings
        new = torch.stack(self._block).cpu().numpy().astype(np.int64)
        self._block = []
        first = np.concatenate([self._first, new])
        drop = max(0, len(first) - s.history)
        self._first, self._offset = first[drop:], self._offset + drop
        self.trip = self._loop() or self._silence()

    def _loop(self) -> Trip | None:
        s, c = self.settings, self._first
        for p in range(1, s.loop_max_period + 1):
            n = max(s.loop_min_frames, s.loop_repeats * p)
            if len(c) < n + p:
                break
            if np.mean(c[-n:] == c[-n - p:-p]) >= s.loop_match:
                # Keep up to where frames start to equal those p before: the loop's first period.
                start = self._offset + p + _change_point(c[p:] == c[:-p])
                what = f"the same first code for {n} frames" if p == 1 else f"a {p}-frame pattern over {n} frames"
                return Trip("loop", self.frames, start, what)
        return None

    def _silence(self) -> Trip | None:
        s, c = self.settings, self._first
        if len(c) < s.silence_frames:
            return None
        window = c[-s.silence_frames:]
        codes, counts = np.unique(window, return_counts=True)
        top = np.argsort(counts, kind="stable")[::-1][:s.silence_codes]
        if counts[top].sum() >= s.silence_share * s.silence_frames:
            # Where the silence codes (the top ones that fill a tenth of the window) take over.
            dominant = codes[top][counts[top] >= 0.1 * s.silence_frames]
            start = self._offset + _change_point(np.isin(c, dominant))
            return Trip("silence", self.frames, start + s.silence_keep,
                        f"{s.silence_frames * 0.08:.0f} s with no more than {s.silence_codes} distinct first codes")
        return None


def _change_point(flags: np.ndarray, rate: float = 0.75) -> int:
    """Where a stretch in which ``flags`` hold now and then (speech: a held sound matches the frame
    before) turns into one where they nearly always hold: the start of the suffix with the largest
    sum of (flag - rate); the latest such start on ties, keeping as much as possible before it."""
    gain = flags.astype(np.float64) - rate
    suffix = np.concatenate([np.cumsum(gain[::-1])[::-1], [0.0]])
    return int(len(suffix) - 1 - np.argmax(suffix[::-1]))
