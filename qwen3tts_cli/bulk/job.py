"""A bulk job's driver: manifest rows in, WAVs and results.jsonl out, exactly once.

    job = BulkJob(read_manifest("lines.jsonl"), folder, spec, cfg, gen)   # checks, no weights
    for result in job.run(local_rows(spec, job.todo)):                    # or ray_job.ray_rows(...)
        ...                                                               # each row as it is written

The plan is made before any weights load: rows already complete (results.py) are skipped, and a
row that cannot make a request for this model (an unknown speaker, a voice file that is missing
or made for another model) is recorded as failed without running. The rest go to the replicas;
the driver writes what comes back, once per id even if a retried batch returns a row twice.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterable, Iterator

from ..errors import Qwen3TTSError
from .manifest import Manifest, ManifestRow
from .replica import JobSpec, Replica, row_request
from .results import OutputFolder, RowResult


class BulkJob:
    def __init__(self, manifest: Manifest, folder: OutputFolder, spec: JobSpec, cfg, gen,
                 allow_truncation: bool = False):
        self.manifest, self.folder, self.allow_truncation = manifest, folder, allow_truncation
        done = folder.complete(r.id for r in manifest.rows)
        rows = [r for r in manifest.rows if r.id not in done]
        self.skipped = len(manifest.rows) - len(rows)
        voices, voice_errors = _voice_files(rows)
        self.spec = replace(spec, voices=voices)
        self.todo: list[ManifestRow] = []
        self.refused: list[RowResult] = []  # failed before running: recorded by run()
        for row in rows:
            try:
                if row.voice in voice_errors:
                    raise voice_errors[row.voice]
                row_request(self.spec, row).resolve(cfg, gen)
            except Qwen3TTSError as e:
                self.refused.append(RowResult(row.id, error=str(e)))
                continue
            self.todo.append(row)

    @property
    def total(self) -> int:
        return len(self.manifest.rows)

    def run(self, made: Iterable[tuple[RowResult, bytes | None]]) -> Iterator[RowResult]:
        """Write every row (refused ones first, then each made one as it arrives); yields each
        RowResult once it is on disk."""
        for result in self.refused:
            yield self.folder.write(result, None)
        written: set[str] = set()
        for result, wav in made:
            if result.id in written:  # a batch retried after its replica died: already written
                continue
            if result.truncated and result.error is None and not self.allow_truncation:
                result.error, wav = f"audio cut short: {result.truncated}", None
            written.add(result.id)
            yield self.folder.write(result, wav)


def local_rows(spec: JobSpec, rows: list[ManifestRow]) -> Iterator[tuple[RowResult, bytes | None]]:
    """The rows on one replica in this process."""
    if not rows:
        return
    replica = Replica(spec)
    try:
        yield from replica.run(rows)
    finally:
        replica.close()


def _voice_files(rows: list[ManifestRow]) -> tuple[dict, dict]:
    """Each voice file the rows name, read once: ({path: VoicePrompt}, {path: the error reading it})."""
    from ..voice.clone import load_voice

    voices, errors = {}, {}
    for path in sorted({r.voice for r in rows if r.voice is not None}):
        try:
            voices[path] = load_voice(path)  # checked against the model with each row's request
        except Qwen3TTSError as e:
            errors[path] = e
    return voices, errors
