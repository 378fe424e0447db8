#!/usr/bin/env python3
"""Regenerate the reference goldens under tests/fixtures/goldens/ with the official qwen-tts 0.1.1.

    python scripts/make_goldens.py [all|generator|codec|clone|synth] [--refvenv PATH] ...

Each part builds its random-weight checkpoints with scripts/make_checkpoint.py's builder, runs the
official package in its own virtual environment (see README, "Regenerating the goldens") and writes
small golden files that the tests compare against without the reference installed. Arguments after
the part name go to that part (see `python scripts/goldens_<part>.py --help`).
"""

import importlib.util
import sys
from pathlib import Path

PARTS = ("generator", "codec", "clone", "synth", "formats", "rates")


def _load(part: str):
    path = Path(__file__).with_name(f"goldens_{part}.py")
    spec = importlib.util.spec_from_file_location(f"goldens_{part}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    part = argv.pop(0) if argv and not argv[0].startswith("-") else "all"
    if part not in PARTS + ("all",):
        print(f"error: unknown part '{part}' (choose from all, {', '.join(PARTS)})", file=sys.stderr)
        return 2
    for p in PARTS if part == "all" else (part,):
        print(f"== goldens: {p}", file=sys.stderr)
        rc = _load(p).main(argv)
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
