"""One loaded model serving many requests at once: dynamic batching (model/continuous.py).

    scheduler = Scheduler(tts, max_batch=4)
    handle = scheduler.submit("Hello there.", speaker="ryan")     # from any thread
    for chunk in handle: play(chunk)                             # audio as it is made
    handle.result                                                # codes, stop reason, ... (a StreamResult)
    scheduler.submit(text).synthesis()                           # or the whole utterance, as synthesize
    handle.cancel()                                              # from any thread

One worker thread owns the model and runs the batch: a request's rows (its text chunks, or a text
feed's utterances) join at the next frame boundary once a cache row is free, and leave the moment
they end or are cancelled. Everything else of a request runs in the thread that consumes it, with
the same code as a request alone (engine/pipeline.py): its prompts, its codec decoding, the
joining of its chunks. Only the frames of its rows come from the shared batch, so a request's
audio is what it gives alone (greedy: the same codes; seeded: the same draws from its own
generator; batched products round differently, ~1e-6 on logits).

The scheduler's batch uses the model's KV caches: while it runs, send every request on that model
through it (a ``tts.synthesize`` or ``tts.stream`` beside it would share the caches).

Backpressure: at most ``max_batch`` rows run and ``max_queue`` more requests wait; past that
``submit`` raises BusyError (a server answers 429). An error in one request fails that request
only; an error in a batched step fails the rows of that step and the worker goes on.
"""

from __future__ import annotations

import queue
import threading
from collections import deque

import torch

from ..errors import BusyError
from ..model.continuous import ContinuousBatch
from . import pipeline
from .results import SpeechStream, SynthesisResult

DEFAULT_MAX_BATCH = 4
DEFAULT_MAX_QUEUE = 16
# Cache slots a warm-up prepares the batch for: a prompt of up to 1024 rows and 1024 frames
# (82 s) after it. A longer row grows the cache; frames then run without graphs until the
# scheduler is idle and captures them again (ContinuousBatch.prepare_again).
WARM_UP_SLOTS = 2048


class RequestCancelled(Exception):
    """The request was cancelled: its consumer stops."""


class _RowJob:
    """One row on its way through the batch: its frames come back through ``frames``."""

    def __init__(self, row, settings, handle):
        self.row, self.settings, self.handle = row, settings, handle
        self.frames: queue.SimpleQueue = queue.SimpleQueue()
        self.slot = None
        self.cancelled = False

    def emit(self, frame) -> None:
        self.frames.put(frame)

    def fail(self, error: BaseException) -> None:
        self.frames.put(error)


class _WorkerCall:
    """A function the worker runs with the batch (it alone touches the model's caches)."""

    def __init__(self, fn):
        self.fn, self.done = fn, threading.Event()
        self.value, self.error = None, None

    def run(self, batch) -> None:
        try:
            self.value = self.fn(batch)
        except BaseException as e:  # noqa: BLE001 (raised in the caller's thread)
            self.error = e
        self.done.set()


class SpeechHandle:
    """A submitted request: iterate it for audio chunks (``result`` is then the StreamResult), or
    call ``synthesis()`` for the whole SynthesisResult; ``cancel()`` from any thread."""

    def __init__(self, scheduler: "Scheduler", plan):
        self.scheduler, self.plan = scheduler, plan
        self.cancelled = False
        self._jobs: list[_RowJob] = []
        self._stream: SpeechStream | None = None
        self._done = False

    # -- the consumer's side ---------------------------------------------------------------------

    def __iter__(self):
        return self

    def __next__(self):
        if self._stream is None:
            self._stream = self._start_stream()
        try:
            return next(self._stream)
        except RequestCancelled:
            self._finish()
            raise StopIteration from None
        except BaseException:
            self._finish()
            raise

    @property
    def result(self):
        """The StreamResult (complete once the iteration has ended)."""
        if self._stream is None:
            self._stream = self._start_stream()
        return self._stream.result

    def synthesis(self, progress=None, decode: bool = True) -> SynthesisResult:
        """The whole utterance, as ``TTS.synthesize`` makes it (each chunk decoded once it ends)."""
        try:
            return pipeline.synthesize(self.scheduler.tts, self.plan, progress, decode, frames=self._frames)
        finally:
            self._finish()

    def cancel(self) -> None:
        """Stop now: the rows leave the batch at the next boundary; the iteration ends."""
        self.cancelled = True
        self._finish()  # its place is free now: its rows leave the batch at the next boundary
        for job in list(self._jobs):
            job.cancelled = True
            if job.slot is not None:
                job.slot.cancelled = True
        feed = self.plan.request.feed
        if feed is not None:
            feed.cancel()
        self.scheduler._wake()

    # -- internals -------------------------------------------------------------------------------

    def _start_stream(self) -> SpeechStream:
        tts = self.scheduler.tts
        if self.plan.request.feed is not None:
            self.plan.request.feed.add_listener(self.scheduler._wake)
            return pipeline.stream_feed(tts, self.plan, frames=self._frames)
        return pipeline.stream(tts, self.plan, frames=self._frames)

    def _frames(self, row):
        """Run ``row`` in the shared batch: (0, frame) per kept frame, then (0, None)."""
        if self.cancelled:
            raise RequestCancelled()
        job = _RowJob(row, self.plan.sampling, self)
        self._jobs.append(job)
        self.scheduler._enqueue(job)
        ended = False
        try:
            while True:
                item = job.frames.get()
                if item is None:
                    ended = True
                    if self.cancelled:
                        raise RequestCancelled()
                    yield 0, None
                    return
                if isinstance(item, BaseException):
                    ended = True
                    if self.cancelled:  # e.g. its text feed, cancelled with it
                        raise RequestCancelled()
                    raise item
                yield 0, item
        finally:
            self._jobs.remove(job)
            if not ended:  # the consumer stopped early: the row leaves the batch
                job.cancelled = True
                if job.slot is not None:
                    job.slot.cancelled = True
                self.scheduler._wake()

    def _finish(self) -> None:
        with self.scheduler._cond:  # a cancel() racing the consumer's own end releases once
            if self._done:
                return
            self._done = True
        self.scheduler._release()

    def __del__(self):
        # A handle dropped without being consumed must not hold its place in the queue.
        try:
            self._finish()
        except Exception:  # noqa: BLE001 (interpreter shutdown)
            pass


