"""Shared by the goldens scripts (our venv) and the reference drivers (the reference's venv).

Kept free of project imports so that the reference's Python can import it too.
"""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

DEFAULT_REFVENV = "/work/refvenv"


def reference_python(arg: str | None = None) -> str:
    """The reference venv's python: --refvenv (python or venv folder), else $QWEN3TTS_REFVENV, else the default."""
    py = Path(arg or os.environ.get("QWEN3TTS_REFVENV") or DEFAULT_REFVENV)
    if py.is_dir():
        py = py / "bin" / "python"
    if not py.exists():
        raise SystemExit(f"reference python not found: {py} (give --refvenv or set QWEN3TTS_REFVENV; "
                         "the README's 'Regenerating the goldens' shows how to make the venv)")
    return str(py)


def add_golden_options(ap, default_out: Path, cases: bool = False) -> None:
    """The options every goldens script takes: --refvenv, --out, --keep (and --only with ``cases``)."""
    ap.add_argument("--refvenv", default=None,
                    help="the reference venv folder or its python (default: $QWEN3TTS_REFVENV, else "
                         f"{DEFAULT_REFVENV}/bin/python)")
    ap.add_argument("--out", type=Path, default=default_out)
    ap.add_argument("--keep", type=Path, default=None,
                    help="build checkpoints (and keep raw reference outputs) in this folder")
    if cases:
        ap.add_argument("--only", nargs="*", default=None, help="case names to regenerate (default: all)")


def select_cases(cases: list, only: list[str] | None, name=lambda c: c["name"]) -> list:
    """The cases --only names (all without it); a name that is no case stops the script."""
    chosen = [c for c in cases if only is None or name(c) in only]
    unknown = set(only or ()) - {name(c) for c in chosen}
    if unknown:
        raise SystemExit(f"unknown case(s): {sorted(unknown)}; known: {[name(c) for c in cases]}")
    return chosen


def import_qwen_tts():
    """Import the official package offline in a venv without torchaudio.

    qwen_tts imports torchaudio only for its 25 Hz tokenizer, and there is no CPU torchaudio build
    for this torch. transformers must be imported before the stand-in is registered: its own
    import-time probe of torchaudio rejects a module without a spec.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    import transformers  # noqa: F401

    try:
        import torchaudio.compliance.kaldi  # noqa: F401
    except Exception:
        def fbank(*_a, **_k):
            raise RuntimeError("torchaudio is not installed (only the 25 Hz tokenizer needs it)")

        root = types.ModuleType("torchaudio")
        compliance = types.ModuleType("torchaudio.compliance")
        kaldi = types.ModuleType("torchaudio.compliance.kaldi")
        kaldi.fbank = fbank
        root.compliance, compliance.kaldi = compliance, kaldi
        sys.modules.update({"torchaudio": root, "torchaudio.compliance": compliance,
                            "torchaudio.compliance.kaldi": kaldi})
    import qwen_tts

    return qwen_tts
