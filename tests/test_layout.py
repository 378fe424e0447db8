"""The package's floors (docs/architecture.md): who may import whom, and what the engine never loads."""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "qwen3tts_cli"
BASE = "(base)"  # errors.py, runtime.py, __init__.py
# Each folder and the folders it may import from (besides itself and the base modules).
ALLOWED = {
    BASE: set(),
    "io": set(),
    "text": set(),
    "model": {"io"},
    "codec": {"io", "model"},
    "voice": {"io", "text", "codec"},  # text: a clone transcript is checked as any text is
    "engine": {"io", "text", "model", "codec", "voice"},
    "bench": {"io", "model", "codec", "engine"},
    "cli": {"io", "text", "voice", "codec", "engine", "bench", "server", "bulk"},
    "server": {"io", "text", "voice", "codec", "engine"},
    "bulk": {"io", "voice", "engine"},  # ray only inside ray_job's functions: the [ray] extra
}
FRONT_DOOR_PACKAGES = ("typer", "rich", "click", "fastapi", "starlette", "uvicorn", "ray")


def _folder(parts: list[str]) -> str:
    return parts[0] if parts and (PACKAGE / parts[0]).is_dir() else BASE


def _imports():
    """(importing folder, imported folder, file) for every relative import in the package."""
    for f in sorted(PACKAGE.rglob("*.py")):
        rel = list(f.relative_to(PACKAGE).with_suffix("").parts)
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level:
                base = rel[:-1][:len(rel) - node.level]
                target = base + (node.module.split(".") if node.module else [node.names[0].name])
                yield _folder(rel), _folder(target), f.relative_to(PACKAGE)


def test_every_import_goes_down_a_floor():
    seen = set()
    for src, dst, where in _imports():
        seen.add(src)
        assert dst in {src, BASE} | ALLOWED[src], f"{where}: {src} must not import {dst}"
    assert seen | {BASE} == set(ALLOWED)  # the table names every folder there is


def test_the_engine_loads_no_front_door_package():
    # Everything but the front doors (the command line, the server), imported and used a little:
    # none of typer, rich, click or a server / cluster package comes along.
    code = ("import sys, pkgutil, importlib, qwen3tts_cli\n"
            "for m in pkgutil.walk_packages(qwen3tts_cli.__path__, 'qwen3tts_cli.'):\n"
            "    if not m.name.startswith(('qwen3tts_cli.cli', 'qwen3tts_cli.server')):\n"
            "        importlib.import_module(m.name)\n"
            "from qwen3tts_cli.engine import SpeechRequest, load_tts\n"
            "SpeechRequest('Hello.', seed=1)\n"
            f"print(sorted(p for p in {FRONT_DOOR_PACKAGES!r} if p in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_command_line_starts_without_torch():
    # `qwen3tts --help` and argument errors must not wait a second or more for torch to import.
    code = "import sys, qwen3tts_cli.cli.main\nprint('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False False"
