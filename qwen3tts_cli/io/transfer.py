"""Moving one file's bytes from the hub: a ranged HTTP GET into a partial file that survives the
process, resumed a few times within a run, then checked against the hub's SHA-256 (or git blob id)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from ..errors import DownloadError
from .repos import sha256_file

CHUNK = 1 << 20
TIMEOUT_S = 30.0  # per socket operation: a stalled connection fails and is retried from where it stopped
RETRIES = 3  # connection failures inside one run; each retry resumes with a Range request
RETRY_DELAY_S = 2.0

# progress(event, path, done, total). Events: "plan" (path = repo id, total = bytes of all files),
# "skip" (already complete), "start" (done = bytes already on disk), "advance", "verify", "done".
Progress = Callable[[str, str, int, int], None]

OFFLINE_HINT = "to work offline, pass a local model folder instead of a repo id"


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: Optional[str]  # the hub's LFS sha256; None for small files stored in git
    blob_id: Optional[str]  # git blob sha1

    @property
    def etag(self) -> str:
        # What the hub sends as ETag and what huggingface_hub names its cache blobs after.
        return self.sha256 or self.blob_id or ""


def reason(e: BaseException) -> str:
    # urllib wraps the socket error; dig for the errno text ("Connection refused", "Name or service...").
    inner = getattr(e, "reason", None)
    if isinstance(inner, BaseException):
        e = inner
    text = getattr(e, "strerror", None) or str(e) or type(e).__name__
    return text


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # We follow redirects ourselves so that the token is not sent to the CDN host.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirect())


class _Retryable(Exception):
    """A connection-level failure: the partial file is kept and the next attempt resumes."""


def _open(url: str, headers: dict[str, str], rel: str):
    auth_host = urllib.parse.urlsplit(url).netloc
    for _ in range(10):
        h = dict(headers)
        if urllib.parse.urlsplit(url).netloc != auth_host:
            h.pop("authorization", None)
            h.pop("Authorization", None)
        try:
            return _opener.open(urllib.request.Request(url, headers=h), timeout=TIMEOUT_S)
        except urllib.error.HTTPError as e:
            if e.code in (301, 302, 303, 307, 308) and e.headers.get("Location"):
                url = urllib.parse.urljoin(url, e.headers["Location"])
                e.close()
                continue
            if e.code == 416:
                return e  # the caller decides: our partial is longer than the file
            e.close()
            if e.code in (401, 403):
                raise DownloadError(f"access denied to {rel} (HTTP {e.code}): the repo is gated or private; "
                                    f"accept its conditions on the hub and set HF_TOKEN") from None
            if e.code == 404:
                raise DownloadError(f"file not found on the hub: {rel} (HTTP 404)") from None
            if e.code in (408, 429) or e.code >= 500:
                raise _Retryable(f"HTTP {e.code}") from None
            raise DownloadError(f"download of {rel} failed: HTTP {e.code}") from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as e:
            raise _Retryable(reason(e)) from None
    raise DownloadError(f"download of {rel} failed: too many redirects")


def _fetch(url: str, part: Path, f: RemoteFile, headers: dict[str, str], progress: Progress) -> str:
    """Bring ``part`` to the full size of ``f`` and return its sha256 (one attempt)."""
    h = hashlib.sha256()
    have = part.stat().st_size if part.exists() else 0
    if have > f.size:
        part.unlink()
        have = 0
    if have:
        sha256_file(part, h)  # hash the prefix now so the new bytes are hashed as they arrive
    progress("start", f.path, have, f.size)
    if have == f.size:
        return h.hexdigest()

    req = dict(headers)
    if have:
        req["Range"] = f"bytes={have}-"
    resp = _open(url, req, f.path)
    try:
        status = getattr(resp, "status", None) or resp.getcode()
        if status == 416:
            # We asked beyond the end although our partial is shorter than the listed size: the
            # partial belongs to other content. Start over on the next attempt.
            part.unlink(missing_ok=True)
            raise _Retryable("server rejected the resume range (HTTP 416)")
        if status == 206:
            m = re.match(r"bytes (\d+)-", resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != have:
                part.unlink(missing_ok=True)
                raise _Retryable("server answered a different range than asked")
            mode = "ab"
        elif status == 200:
            # The server ignored the Range header: the body is the whole file, start from zero.
            have, h, mode = 0, hashlib.sha256(), "wb"
            progress("start", f.path, 0, f.size)
        else:
            raise DownloadError(f"download of {f.path} failed: unexpected HTTP {status}")
        done = have
        with open(part, mode) as out:
            while done < f.size:
                try:
                    chunk = resp.read(min(CHUNK, f.size - done))
                except (OSError, http.client.HTTPException) as e:
                    raise _Retryable(reason(e)) from None
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                done += len(chunk)
                progress("advance", f.path, done, f.size)
            out.flush()
            os.fsync(out.fileno())
        if done < f.size:
            raise _Retryable(f"connection closed after {done} of {f.size} bytes")
        if resp.read(1):
            part.unlink(missing_ok=True)
            raise DownloadError(f"{f.path}: the hub sent more than the listed {f.size} bytes")
        return h.hexdigest()
    finally:
        resp.close()


def download_file(url: str, part: Path, f: RemoteFile, headers: dict[str, str], progress: Progress) -> str:
    """Download with a few in-run resumes; a final failure keeps the partial file for the next run."""
    for attempt in range(RETRIES + 1):
        try:
            return _fetch(url, part, f, headers, progress)
        except _Retryable as e:
            if attempt == RETRIES:
                kept = part.stat().st_size if part.exists() else 0
                raise DownloadError(
                    f"download of {f.path} interrupted ({e}); {kept} of {f.size} bytes kept, run the same "
                    f"command again to resume (check the network or HF_ENDPOINT; {OFFLINE_HINT})") from None
            time.sleep(RETRY_DELAY_S * (attempt + 1))
    raise AssertionError("unreachable")


def verify_part(part: Path, f: RemoteFile, sha256: str) -> str:
    """Check a complete partial file against the listing; return its sha256 or raise (deleting it)."""
    def bad(what: str) -> DownloadError:
        part.unlink(missing_ok=True)
        return DownloadError(f"{f.path}: {what}; the bad download was deleted, run the command again")

    size = part.stat().st_size
    if size != f.size:
        raise bad(f"size {size} does not match the hub's {f.size}")
    if f.sha256 is not None:
        if sha256 != f.sha256:
            raise bad(f"SHA-256 mismatch (hub {f.sha256}, got {sha256})")
    elif f.blob_id:
        data = part.read_bytes()  # small git files only
        if git_blob_sha1(data) != f.blob_id:
            raise bad(f"git blob SHA-1 mismatch (hub {f.blob_id})")
    return sha256
