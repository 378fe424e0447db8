"""What synth and stream share (cli/speech.py, cli/options.py): one run of options for both, and a
request refused from the model's configuration alone, before any weights load."""

import shutil

import pytest
from typer.testing import CliRunner

from qwen3tts_cli.cli.main import app

runner = CliRunner()


@pytest.fixture(scope="module")
def no_weights(tiny_checkpoint, tmp_path_factory):
    """A copy of a tiny CustomVoice and VoiceDesign folder without model.safetensors: anything that
    reaches the weights fails with exit 1, so an exit 2 proves the check came first."""
    out = {}
    for model in ("0.6B-CustomVoice", "1.7B-VoiceDesign"):
        folder = tmp_path_factory.mktemp(model) / "m"
        shutil.copytree(tiny_checkpoint(model), folder)
        (folder / "model.safetensors").unlink()
        out[model] = str(folder)
    return out


@pytest.mark.parametrize("command", ["synth", "stream"])
@pytest.mark.parametrize("model, args, needle", [
    ("0.6B-CustomVoice", ["-s", "bob"], "unknown speaker 'bob'; valid speakers: aiden"),
    ("0.6B-CustomVoice", ["-l", "klingon"], "unknown language 'klingon'"),
    ("0.6B-CustomVoice", ["--temperature", "-1"], "--temperature must be a finite number > 0 (got -1.0)"),
    ("0.6B-CustomVoice", ["--temperature", "inf"], "--temperature must be a finite number > 0 (got inf)"),
    ("0.6B-CustomVoice", ["--top-p", "2"], "--top-p must be in (0, 1]"),
    ("0.6B-CustomVoice", ["--top-k", "-1"], "--top-k must be >= 0 (got -1; 0 disables it)"),
    ("0.6B-CustomVoice", ["--repetition-penalty", "nan"], "--repetition-penalty must be a finite number > 0"),
    ("0.6B-CustomVoice", ["--voice", "missing.safetensors"], "missing.safetensors"),
    ("0.6B-CustomVoice", ["--seed", str(2**64)], "seed must be a whole number from 0 to 18446744073709551615"),
    ("0.6B-CustomVoice", ["--seed", "-1"], "--seed must be a whole number from 0"),
    ("0.6B-CustomVoice", ["--pause", "1e12"], "--pause must be from 0 to 60 seconds"),
    ("1.7B-VoiceDesign", [], "a VoiceDesign model needs an instruction describing the voice: give --instruct"),
    ("1.7B-VoiceDesign", ["-s", "ryan", "--instruct", "A voice."], "only CustomVoice models have built-in speakers"),
])
def test_bad_requests_are_refused_before_the_weights(no_weights, tmp_path, command, model, args, needle):
    out = tmp_path / "out.wav"
    r = runner.invoke(app, [command, "Hello there.", "-m", no_weights[model], "-o", str(out), "--device", "cpu",
                            *args])
    assert r.exit_code == 2, r.output
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0]
    assert not out.exists()


def test_a_good_request_goes_on_to_the_weights(no_weights, tmp_path):
    r = runner.invoke(app, ["synth", "Hello there.", "-m", no_weights["0.6B-CustomVoice"], "-o",
                            str(tmp_path / "out.wav"), "--device", "cpu"])
    assert r.exit_code == 1 and "model.safetensors" in r.stderr  # only the missing weights stop it


def test_clone_options_are_worded_as_flags(tiny_checkpoint, tmp_path):
    # The engine names request fields; the command line words the same rules with its flags.
    cv = str(tiny_checkpoint("0.6B-CustomVoice"))
    base = str(tiny_checkpoint("0.6B-Base"))
    cases = [
        ([base], "a Base model speaks in a cloned voice: give --ref-audio AUDIO"),
        ([base, "-s", "ryan"], "a Base model has no built-in speakers"),
        ([cv, "--ref-audio", "x.wav"], "add --ref-text \"...\", or use --xvector-only"),
        ([cv, "--ref-audio", "x.wav", "--ref-text", "Hi.", "--xvector-only"], "--ref-text is for in-context"),
        ([cv, "--ref-audio", "x.wav", "--xvector-only", "-s", "ryan"], "--speaker picks a built-in voice"),
        ([cv, "--ref-audio", "x.wav", "-s", "ryan"], "--speaker picks a built-in voice"),  # before the transcript
        ([cv, "--ref-audio", "x.wav", "--ref-text", "Hi.", "--xvector-only", "-s", "ryan"], "not both"),
    ]
    for args, needle in cases:
        r = runner.invoke(app, ["synth", "Hello.", "-m", *args, "-o", str(tmp_path / "o.wav"), "--device", "cpu"])
        assert r.exit_code == 2 and needle in r.stderr, (args, r.stderr)


def test_synth_and_stream_share_their_options():
    # One definition, same names, defaults and help, in the order each command writes them.
    def options(command):
        r = runner.invoke(app, [command, "--help"], terminal_width=200)
        return [line.split()[1] for line in r.stdout.splitlines() if line.startswith("│ --")]

    synth, stream = options("synth"), options("stream")
    shared = ["--model", "--speaker", "--language", "--instruct", "--ref-audio", "--ref-text", "--xvector-only",
              "--voice", "--greedy", "--seed", "--max-frames", "--no-split", "--max-chars", "--pause",
              "--allow-truncation", "--temperature", "--top-k", "--top-p", "--repetition-penalty"]
    for opts, before, between in ((synth, "--raw", ["--save-codes"]),
                                  (stream, "--incremental", ["--schedule", "--save-codes"])):
        i = opts.index("--model")
        assert opts[i - 1] == before and opts[i:i + len(shared)] == shared
        j = i + len(shared) + len(between)
        assert opts[i + len(shared):j] == between and opts[j:j + 2] == ["--device", "--dtype"]


def test_seeds_past_32_bits_are_their_own(tiny_checkpoint):
    cv = str(tiny_checkpoint("0.6B-CustomVoice"))

    def raw(seed):
        r = runner.invoke(app, ["synth", "Hello there.", "-m", cv, "--seed", str(seed), "--max-frames", "4", "--raw",
                                "--device", "cpu", "-q"])
        assert r.exit_code == 0, r.output
        return r.stdout_bytes

    assert raw(1) != raw(2**32 + 1) and raw(2**32 + 1) == raw(2**32 + 1) and len(raw(2**64 - 1)) == 4 * 1920 * 2
