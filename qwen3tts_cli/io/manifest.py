"""The folder manifest, ``.qwen3tts-manifest.json``: the size and SHA-256 of every file of a model
folder. ``download`` and scripts/make_checkpoint.py write it; ``verify`` checks a folder against
it; the model resolver trusts a cached download whose files all have their recorded sizes."""

from __future__ import annotations

import json
import os
from pathlib import Path

from ..errors import ModelError

MANIFEST_NAME = ".qwen3tts-manifest.json"
MANIFEST_FORMAT = 1


def read_manifest(folder: str | Path) -> dict | None:
    """The folder's manifest, or None when it is missing or unreadable."""
    manifest, _ = load_manifest(folder)
    return manifest


def load_manifest(folder: str | Path) -> tuple[dict | None, str | None]:
    """(manifest, None), (None, None) when there is none, or (None, what is wrong with it)."""
    from .config import read_json

    p = Path(folder) / MANIFEST_NAME
    if not p.exists():
        return None, None
    try:
        m = read_json(p)
    except ModelError as e:
        return None, str(e)
    if m.get("format") != MANIFEST_FORMAT:
        return None, f"{p}: unsupported manifest format {m.get('format')!r} (expected {MANIFEST_FORMAT})"
    if not isinstance(m.get("files"), dict):
        return None, f"{p}: manifest has no 'files' object"
    return m, None


def manifest_complete(folder: str | Path) -> bool:
    """Every file the manifest names is there with its recorded size (cheap: no hashing)."""
    m = read_manifest(folder)
    if not m or not m["files"]:
        return False
    for rel, entry in m["files"].items():
        try:
            if (Path(folder) / rel).stat().st_size != entry.get("size"):
                return False
        except OSError:
            return False
    return True


def write_manifest(folder: str | Path, manifest: dict) -> Path:
    """Write ``manifest`` (its "format" set here) into the folder atomically."""
    path = Path(folder) / MANIFEST_NAME
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps({"format": MANIFEST_FORMAT, **manifest}, indent=2, ensure_ascii=False) + "\n",
                   encoding="utf-8")
    os.replace(tmp, path)
    return path
