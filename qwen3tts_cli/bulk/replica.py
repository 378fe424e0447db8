"""One replica of a bulk job: one loaded model and its scheduler, turning manifest rows into WAV
bytes. The same class runs in this process (no --ray) and as a Ray Data actor (ray_job.py).

A replica writes nothing: it hands each row's WAV back to the job's driver, the one writer of
the output folder (results.py). That also means a replica on another machine needs no shared
file system, only the model.
"""

from __future__ import annotations

import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..engine.request import SpeechRequest
from .manifest import COLUMNS, ManifestRow
from .results import RowResult

# Ray Data hands an actor this many batches at once (each a thread submitting to the one
# scheduler): while the last rows of one batch finish, the next batch's rows fill the free places.
CALLS_PER_REPLICA = 2


@dataclass(frozen=True)
class JobSpec:
    """What every replica needs, picklable (it travels to Ray actors): the model, where to run it,
    and the requests' defaults."""

    model: str  # a folder, or an official repo id each replica resolves (downloading if needed)
    device: str | None = None
    dtype: str | None = None
    max_batch: int = 1  # rows a replica synthesizes at once
    defaults: dict = field(default_factory=dict)  # SpeechRequest fields, but text and voice
    voice: Any = None  # the default voice: a VoicePrompt, a CloneReference (cloned once per replica) or None
    voices: dict = field(default_factory=dict)  # a row's voice file (absolute path) -> its VoicePrompt
    threads: int | None = None  # torch threads per replica (CPU)


def row_request(spec: JobSpec, row: ManifestRow, voice=None) -> SpeechRequest:
    """The request for ``row``: the job's defaults with the row's own fields over them (RequestError
    when they do not make a request). ``voice``: the default voice, once cloned."""
    fields = {**spec.defaults, "voice": spec.voice if voice is None else voice}
    overrides = row.overrides()
    if "voice" in overrides:
        overrides["voice"] = spec.voices[overrides["voice"]]
        fields["speaker"] = None  # a row's own voice replaces the job's speaker, not joins it
    if "speaker" in overrides:
        fields["voice"] = None
    return SpeechRequest(row.text, **{**fields, **overrides})


def row_from_dict(record: dict) -> ManifestRow:
    return ManifestRow(**{k: record.get(k) for k in COLUMNS})


# How long a replica waits for another replica on its node to finish downloading the model.
DOWNLOAD_WAIT_S = 6 * 3600


def shared_model_folder(model: str, poll_s: float = 5.0) -> Path:
    """The model's folder, downloading it on first use. Replicas on one node share its hub cache:
    one downloads while the others wait for it (the downloader lets one writer in) and then find
    the model in the cache."""
    from ..engine.load import resolve_model_folder
    from ..errors import DownloadInProgress

    deadline = time.monotonic() + DOWNLOAD_WAIT_S
    while True:
        try:
            return resolve_model_folder(model)
        except DownloadInProgress:
            if time.monotonic() > deadline:
                raise
            time.sleep(poll_s)


class Replica:
    """One loaded model and its scheduler (``spec.max_batch`` rows at once)."""

    def __init__(self, spec: JobSpec):
        import torch

        from ..engine import load_tts, parse_device
        from ..engine.scheduler import Scheduler
        from ..voice.reference import CloneReference

        if spec.threads:
            torch.set_num_threads(spec.threads)
        self.spec = spec
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.tts = load_tts(shared_model_folder(spec.model), device=parse_device(spec.device), dtype=spec.dtype)
        self.voice = None
        if isinstance(spec.voice, CloneReference):  # the same recording gives every replica the same voice
            ref = spec.voice
            self.voice = self.tts.create_voice(ref.audio, ref_text=ref.ref_text, xvector_only=ref.xvector_only)
        self.scheduler = Scheduler(self.tts, max_batch=spec.max_batch, max_queue=spec.max_batch * CALLS_PER_REPLICA)
        # On CUDA: the batch's graphs for the job's sampling settings now, not inside the first rows.
        self.scheduler.warm_up(SpeechRequest("warm-up", **spec.defaults))

    def run(self, rows: Iterable[ManifestRow]) -> Iterator[tuple[RowResult, bytes | None]]:
        """(result, WAV bytes or None) for each row, as each ends; a failed row has its error set."""
        from ..errors import Qwen3TTSError
        from ..io.audio import wav_bytes

        rows = list(rows)
        requests, started = {}, {}
        for i, row in enumerate(rows):
            try:
                requests[i] = row_request(self.spec, row, self.voice)
            except Qwen3TTSError as e:
                yield RowResult(row.id, error=str(e), replica=self.name), None
        order = list(requests)
        def starting(k):
            started[k] = time.perf_counter()  # no per-frame callback: just when the row begins

        for k, outcome in self.scheduler.synthesize_all([requests[i] for i in order], progress=starting):
            row = rows[order[k]]
            spent = round(time.perf_counter() - started.get(k, time.perf_counter()), 3)
            if isinstance(outcome, BaseException):
                what = str(outcome) if isinstance(outcome, Qwen3TTSError) else f"{type(outcome).__name__}: {outcome}"
                yield RowResult(row.id, error=what, replica=self.name, synthesis_s=spent), None
                continue
            yield (RowResult(row.id, seconds=round(outcome.seconds, 6), frames=outcome.frames,
                             stop_reason=outcome.stop_reason, truncated=outcome.truncated, replica=self.name,
                             synthesis_s=spent, warnings=list(outcome.warnings)),
                   wav_bytes(outcome.audio, outcome.sample_rate))

    def __call__(self, batch):
        """Ray Data: a pyarrow batch of manifest rows in, their results (with ``wav`` bytes) out."""
        import pyarrow as pa

        from dataclasses import asdict

        out = []
        for result, wav in self.run(row_from_dict(r) for r in batch.to_pylist()):
            out.append({**asdict(result), "wav": wav})
        return pa.Table.from_pylist(out, schema=result_schema())

    def close(self) -> None:
        self.scheduler.close()


def result_schema():
    """Ray Data's table of results (built on first use: pyarrow is the [ray] extra)."""
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("path", pa.string()), ("seconds", pa.float64()),
                      ("frames", pa.int64()), ("stop_reason", pa.string()), ("truncated", pa.string()),
                      ("sha256", pa.string()), ("error", pa.string()), ("replica", pa.string()),
                      ("request", pa.string()), ("time", pa.string()), ("synthesis_s", pa.float64()), ("warnings", pa.list_(pa.string())),
                      ("wav", pa.binary())])
