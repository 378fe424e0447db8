"""The app itself: every command registered, each with -q, and --version."""

import typer
from typer.testing import CliRunner

from qwen3tts_cli import __version__
from qwen3tts_cli.cli.main import app

runner = CliRunner()


def all_commands(group, prefix=()):
    for name, command in group.commands.items():
        if hasattr(command, "commands"):
            yield from all_commands(command, prefix + (name,))
        else:
            yield " ".join(prefix + (name,)), command


def test_every_command_accepts_quiet():
    commands = dict(all_commands(typer.main.get_command(app)))
    assert sorted(commands) == ["bench", "bulk", "decode", "download", "encode", "serve", "stream", "synth",
                                "verify", "voice create", "voice info"]
    for name, command in commands.items():
        flags = {opt for p in command.params for opt in p.opts}
        assert {"-q", "--quiet"} <= flags, name


def test_version():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout == f"qwen3tts {__version__}\n"
    import importlib.metadata

    assert __version__ == importlib.metadata.version("qwen3tts-cli")  # one version, the package's


def test_quiet_verify(tiny_checkpoint):
    folder = str(tiny_checkpoint("0.6B-CustomVoice"))
    r = runner.invoke(app, ["verify", folder, "-q"])
    assert r.exit_code == 0 and r.output == ""
    r = runner.invoke(app, ["verify", folder])
    assert r.exit_code == 0 and "all 16 checks hold" in r.stderr
