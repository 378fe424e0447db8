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

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import Qwen3TTSError
from .manifest import Manifest, ManifestRow
from .replica import JobSpec, Replica, row_request
from .results import OutputFolder, RowResult


class BulkJob:
    def __init__(self, manifest: Manifest, folder: OutputFolder, spec: JobSpec, cfg, gen, model_key: str = "",
                 allow_truncation: bool = False):
        """``model_key``: what identifies the model and its precision (model_key()), part of every
        row's request fingerprint. The caller has run ``folder.check_targets`` on the manifest's ids
        (the command does it before the model loads)."""
        self.manifest, self.folder, self.allow_truncation = manifest, folder, allow_truncation
        voices, voice_errors = _voice_files(manifest.rows)
        self.spec = replace(spec, voices=voices)
        # A voice by its content: the same file edited makes its rows new requests.
        voice_ids = {None: _voice_digest(spec.voice), **{p: _voice_digest(v) for p, v in voices.items()}}
        self.requests = {r.id: self._fingerprint(r, model_key, voice_ids.get(r.voice, r.voice))
                         for r in manifest.rows}
        done = folder.complete(self.requests)
        rows = [r for r in manifest.rows if r.id not in done]
        self.skipped = len(manifest.rows) - len(rows)
        self.todo: list[ManifestRow] = []
        self.refused: list[RowResult] = []  # failed before running: recorded by run()
        for row in rows:
            try:
                if row.voice in voice_errors:
                    raise voice_errors[row.voice]
                row_request(self.spec, row).resolve(cfg, gen)
            except Qwen3TTSError as e:
                self.refused.append(RowResult(row.id, error=str(e), request=self.requests[row.id]))
                continue
            self.todo.append(row)

    def _fingerprint(self, row: ManifestRow, model_key: str, voice: str | None) -> str:
        """The text and every option that shapes a row's audio, as one SHA-256."""
        what = {"text": row.text, "speaker": row.speaker, "language": row.language, "instruct": row.instruct,
                "seed": row.seed, "voice": voice, "defaults": self.spec.defaults, "model": model_key}
        return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode("utf-8")).hexdigest()

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
            result.request = self.requests[result.id]
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


def model_key(folder: Path, dtype: str | None) -> str:
    """What identifies a model folder's audio: its configs and the names and sizes of its weight
    files (not their SHA-256: gigabytes to read at every start), and the precision asked for."""
    h = hashlib.sha256(str(dtype).encode())
    for name in ("config.json", "generation_config.json", "speech_tokenizer/config.json"):
        try:
            h.update(name.encode() + (folder / name).read_bytes())
        except OSError:
            h.update(name.encode() + b"-")
    for weights in sorted(folder.rglob("*.safetensors")):
        h.update(f"{weights.relative_to(folder)}:{weights.stat().st_size}".encode())
    return h.hexdigest()


def _voice_digest(voice) -> str | None:
    """A voice's content as a SHA-256: a VoicePrompt's tensors and transcript, or a reference
    recording's samples and options; None without one."""
    if voice is None:
        return None
    import numpy as np

    h = hashlib.sha256(type(voice).__name__.encode())
    for name in ("mode", "ref_text", "xvector_only", "model_size"):
        h.update(f"{name}={getattr(voice, name, None)!r};".encode())
    for name in ("xvector", "ref_codes"):
        t = getattr(voice, name, None)
        if t is not None:
            h.update(t.detach().cpu().contiguous().numpy().tobytes())
    audio = getattr(voice, "audio", None)
    if isinstance(audio, tuple):  # a CloneReference read: (samples, sample rate)
        h.update(np.ascontiguousarray(audio[0]).tobytes() + str(audio[1]).encode())
    elif audio is not None:
        h.update(str(audio).encode())
    return h.hexdigest()


def _voice_files(rows) -> tuple[dict, dict]:
    """Each voice file the rows name, read once: ({path: VoicePrompt}, {path: the error reading it})."""
    from ..errors import InputError
    from ..voice.clone import load_voice

    voices, errors = {}, {}
    for path in sorted({r.voice for r in rows if r.voice is not None}):
        try:
            voices[path] = load_voice(path)  # checked against the model with each row's request
        except Qwen3TTSError as e:
            errors[path] = e
        except OSError as e:  # e.g. a name too long for the file system
            errors[path] = InputError(f"{path}: cannot read ({e.strerror or e})")
    return voices, errors
