"""Checksums of a model folder: hashing its files once (large ones in parallel threads: hashlib
releases the GIL), and comparing them with the folder's own manifest and with the published
files of the official repos. Each check returns (status, detail) for the verify report."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .manifest import MANIFEST_NAME
from .repos import KNOWN_REPOS, KnownRepo, PublishedFile, metadata_dir, published_files, sha256_file

OK, FAIL, SKIP = "ok", "fail", "skip"
_PARALLEL_FROM = 1 << 26  # files above 64 MiB are hashed in their own thread


def hash_files(paths: list[Path], workers: int = 2) -> dict[Path, str | OSError]:
    """SHA-256 of each file; an unreadable file maps to its OSError instead of stopping the rest."""
    def one(p: Path) -> str | OSError:
        try:
            return sha256_file(p)
        except OSError as e:
            return e

    unique = list(dict.fromkeys(paths))
    big = [p for p in unique if file_size(p) >= _PARALLEL_FROM]
    out: dict[Path, str | OSError] = {p: one(p) for p in unique if p not in big}
    if len(big) > 1 and workers > 1:
        # Largest first, so the longest hash starts at once and the others fill the second core.
        big.sort(key=file_size, reverse=True)
        with ThreadPoolExecutor(max_workers=min(workers, len(big))) as pool:
            out.update(zip(big, pool.map(one, big)))
    else:
        out.update((p, one(p)) for p in big)
    return out


def file_size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return -1


def check_manifest(root: Path, manifest: dict | None, error: str | None,
                   digests: dict[Path, str | OSError]) -> tuple[str, str]:
    """(status, detail) of the folder against its own manifest (``error``: why it could not be read)."""
    if error is not None:
        return FAIL, error
    if manifest is None:
        return SKIP, f"no {MANIFEST_NAME}; file checksums are not recorded for this folder"
    problems: list[str] = []
    entries = manifest_entries(manifest)
    for rel, info in entries:
        p = root / rel
        want_size, want_sha = info.get("size"), info.get("sha256")
        if not safe_rel(rel):
            problems.append(f"{rel}: path outside the folder")
        elif not isinstance(want_size, int) or not isinstance(want_sha, str):
            problems.append(f"{rel}: manifest entry lacks size or sha256")
        elif not p.is_file():
            problems.append(f"{rel}: missing")
        elif file_size(p) != want_size:
            problems.append(f"{rel}: {file_size(p):,} bytes, manifest says {want_size:,}")
        else:
            got = digests.get(p)
            if isinstance(got, OSError):
                problems.append(f"{rel}: cannot read ({got.strerror})")
            elif got != want_sha.lower():
                problems.append(f"{rel}: SHA-256 mismatch (got {got[:12]}…, manifest {want_sha[:12]}…)")
    if problems:
        return FAIL, f"{len(problems)} of {len(entries)} files differ from {MANIFEST_NAME}: " + "; ".join(problems)
    return OK, f"{len(entries)} files match (size, SHA-256); {_describe_source(manifest)}"


def _describe_source(m: dict) -> str:
    if m.get("source") == "hub":
        rev = m.get("revision")
        return f"downloaded from {m.get('repo_id')}" + (f" @ {str(rev)[:12]}" if rev else "")
    if m.get("source") == "make_checkpoint":
        return f"make_checkpoint {m.get('model')} {m.get('size')} seed {m.get('seed')}"
    return f"source {m.get('source')!r}"


def _known_repo_by_id(repo_id) -> KnownRepo | None:
    if not isinstance(repo_id, str):
        return None
    return next((r for r in KNOWN_REPOS if r.repo_id.lower() == repo_id.strip().lower()), None)


def _official_config(repo: KnownRepo) -> Path:
    if repo.kind == "tokenizer":
        return metadata_dir() / "common" / "speech_tokenizer" / "config.json"
    return metadata_dir() / repo.name / "config.json"


def _same_bytes(a: Path, b: Path) -> bool:
    try:
        return a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes()
    except OSError:
        return False


def plan_published(root: Path, kind: str, manifest: dict | None) -> tuple[str, list, list[str]] | str:
    """(who claims, [(rel, PublishedFile)], notes) for files that claim to be official, or the
    reason (a str) why no file does."""
    if manifest is not None:
        source = manifest.get("source")
        if source == "make_checkpoint":
            return "random-weight checkpoint (make_checkpoint): not compared with the published weights"
        if source == "hub":
            repo = _known_repo_by_id(manifest.get("repo_id"))
            if repo is None:
                return f"{manifest.get('repo_id')} is not one of the official repos: no published checksums"
            return (f"downloaded from {repo.repo_id}", [(f.path, f) for f in published_files(repo)], [])
        return f"manifest source {source!r}: no published checksums apply"
    # No (usable) manifest: a file claims to be official when its config is byte-identical to an
    # official config and it has exactly the published size.
    claims: list[tuple[str, PublishedFile]] = []
    notes: list[str] = []
    whose: list[str] = []
    candidates: list[tuple[str, str, KnownRepo]] = []  # (config rel, weights subfolder, repo)
    if kind == "model":
        for r in KNOWN_REPOS:
            if r.kind == "model":
                candidates.append(("config.json", "", r))
        tok = next(r for r in KNOWN_REPOS if r.kind == "tokenizer")
        candidates.append(("speech_tokenizer/config.json", "speech_tokenizer/", tok))
    elif kind == "tokenizer":
        candidates += [("config.json", "", r) for r in KNOWN_REPOS if r.kind == "tokenizer"]
    for cfg_rel, sub, repo in candidates:
        if not _same_bytes(root / cfg_rel, _official_config(repo)):
            continue
        pf = repo.weights
        rel = sub + pf.path
        got = file_size(root / rel)
        if got == pf.size:
            claims.append((rel, pf))
            whose.append(f"{rel} = {repo.repo_id}")
        else:
            notes.append(f"{cfg_rel} is the official {repo.name} config, but {rel} is "
                         + (f"{got:,} bytes, not the published {pf.size:,}" if got >= 0 else "absent")
                         + ": not compared")
    if not claims:
        if notes:
            return "; ".join(notes)
        return "no manifest and no official config.json: not an official release, no published checksums apply"
    return ("by config and size: " + ", ".join(whose), claims, notes)


def check_published(root: Path, plan, digests: dict[Path, str | OSError]) -> tuple[str, str]:
    """(status, detail) of the files that claim to be official (``plan_published``) against the
    published sizes and SHA-256."""
    if isinstance(plan, str):
        return SKIP, plan
    who, claims, notes = plan
    problems: list[str] = []
    for rel, pf in claims:
        p = root / rel
        got_size = file_size(p)
        if got_size < 0:
            problems.append(f"{rel}: missing")
            continue
        if got_size != pf.size:
            problems.append(f"{rel}: {got_size:,} bytes, published {pf.size:,}")
            continue
        got = digests.get(p)
        if isinstance(got, OSError):
            problems.append(f"{rel}: cannot read ({got.strerror})")
        elif got != pf.sha256:
            problems.append(f"{rel}: SHA-256 {got[:12]}… differs from the published {pf.sha256[:12]}…")
    if problems:
        return FAIL, f"{who}: " + "; ".join(problems)
    names = ", ".join(rel for rel, _ in claims)
    extra = ("; " + "; ".join(notes)) if notes else ""
    return OK, f"{names} match the published size and SHA-256 ({who}){extra}"


def manifest_entries(manifest: dict) -> list[tuple[str, dict]]:
    return sorted((rel, info if isinstance(info, dict) else {}) for rel, info in manifest["files"].items())


def safe_rel(rel: str) -> bool:
    parts = Path(rel).parts
    return bool(parts) and not Path(rel).is_absolute() and ".." not in parts and "\\" not in rel
