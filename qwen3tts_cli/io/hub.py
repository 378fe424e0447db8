"""Fetch a model repo from the Hugging Face hub so that an interrupted download continues next run.

huggingface_hub deletes its partial file when a call fails (see docs/field-notes.md), so a killed
process or a cut connection restarts a 4 GB file from zero. We keep huggingface_hub for what it does
well (endpoint, token, repo listing with sizes and LFS sha256) and move the bytes ourselves: one
ranged GET per file into a partial file that survives the process, checked against the hub's sha256
before it is moved into place.

Default folder: the standard cache layout ``<HF_HUB_CACHE>/models--Org--Name/snapshots/<commit>``,
with blobs named by their hub etag (LFS sha256, or git blob sha1) and ``refs/<revision>`` holding the
commit. We write it ourselves rather than a private folder because then the files sit where every
Hugging Face tool looks (``hf cache ls``/``rm``, ``from_pretrained`` offline), unchanged blobs are
shared between revisions, and ``resolve_model`` finds the snapshot again from ``refs/`` without the
network. ``local_dir`` gives a plain folder of real files instead.
"""

from __future__ import annotations

import datetime
import hashlib
import os
import re
import shutil
from pathlib import Path
from typing import Optional

from ..errors import DownloadError, DownloadInProgress, InputError, ModelError
from .manifest import MANIFEST_FORMAT, MANIFEST_NAME, manifest_complete, read_manifest, write_manifest
from .repos import find_repo, sha256_file
from .transfer import (OFFLINE_HINT, TIMEOUT_S, Progress, RemoteFile, download_file, git_blob_sha1, reason,
                       verify_part)

PARTIAL_DIR = ".qwen3tts-partial"  # local_dir mode; the cache mode keeps partials in blobs/
PARTIAL_SUFFIX = ".qwen3tts-part"

# ---------------------------------------------------------------------------------------------
# Environment, read at call time: huggingface_hub reads these once at import.
# ---------------------------------------------------------------------------------------------

def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def hub_cache_dir() -> Path:
    def env_path(name: str) -> Optional[Path]:
        v = os.environ.get(name)
        return Path(os.path.expandvars(os.path.expanduser(v))) if v else None

    explicit = env_path("HF_HUB_CACHE") or env_path("HUGGINGFACE_HUB_CACHE")
    if explicit is not None:
        return explicit
    home = env_path("HF_HOME")
    if home is None:
        home = (env_path("XDG_CACHE_HOME") or Path.home() / ".cache") / "huggingface"
    return home / "hub"


def _offline() -> bool:
    v = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return v.strip().upper() in ("1", "ON", "YES", "TRUE")


def repo_cache_dir(repo_id: str) -> Path:
    return hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))


_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")
_REPO_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def cached_snapshot(repo_id: str, revision: Optional[str] = None) -> Optional[Path]:
    """The snapshot folder a revision points to in the cache, if its ref was written (no network)."""
    rc = repo_cache_dir(repo_id)
    rev = revision or "main"
    if _COMMIT_RE.match(rev):
        commit = rev
    else:
        try:
            commit = (rc / "refs" / rev).read_text().strip()
        except OSError:
            return None
    return rc / "snapshots" / commit


# ---------------------------------------------------------------------------------------------
# Listing (huggingface_hub)
# ---------------------------------------------------------------------------------------------

def _network_error_types() -> tuple[type, ...]:
    # huggingface_hub 1.x/2.x talks through httpx (2.x: the httpx2 fork), 0.x through requests.
    types: list[type] = [OSError]
    for mod, name in (("httpx2", "HTTPError"), ("httpx", "HTTPError"), ("requests", "RequestException")):
        try:
            types.append(getattr(__import__(mod), name))
        except (ImportError, AttributeError):
            pass
    return tuple(types)


def _unreachable(endpoint: str, reason: object) -> DownloadError:
    return DownloadError(
        f"cannot reach the Hugging Face hub at {endpoint} ({reason}); check the network connection "
        f"or HF_ENDPOINT, or {OFFLINE_HINT}")


