"""Text to audio, written once: plan -> frames -> audio.

    plan     a resolved request's text chunks, each one row of the frame loop: its prompt (built
             when the chunk starts), its seed (seed + i), its frame cap and its runaway guard; a
             text feed's utterances instead (``stream_feed``: rows whose text rows arrive while
             they run, engine/feed.py)
    frames   model.frames.generate: one chunk at a time (``synthesize``, ``stream``), or every chunk
             of every request together (``synthesize_batch``)
    audio    ``StreamedAudio``: the streaming codec decoder fed on the request's schedule, as frames
             come (``stream``, ``stream_feed``: one loop, ``_Speech``) or once a chunk has ended
             (``synthesize``, batches: the same cuts, so the same samples)

Each consumer joins a request's chunks through results.Utterance: codes, stop reasons,
truncation notes and warnings are handled there, once.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from ..errors import RequestError
from ..model.frames import Row
from .request import ResolvedRequest
from .results import SpeechStream, StreamResult, SynthesisResult, Utterance


def batch_sampling(plans: Sequence[ResolvedRequest]):
    """The sampling settings requests run with as the rows of one batch: theirs, shared."""
    if any(p.sampling != plans[0].sampling for p in plans):
        raise RequestError("the requests of one batch share their sampling settings (greedy, temperature, top_k, "
                           "top_p, repetition_penalty, ...)", "sampling", "sampling_batch")
    return plans[0].sampling if plans else None


def chunk_row(tts, plan: ResolvedRequest, i: int) -> Row:
    """Chunk i of a request as a row of the frame loop (its prompt is built now)."""
    from .guard import RunawayGuard

    text = plan.chunks[i]
    watch = None if plan.guard is None else RunawayGuard.for_text(text, plan.guard)
    return Row(tts.build_prompt(plan, text), cap=plan.row_cap(i), seed=plan.seed(i), watch=watch)


class StreamedAudio:
    """One text chunk's frames in as they come, audio out on the schedule: a fresh streaming
    decoder per chunk; an ICL voice's reference codes go in first (the official decode grid starts
    at them) and their audio is set aside in ``reference``."""

    def __init__(self, decoder, schedule: Sequence[int], ref_codes: torch.Tensor | None = None):
        from ..codec.streaming import StreamingDecoder

        self.dec = StreamingDecoder(decoder)
        self.schedule = list(schedule)
        self.frames: list[torch.Tensor] = []
        self.sent = 0  # frames decoded so far
        self.pushes = 0
        self.reference = None if ref_codes is None else self.dec.push(ref_codes.to(torch.long).cpu()).numpy()

    def add(self, frame: torch.Tensor) -> np.ndarray | None:
        """Take one frame; the audio of the next scheduled chunk once it is complete."""
        self.frames.append(frame)
        if len(self.frames) - self.sent >= self.schedule[min(self.pushes, len(self.schedule) - 1)]:
            return self._push(len(self.frames))
        return None

    def flush(self, upto: int | None = None) -> np.ndarray | None:
        """The audio of the frames not yet decoded, up to frame ``upto`` (default: all)."""
        upto = len(self.frames) if upto is None else upto
        return self._push(upto) if upto > self.sent else None

    def _push(self, upto: int) -> np.ndarray:
        audio = self.dec.push(torch.stack(self.frames[self.sent:upto])).numpy()
        self.sent, self.pushes = upto, self.pushes + 1
        return audio


def own_frames(tts, plan: ResolvedRequest):
    """How a row is run when no scheduler runs it: alone, through the model's frame loop."""
    return lambda row: tts.generate([row], plan.sampling)


def synthesize(tts, plan: ResolvedRequest, progress: Callable[[int], None] | None = None,
               decode: bool = True, frames=None) -> SynthesisResult:
    """The chunks one after another, each decoded once it has ended, joined by the pause.
    ``progress(n)``: frames over all chunks so far; ``decode=False``: codes only. ``frames(row)``
    runs a row (default ``own_frames``; a scheduler's runs it in its batch)."""
    frames = frames or own_frames(tts, plan)
    utt = Utterance(plan, decodes=decode)
    done = 0
    for i in range(len(plan.chunks)):
        row = chunk_row(tts, plan, i)
        utt.warn(row.prompt.warnings)
        for _, frame in frames(row):
            if frame is not None and progress is not None:
                progress(done + len(row.frames))
        codes = row.codes()
        utt.chunk_done(i, codes, row.stop_reason, row.trip)
        done += codes.shape[0]
        if decode:
            utt.audio.append(tts.decode_for(codes, plan.voice, plan.request.schedule))
    return utt.result()


def stream(tts, plan: ResolvedRequest, progress: Callable[[int], None] | None = None, frames=None) -> SpeechStream:
    """Audio while frames are generated (see TTS.stream). The first chunk's prompt is built and
    the codec decoder loaded now, so that their errors come before the first frame."""
    first = chunk_row(tts, plan, 0)
    speech = _Speech(tts, plan, progress, frames)

    def rows():
        for i in range(len(plan.chunks)):
            yield first if i == 0 else chunk_row(tts, plan, i)

    return speech.stream(rows())


