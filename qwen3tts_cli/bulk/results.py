"""A bulk job's output folder: the WAVs, ``results.jsonl`` and the lock that keeps it to one job.

Only the job's driver writes here (replicas hand their audio back to it), so every file has one
writer. A WAV is written under a temporary name and renamed into place; then its line is appended
to results.jsonl. A row is complete when its latest line has no error, was made from the same
request (text and options), and names a file whose SHA-256 is the one recorded: a rerun skips
exactly those, and redoes a row whose text or options changed, or whose file was removed, changed
or never finished (a crash between the rename and the line leaves a file without a line: the row
is done again and the file replaced).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..errors import InputError
from ..io.files import atomic_file

RESULTS_NAME = "results.jsonl"
LOCK_NAME = ".qwen3tts-bulk.lock"


@dataclass
class RowResult:
    """One line of results.jsonl."""

    id: str
    path: str | None = None  # the WAV, relative to the output folder (None when the row failed)
    seconds: float = 0.0  # of audio
    frames: int = 0
    stop_reason: str | None = None
    truncated: str | None = None  # why the audio is cut short (the runaway guard), if it is
    sha256: str | None = None  # of the WAV file
    error: str | None = None  # why the row failed; None when it succeeded
    replica: str | None = None  # host:pid of the replica that made it
    request: str | None = None  # fingerprint of the text and options that made it (a rerun redoes a changed row)
    time: str = ""  # when the row was written, UTC, ISO 8601 with milliseconds
    synthesis_s: float = 0.0  # wall seconds the replica spent on it
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def sha256_of(path: Path) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return None
    return h.hexdigest()


class OutputFolder:
    """OUT_DIR, held by this job (an exclusive lock: a second job on it is refused) while open."""

    def __init__(self, folder: str | Path):
        """Checks the folder can be made or written (no change to the disk until the job opens it)."""
        self.folder = Path(folder)
        existing = next((p for p in (self.folder, *self.folder.parents) if p.exists()), Path("."))
        if not existing.is_dir():
            raise InputError(f"{existing}: is a file; --dir names a folder for the job's WAVs")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise InputError(f"{existing}: folder is not writable")
        self.results_path = self.folder / RESULTS_NAME
        self._lock = None
        self._log = None

    def __enter__(self) -> "OutputFolder":
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise InputError(f"{self.folder}: cannot create folder ({e.strerror})") from None
        self.check_targets(())  # the lock and results.jsonl, again: now the folder is there
        fd = os.open(self.folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self._lock = os.fdopen(fd, "r+")
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self._lock.close()
            if e.errno in (errno.EAGAIN, errno.EACCES):
                raise InputError(f"{self.folder}: another bulk job is writing to this folder; wait for it "
                                 "or choose another --dir") from None
            raise
        return self

    def __exit__(self, *exc) -> None:
        if self._log is not None:
            self._log.close()
        if self._lock is not None:
            self._lock.close()

    def latest(self) -> dict[str, dict]:
        """Each id's latest line of results.jsonl (a line cut off by a crash is ignored)."""
        latest: dict[str, dict] = {}
        try:
            with open(self.results_path, "rb") as f:
                for raw in f:
                    try:
                        record = json.loads(raw)
                    except (ValueError, RecursionError):  # a damaged or foreign line: not ours
                        continue
                    if isinstance(record, dict) and isinstance(record.get("id"), str):
                        latest[record["id"]] = record
        except FileNotFoundError:
            pass
        return latest

    def complete(self, requests: dict[str, str]) -> set[str]:
        """The ids whose row is done: ``requests`` maps each id to its request's fingerprint (the
        text and every option that shapes its audio); a row is done when its latest line is a
        success for that same request and OUT_DIR/<id>.wav still has the SHA-256 recorded."""
        latest = self.latest()
        done = set()
        for rid, request in requests.items():
            record = latest.get(rid)
            if (record is None or record.get("error") is not None or record.get("request") != request
                    or record.get("path") != self.wav_path(rid).name or not isinstance(record.get("sha256"), str)):
                continue
            if sha256_of(self.wav_path(rid)) == record["sha256"]:
                done.add(rid)
        return done

    def wav_path(self, rid: str) -> Path:
        return self.folder / f"{rid}.wav"

    def check_targets(self, ids) -> None:
        """Refuse, before any work, a job whose files would land on something that is not a regular
        file (a folder, a FIFO, a symlink that would be followed out of OUT_DIR)."""
        for path in (self.results_path, self.folder / LOCK_NAME, *(self.wav_path(rid) for rid in ids)):
            try:
                mode = path.lstat().st_mode
            except FileNotFoundError:
                continue
            except OSError as e:
                raise InputError(f"{path}: cannot check it ({e.strerror})") from None
            if not stat.S_ISREG(mode):
                kind = ("a folder" if stat.S_ISDIR(mode) else "a symbolic link" if stat.S_ISLNK(mode) else
                        "not a regular file")
                raise InputError(f"{path}: is {kind}; a bulk job writes only regular files into its folder: "
                                 "move it away")

    def write(self, result: RowResult, wav: bytes | None) -> RowResult:
        """Put a finished row in place: its WAV (atomically) when it has one, then its line."""
        if wav is not None:
            path = self.wav_path(result.id)
            with atomic_file(path, follow_links=False) as f:  # a link at <id>.wav is replaced, not followed
                f.write(wav)
            result.path, result.sha256 = path.name, hashlib.sha256(wav).hexdigest()
        now = time.time()
        result.time = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"
        self._append(result)
        return result

    def _append(self, result: RowResult) -> None:
        if self._log is None:
            self._log = open(self.results_path, "ab")
            # A line cut off by a crash: end it, so that the next line stands on its own.
            if self._log.tell() > 0:
                with open(self.results_path, "rb") as f:
                    f.seek(-1, os.SEEK_END)
                    if f.read(1) != b"\n":
                        self._log.write(b"\n")
        self._log.write(json.dumps(asdict(result), ensure_ascii=False).encode("utf-8") + b"\n")
        self._log.flush()
        os.fsync(self._log.fileno())