def list_repo(repo_id: str, revision: Optional[str], endpoint: str) -> tuple[str, list[RemoteFile]]:
    """(commit sha, files with size, LFS sha256 and blob id) of a model repo at a revision."""
    from huggingface_hub import HfApi
    from huggingface_hub.utils import (GatedRepoError, HfHubHTTPError, OfflineModeIsEnabled,  # 0.x to 2.x
                                       RepositoryNotFoundError, RevisionNotFoundError)

    try:
        info = HfApi(endpoint=endpoint).model_info(repo_id, revision=revision, files_metadata=True,
                                                   timeout=TIMEOUT_S)
    except GatedRepoError:
        raise DownloadError(f"{repo_id} is gated: accept its conditions at {endpoint}/{repo_id} and set "
                            f"HF_TOKEN (or run `hf auth login`)") from None
    except RepositoryNotFoundError:
        raise DownloadError(f"repository not found on {endpoint}: {repo_id} (check the id; a private repo "
                            f"needs HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise DownloadError(f"revision not found in {repo_id}: {revision}") from None
    except HfHubHTTPError as e:
        status = getattr(getattr(e, "response", None), "status_code", None)
        raise DownloadError(f"the hub at {endpoint} refused to list {repo_id} (HTTP {status})") from None
    except OfflineModeIsEnabled:
        raise DownloadError(f"cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE); "
                            f"{OFFLINE_HINT}") from None
    except _network_error_types() as e:
        raise _unreachable(endpoint, reason(e)) from None
    except ValueError as e:  # a malformed answer (not JSON, missing fields)
        raise DownloadError(f"unexpected answer from {endpoint} for {repo_id}: {e}") from None

    if not info.sha or info.siblings is None:
        raise DownloadError(f"the hub at {endpoint} gave no commit or file list for {repo_id}")
    files = []
    for s in info.siblings:
        lfs = s.lfs
        size = lfs.size if lfs is not None else s.size
        if size is None:
            raise DownloadError(f"the hub at {endpoint} gave no size for {repo_id}/{s.rfilename}")
        _safe_relpath(s.rfilename)
        files.append(RemoteFile(s.rfilename, int(size), lfs.sha256.lower() if lfs is not None else None,
                                s.blob_id))
    return info.sha, files


def _safe_relpath(rel: str) -> str:
    p = Path(rel)
    if p.is_absolute() or ".." in p.parts or not rel or "\\" in rel:
        raise DownloadError(f"refusing unsafe file name from the hub: {rel!r}")
    return rel


# ---------------------------------------------------------------------------------------------
# Placing files: plain folder or HF cache snapshot
# ---------------------------------------------------------------------------------------------

class _Layout:
    """Where partials, finished files and the lock go."""

    def __init__(self, repo_id: str, commit: str, revision: Optional[str], local_dir: Optional[Path]):
        self.local = local_dir is not None
        if local_dir is not None:
            self.folder = Path(local_dir)
            self.partials = self.folder / PARTIAL_DIR
            self.lock_path = self.partials / ".lock"
        else:
            rc = repo_cache_dir(repo_id)
            self.repo_cache = rc
            self.folder = rc / "snapshots" / commit
            self.partials = rc / "blobs"
            self.lock_path = hub_cache_dir() / ".locks" / rc.name / "qwen3tts.lock"
        self.commit = commit
        self.revision = revision

    def part_path(self, f: RemoteFile) -> Path:
        return self.partials / ((f.etag or hashlib.sha1(f.path.encode()).hexdigest()) + PARTIAL_SUFFIX)

    def blob_path(self, f: RemoteFile) -> Optional[Path]:
        return None if self.local or not f.etag else self.repo_cache / "blobs" / f.etag

    def place(self, part: Path, f: RemoteFile) -> None:
        target = self.folder / f.path
        target.parent.mkdir(parents=True, exist_ok=True)
        blob = self.blob_path(f)
        if blob is None:
            os.replace(part, target)
            return
        os.replace(part, blob)
        self.link(blob, target)

    def link(self, blob: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.exists():
            target.unlink()
        try:
            os.symlink(os.path.relpath(blob, target.parent), target)
        except OSError:
            # No symlinks (Windows without developer mode): keep a real copy, as huggingface_hub does.
            shutil.copy2(blob, target)

    def write_ref(self) -> None:
        if self.local:
            return
        rev = self.revision or "main"
        if rev != self.commit:
            ref = self.repo_cache / "refs" / rev
            ref.parent.mkdir(parents=True, exist_ok=True)
            if not ref.exists() or ref.read_text().strip() != self.commit:
                ref.write_text(self.commit)


def _already_there(layout: _Layout, f: RemoteFile, old: dict) -> Optional[str]:
    """The sha256 of a file already in place (or a cached blob), or None if it must be fetched."""
    target = layout.folder / f.path
    candidates = [target]
    blob = layout.blob_path(f)
    if blob is not None:
        candidates.append(blob)
    for p in candidates:
        try:
            if p.stat().st_size != f.size:
                continue
        except OSError:
            continue
        entry = old.get(f.path)
        if (p == target and entry and entry.get("size") == f.size and f.sha256 is not None
                and entry.get("sha256") == f.sha256):
            return f.sha256  # the manifest vouches for it; skip hashing gigabytes
        if f.sha256 is not None:
            if sha256_file(p) != f.sha256:
                continue
            sha = f.sha256
        else:
            data = p.read_bytes()
            if f.blob_id and git_blob_sha1(data) != f.blob_id:
                continue
            sha = hashlib.sha256(data).hexdigest()
        if p != target:
            layout.link(p, target)
        return sha
    return None


def _noop(event: str, path: str, done: int, total: int) -> None:
    pass


def download(repo_id: str, revision: Optional[str] = None, local_dir: Optional[Path] = None,
             progress: Optional[Progress] = None) -> Path:
    """Download every file of a model repo, resumably and checked, and return its folder.

    ``repo_id`` may also be a short official name ("0.6B-Base"). Writes ``.qwen3tts-manifest.json``
    (sizes and sha256 of every file) once everything is in place.
    """
    progress = progress or _noop
    known = find_repo(repo_id)
    if known is not None:
        repo_id = known.repo_id
    if not _REPO_ID_RE.match(repo_id):
        raise InputError(f"not a Hugging Face repo id (org/name): {repo_id}")
    endpoint = hub_endpoint()
    if _offline():
        raise DownloadError(f"cannot download {repo_id}: offline mode is on (HF_HUB_OFFLINE); {OFFLINE_HINT}")

    commit, files = list_repo(repo_id, revision, endpoint)
    layout = _Layout(repo_id, commit, revision, Path(local_dir).expanduser() if local_dir is not None else None)

    from filelock import FileLock, Timeout  # a dependency of huggingface_hub in every version

    try:
        layout.partials.mkdir(parents=True, exist_ok=True)
        layout.folder.mkdir(parents=True, exist_ok=True)
        layout.lock_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"cannot create {layout.folder}: {reason(e)}") from None
    lock = FileLock(str(layout.lock_path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        raise DownloadInProgress(f"another download of {repo_id} is writing to {layout.folder}; wait for it "
                            f"to finish") from None
    try:
        _download_locked(repo_id, endpoint, layout, files, progress)
    finally:
        lock.release()
    if layout.local:
        for p in (layout.lock_path, layout.partials):
            try:
                p.unlink() if p.is_file() else p.rmdir()
            except OSError:
                pass  # still holds a partial of a failed file, or another process took the lock
    return layout.folder


def _download_locked(repo_id: str, endpoint: str, layout: _Layout, files: list[RemoteFile],
                     progress: Progress) -> None:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers

    old_manifest = read_manifest(layout.folder)
    old = old_manifest["files"] if old_manifest and old_manifest.get("repo_id") == repo_id else {}
    total = sum(f.size for f in files)
    progress("plan", repo_id, 0, total)

    shas: dict[str, str] = {}
    todo: list[RemoteFile] = []
    for f in files:
        sha = _already_there(layout, f, old)
        if sha is None:
            todo.append(f)
        else:
            shas[f.path] = sha
            progress("skip", f.path, f.size, f.size)

    manifest_path = layout.folder / MANIFEST_NAME
    if todo:
        # Files are about to change: an old manifest must not vouch for a half-updated folder.
        manifest_path.unlink(missing_ok=True)
        need = sum(f.size - (layout.part_path(f).stat().st_size if layout.part_path(f).exists() else 0)
                   for f in todo)
        free = shutil.disk_usage(layout.partials).free
        if need > free:
            raise DownloadError(f"not enough disk space in {layout.partials}: {need} bytes needed, "
                                f"{free} free")
        headers = build_hf_headers()
        for f in todo:
            part = layout.part_path(f)
            url = hf_hub_url(repo_id, f.path, revision=layout.commit, endpoint=endpoint)
            sha = download_file(url, part, f, headers, progress)
            progress("verify", f.path, f.size, f.size)
            shas[f.path] = verify_part(part, f, sha)
            layout.place(part, f)
            progress("done", f.path, f.size, f.size)

    layout.write_ref()
    manifest = {
        "format": MANIFEST_FORMAT,  # in the comparison with the old one below
        "source": "hub",
        "repo_id": repo_id,
        "revision": layout.commit,
        "endpoint": endpoint,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "files": {f.path: {"size": f.size, "sha256": shas[f.path]} for f in sorted(files, key=lambda f: f.path)},
    }
    same = (old_manifest is not None and not todo
            and {k: v for k, v in old_manifest.items() if k != "created"}
            == {k: v for k, v in manifest.items() if k != "created"})
    if not same:
        write_manifest(layout.folder, manifest)


# ---------------------------------------------------------------------------------------------
# Model spec -> folder
# ---------------------------------------------------------------------------------------------

def resolve_model(spec: str, download_missing: bool = True, progress: Optional[Progress] = None) -> Path:
    """A local model folder for ``spec``: a folder path, an official short name, or a repo id.

    A complete download is found again without the network; an incomplete one is continued
    (or, with ``download_missing=False``, reported with the command that fetches it).
    """
    local = Path(spec).expanduser()
    if local.is_dir():
        return local
    known = find_repo(spec)
    repo_id = known.repo_id if known is not None else spec.strip()
    if known is None and not _REPO_ID_RE.match(repo_id):
        if local.exists():
            raise ModelError(f"{spec}: is a file, expected a model folder (or an official name such as "
                             "0.6B-CustomVoice)")
        raise ModelError(f"model folder not found: {spec} (nor an official name: `qwen3tts download` lists them)")
    snap = cached_snapshot(repo_id)
    if snap is not None and manifest_complete(snap):
        return snap
    if not download_missing:
        raise ModelError(f"model {repo_id} is not downloaded; run `qwen3tts download {repo_id}` "
                         f"(or pass a local model folder)")
    try:
        return download(repo_id, progress=progress)
    except DownloadError as e:
        if known is None:
            raise type(e)(f"{e} (no local folder named {spec} either)") from None
        raise