def feed_row(tts, plan: ResolvedRequest, start: int, k: int) -> Row:
    """Utterance k of a text feed, from feed id ``start`` on, as a row of the frame loop: its
    prompt holds the ids the streaming layout puts there (waited for: the feed may still be open)
    and a FeedTrack hands out the rest, one per frame (engine/feed.py)."""
    from .feed import FeedTrack
    from .guard import RunawayGuard

    feed = plan.request.feed
    need = tts.feed_ids_needed(plan)
    feed.wait(start + need)
    prompt = tts.build_prompt(plan, feed.ids[start:start + need])
    watch = None if plan.guard is None else RunawayGuard.for_text("", plan.guard)
    device = prompt.pad.device

    def embed(i: int) -> torch.Tensor:
        # One id at a time: the rows do not depend on how the text was cut or when it came.
        return tts.embeddings.embed_text(torch.tensor([i], device=device))[0]

    prompt.track = FeedTrack(feed, start, prompt, embed(tts.cfg.tts_eos_token_id), embed,
                             plan.request.max_chars_limit(), plan.language, None if watch is None else watch.grow)
    return Row(prompt, cap=plan.max_frames, seed=plan.seed(k), watch=watch)


def stream_feed(tts, plan: ResolvedRequest, progress: Callable[[int], None] | None = None,
                frames=None) -> SpeechStream:
    """Audio of a text feed while its text arrives (engine/feed.py): utterances one after another,
    each starting at the first id the one before had not read. The codec decoder is loaded now,
    so that its errors come before the first frame."""
    feed = plan.request.feed
    speech = _Speech(tts, plan, progress, frames)

    def rows():
        start = k = 0
        while feed.wait(start + 1):
            row = feed_row(tts, plan, start, k)
            yield row
            nxt = row.prompt.track.first_unread(row.kept)
            if nxt <= start:
                # It ended before reading any of its text (an ICL clone's prompt may start with
                # the reference transcript's own rows): the same utterance again would end the
                # same way. Stop, and say what was not spoken.
                speech.utt.notes.append(plan.chunk_label(k, (
                    f"the model ended it ({row.stop_reason}) before it read any of its text: the text from "
                    f"token {start + 1} on was not spoken")))
                return
            start, k = nxt, k + 1

    return speech.stream(rows())


class _Speech:
    """The one streaming loop: rows (text chunks, or a feed's utterances) spoken one after
    another, each row's audio on the request's schedule, joined by the pause."""

    def __init__(self, tts, plan: ResolvedRequest, progress: Callable[[int], None] | None, frames=None):
        self.tts, self.plan, self.progress = tts, plan, progress
        self.frames = frames or own_frames(tts, plan)
        self.decoder = tts.decoder
        self.utt = Utterance(plan)
        self.result = StreamResult(codes=torch.empty(0, tts.cfg.talker.num_code_groups, dtype=torch.long),
                                   sample_rate=tts.sample_rate, warnings=self.utt.warnings)

    def stream(self, rows) -> SpeechStream:
        return SpeechStream(self._produce(rows), self.result)

    @torch.inference_mode()
    def _produce(self, rows):
        plan, utt, result = self.plan, self.utt, self.result
        ref_codes = getattr(plan.voice, "ref_codes", None)
        done = 0
        for i, row in enumerate(rows):
            if i:
                gap = utt.gap()
                result.samples += len(gap)
                yield gap
            utt.warn(row.prompt.warnings)
            audio = StreamedAudio(self.decoder, plan.request.schedule, ref_codes)  # the schedule starts again
            for _, frame in self.frames(row):
                if frame is None:
                    continue
                if self.progress is not None:
                    self.progress(done + len(row.frames))
                out = audio.add(frame)
                if out is not None:
                    result.samples += len(out)
                    yield out
            played = audio.sent - row.kept  # frames of a runaway stretch already streamed
            out = audio.flush(row.kept)
            if out is not None:
                result.samples += len(out)
                yield out
            extra = f" (the stream had already played {played} frames of it)" if row.trip is not None and played > 0 else ""
            utt.chunk_done(i, row.codes(), row.stop_reason, row.trip, extra)
            done += row.kept
            result.codes, result.chunks = utt.all_codes(), utt.chunks
            track = row.prompt.track
            result.texts.append(plan.chunks[i] if track is None else track.text(track.first_unread(row.kept)))
            result.chunk_frames.append(row.kept)
        result.stop_reason, result.truncated, result.finished = utt.stop_reason, utt.truncated, True


def synthesize_batch(tts, plans: Sequence[ResolvedRequest],
                     on_result: Callable[[int, SynthesisResult], None] | None = None,
                     progress: Callable[[int], None] | None = None) -> list[SynthesisResult]:
    """Every chunk of every request as one row of one batched generation (the requests share
    their sampling settings). A chunk is decoded as soon as its row ends; a request's result goes
    to ``on_result(i, result)`` once all its chunks have, while the other rows go on.
    ``progress(n)``: after every lock-step frame."""
    settings = batch_sampling(plans)
    rows: list[Row] = []
    owner: list[tuple[int, int]] = []  # (request, chunk) of each row
    for t, plan in enumerate(plans):
        for i in range(len(plan.chunks)):
            rows.append(chunk_row(tts, plan, i))
            owner.append((t, i))
    finished: list[dict[int, tuple[Row, np.ndarray]]] = [{} for _ in plans]
    out: list[SynthesisResult | None] = [None] * len(plans)
    for b, frame in tts.generate(rows, settings, on_step=progress):
        row = rows[b]
        if frame is not None:
            continue
        t, i = owner[b]
        plan = plans[t]
        codes = row.codes()
        finished[t][i] = (row, tts.decode_for(codes, plan.voice, plan.request.schedule))
        if len(finished[t]) == len(plan.chunks):
            utt = Utterance(plan)
            for k in range(len(plan.chunks)):
                done, audio = finished[t][k]
                utt.warn(done.prompt.warnings)
                utt.chunk_done(k, done.codes(), done.stop_reason, done.trip)
                utt.audio.append(audio)
            out[t] = utt.result()
            if on_result is not None:
                on_result(t, out[t])
    return out
