"""What the engine hands back: a whole utterance (SynthesisResult), or a stream of audio chunks
with what it made besides them (SpeechStream, StreamResult)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from ..io.audio import SAMPLE_RATE

NO_AUDIO_WARNING = "the model ended the utterance before its first frame: no audio"


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 [frames * 1920], mono, in [-1, 1]
    codes: torch.Tensor  # [frames, 16] int64 on the CPU
    stop_reason: str  # "eos" | "max_frames", or the runaway guard's "frame_budget" | "loop" | "silence"
    sample_rate: int = SAMPLE_RATE
    warnings: list[str] = field(default_factory=list)
    # Why the audio is cut short (the runaway guard tripped, or the default frame cap was hit);
    # None when every chunk ended at its end token or at the caller's own max_frames.
    truncated: str | None = None
    chunks: int = 1  # text chunks spoken (long text is split)

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


@dataclass
class StreamResult:
    """What a finished stream produced besides its audio chunks."""

    codes: torch.Tensor  # [frames, 16] int64 on the CPU, all text chunks back to back
    stop_reason: str = ""  # as SynthesisResult.stop_reason
    sample_rate: int = SAMPLE_RATE
    warnings: list[str] = field(default_factory=list)
    truncated: str | None = None  # as SynthesisResult.truncated
    chunks: int = 0  # text chunks spoken
    samples: int = 0  # audio samples yielded, pauses included
    finished: bool = False  # False while iterating, or when the consumer stopped early
    texts: list[str] = field(default_factory=list)  # what each chunk (a text feed: utterance) read
    chunk_frames: list[int] = field(default_factory=list)  # frames each chunk (utterance) kept

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


class SpeechStream:
    """Iterator of float32 audio chunks; ``result`` is complete once it ends."""

    def __init__(self, chunks, result: StreamResult):
        self._chunks, self.result = chunks, result

    def __iter__(self) -> "SpeechStream":
        return self

    def __next__(self) -> np.ndarray:
        return next(self._chunks)

    def close(self) -> None:
        """Stop generating (what was yielded stays valid)."""
        self._chunks.close()


def joined_stop_reason(reasons: list[str]) -> str:
    """Stop reason of chunks spoken as one: the first guard trip names the whole, else
    "max_frames" if any chunk hit the cap, else "eos"."""
    return next((r for r in reasons if r not in ("eos", "max_frames")),
                "max_frames" if "max_frames" in reasons else "eos")


class Utterance:
    """One request's text chunks as they end, joined the same way by every consumer: codes back to
    back, the stop reasons, the truncation notes (labelled by chunk), the warnings (each once)."""

    def __init__(self, plan, decodes: bool = True):
        self.plan = plan  # a ResolvedRequest
        self.decodes = decodes  # False: codes only (no audio, so no "no audio" warning either)
        self.codes: list[torch.Tensor] = []
        self.reasons: list[str] = []
        self.notes: list[str] = []
        self.warnings: list[str] = []
        self.audio: list[np.ndarray] = []

    def warn(self, warnings) -> None:
        self.warnings += [w for w in warnings if w not in self.warnings]

    def chunk_done(self, index: int, codes: torch.Tensor, stop_reason: str, trip=None, note_extra: str = "") -> None:
        note = self.plan.truncation(stop_reason, trip)
        if note is not None:
            self.notes.append(self.plan.chunk_label(index, note + note_extra))
        if codes.shape[0] == 0 and self.decodes:
            self.warn([NO_AUDIO_WARNING])
        self.reasons.append(stop_reason)
        self.codes.append(codes)

    @property
    def chunks(self) -> int:
        return len(self.reasons)

    def all_codes(self) -> torch.Tensor:
        return torch.cat(self.codes)

    @property
    def stop_reason(self) -> str:
        return joined_stop_reason(self.reasons)

    @property
    def truncated(self) -> str | None:
        return "; ".join(self.notes) if self.notes else None

    def result(self) -> SynthesisResult:
        """The chunks' audio joined by the request's pause (no pause without audio: codes only)."""
        audio = [a for k, part in enumerate(self.audio) for a in ((self.gap(), part) if k else (part,))]
        return SynthesisResult(audio=np.concatenate(audio) if audio else np.zeros(0, dtype=np.float32),
                               codes=self.all_codes(), stop_reason=self.stop_reason, warnings=list(self.warnings),
                               truncated=self.truncated, chunks=self.chunks)

    def gap(self) -> np.ndarray:
        return silence(self.plan.request.pause)


def silence(seconds: float) -> np.ndarray:
    """The pause between two chunks (or two lines of a stream): float32 zeros at SAMPLE_RATE."""
    return np.zeros(round(seconds * SAMPLE_RATE), dtype=np.float32)