class Scheduler:
    """Owns one loaded TTS and runs every submitted request's rows in one dynamic batch."""

    def __init__(self, tts, max_batch: int = DEFAULT_MAX_BATCH, max_queue: int = DEFAULT_MAX_QUEUE):
        if max_batch < 1 or max_queue < 0:
            raise ValueError("max_batch must be at least 1 and max_queue at least 0")
        self.tts, self.max_batch, self.max_queue = tts, max_batch, max_queue
        self._cond = threading.Condition()
        self._inbox: deque[_RowJob] = deque()
        self._open = 0  # requests submitted and not finished
        self._closed = False
        self._batch: ContinuousBatch | None = None
        self._died: str | None = None  # why the worker stopped, when it was not closed
        self._calls: deque[_WorkerCall] = deque()
        self._thread = threading.Thread(target=self._work, name="qwen3tts-scheduler", daemon=True)
        self._thread.start()

    def submit(self, text, **options) -> SpeechHandle:
        """Check the request now (RequestError in the caller's thread), then queue it; BusyError
        when ``max_batch + max_queue`` requests are already open."""
        tts = self.tts
        plan = tts.resolve(tts.request(text, **options))
        with self._cond:
            if self._closed:
                raise self._closed_error()
            if self._open >= self.max_batch + self.max_queue:
                raise BusyError(f"busy: {self._open} requests are running or waiting (at most "
                                f"{self.max_batch} run and {self.max_queue} wait); try again shortly")
            self._open += 1
        return SpeechHandle(self, plan)

    def synthesize_all(self, requests, progress=None, decode: bool = True):
        """Every request's whole utterance, as each ends: yields ``(index, SynthesisResult)``, or
        ``(index, exception)`` for a request that failed (the others go on), in the order they end.

        Up to ``max_batch`` of them run at once, each consumed by a thread of its own, so a request
        joins the batch as soon as another leaves. ``progress(index)`` may return that request's
        per-frame callback. Closing the iterator early (or an exception in the caller, Ctrl-C
        included) cancels the requests still running and waits for their threads."""
        requests = list(requests)
        order = iter(range(len(requests)))
        lock = threading.Lock()
        done: queue.SimpleQueue = queue.SimpleQueue()
        running: dict[int, SpeechHandle] = {}
        stop = threading.Event()

        def consume() -> None:
            while not stop.is_set():
                with lock:
                    i = next(order, None)
                if i is None:
                    return
                try:
                    handle = self.submit(requests[i])
                    with lock:
                        running[i] = handle
                    if stop.is_set():
                        handle.cancel()
                    outcome = handle.synthesis(progress(i) if progress is not None else None, decode)
                except BaseException as e:  # noqa: BLE001 (handed to the caller with its index)
                    outcome = e
                finally:
                    with lock:
                        running.pop(i, None)
                done.put((i, outcome))

        threads = [threading.Thread(target=consume, name="qwen3tts-request", daemon=True)
                   for _ in range(min(self.max_batch, len(requests)))]
        for t in threads:
            t.start()
        try:
            for _ in range(len(requests)):
                while True:
                    try:  # short waits: Ctrl-C reaches the caller's thread at once
                        yield done.get(timeout=0.1)
                        break
                    except queue.Empty:
                        continue
        finally:
            stop.set()
            with lock:
                for handle in running.values():
                    handle.cancel()
            for t in threads:
                t.join(30)

    def warm_up(self, text="warm-up", *, slots: int = WARM_UP_SLOTS, **options) -> float:
        """On CUDA with graphs, capture now what the first requests with these options would
        capture inside their time to first audio: the batch's frame graphs for every number of
        rows in flight, up to cache slot ``slots`` (ContinuousBatch.prepare), and the codec's
        streaming graphs. Call it before submitting. Returns the seconds spent; 0.0 on CPU or
        with graphs off."""
        import time

        tts = self.tts
        request = tts.warm_up_request(text, options)
        settings = request.sampling_settings(tts.generation_config)
        t0 = time.perf_counter()
        frames = self._in_worker(lambda batch: batch.prepare(settings, slots, stop=lambda: self._closed))
        tts.warm_up_codec(request)
        return time.perf_counter() - t0 if frames else 0.0

    def _in_worker(self, fn):
        """``fn(batch)`` run by the worker between frames; its result (or its exception) here."""
        call = _WorkerCall(fn)
        with self._cond:
            if self._closed:
                raise self._closed_error()
            self._calls.append(call)
            self._cond.notify_all()
        call.done.wait()  # the worker runs it, or fails it as it stops (it closes before draining)
        if call.error is not None:
            raise call.error
        return call.value

    @property
    def open_requests(self) -> int:
        return self._open

    @property
    def frame_counts(self) -> dict[str, int]:
        """Batch frames run so far: ``frames``, of which ``lane_frames`` ran as one LaneStep and
        ``graphed_frames`` as a CUDA-graph replay (bench, tests)."""
        batch = self._batch
        names = ("frames", "lane_frames", "graphed_frames")
        return {k: getattr(batch, k) if batch is not None else 0 for k in names}

    def close(self) -> None:
        """Stop the worker; rows still running end with an error."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
        self._thread.join(10)

    def __enter__(self) -> "Scheduler":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- between threads -------------------------------------------------------------------------

    def _enqueue(self, job: _RowJob) -> None:
        with self._cond:
            if self._closed:
                job.fail(self._closed_error())
                return
            self._inbox.append(job)
            self._cond.notify_all()

    def _closed_error(self) -> RuntimeError:
        return RuntimeError("the scheduler is closed" if self._died is None else self._died)

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _release(self) -> None:
        with self._cond:
            self._open -= 1
            self._cond.notify_all()  # the worker may be waiting for an idle moment

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        batch, jobs, error = None, {}, None
        try:
            tts = self.tts
            device = tts.talker.codec_head.weight.device  # indexed (cuda:N), whatever tts.device says
            if device.type == "cuda":  # this thread's kernels, replays and captures on the model's GPU
                torch.cuda.set_device(device)
            batch = ContinuousBatch(tts.talker, tts.predictor, tts.cfg.talker.codec_eos_token_id, self.max_batch,
                                    cuda_graphs=tts.runtime.cuda_graphs)
            self._batch = batch
            with torch.inference_mode():
                self._loop(batch, jobs)
        except BaseException as e:  # noqa: BLE001 (the worker died: everyone waiting hears why)
            error = e
        finally:
            with self._cond:
                self._closed = True
                if error is not None:
                    self._died = f"the scheduler stopped: {type(error).__name__}: {error}"
            why = RuntimeError("the scheduler was closed" if error is None else self._died)
            if batch is not None:
                self._fail_rows(batch, jobs, why)
            with self._cond:
                for job in self._inbox:
                    job.fail(why)
                self._inbox.clear()
                for call in self._calls:
                    call.error = why
                    call.done.set()
                self._calls.clear()

    @staticmethod
    def _fail_rows(batch: ContinuousBatch, jobs: dict, error: BaseException) -> None:
        """Every row in the batch ends with ``error``; their lanes are free."""
        for slot in batch.active:
            batch.slots[slot.index] = None
            job = jobs.pop(slot.index, None)
            if job is not None:
                job.fail(error)

    def _idle(self, batch) -> bool:
        """Nothing to do and no request open: time to capture the graphs a grown cache lost."""
        return (not self._closed and not self._inbox and not batch.active and not self._calls
                and self._open <= 0 and batch.stale)

    def _loop(self, batch: ContinuousBatch, jobs: dict) -> None:
        while True:
            with self._cond:
                while (not self._closed and not self._inbox and not batch.active and not self._calls
                       and not self._idle(batch)):
                    self._cond.wait()
                if self._closed:
                    return
                idle = self._idle(batch)
                calls = [self._calls.popleft() for _ in range(len(self._calls))]
                joining = [self._inbox.popleft() for _ in range(min(batch.free, len(self._inbox)))]
            if idle:  # a request arriving ends it; the rest is done at the next idle moment
                try:
                    batch.prepare_again(stop=lambda: bool(self._inbox) or bool(self._calls) or self._closed)
                except Exception as e:  # noqa: BLE001 (optional work: the batch goes on without graphs)
                    batch.drop_graphs(e)
                continue
            for call in calls:
                call.run(batch)
            for job in joining:
                if job.cancelled:
                    job.emit(None)
                    continue
                try:
                    job.slot = batch.join(job.row, job.settings, job.emit)
                    jobs[job.slot.index] = job
                    if job.cancelled:
                        job.slot.cancelled = True
                except Exception as e:  # this request's prompt or cache: its failure only
                    job.fail(e)
            try:
                moved = batch.step()
            except Exception as e:  # a batched step: every row in it fails, the worker goes on
                self._fail_rows(batch, jobs, e)
                continue
            if not moved and batch.active:
                with self._cond:  # every row waits for text: a feed, a cancel or a new row wakes us
                    if not self._inbox or not batch.free:
                        self._cond.wait(0.05)
