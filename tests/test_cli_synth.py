"""The `synth` command (codes-only for now)."""

import numpy as np
import torch
from typer.testing import CliRunner

from qwen3tts_cli.cli import app
from qwen3tts_cli.engine import load_tts

runner = CliRunner()


def test_list_speakers_offline_from_known_repo_and_folder(tiny_checkpoint):
    r = runner.invoke(app, ["synth", "--list-speakers", "-m", "1.7B-CustomVoice"])
    assert r.exit_code == 0, r.output
    assert "speakers: aiden, dylan, eric, ono_anna, ryan, serena, sohee, uncle_fu, vivian" in r.stdout
    assert "languages: auto, chinese, english" in r.stdout and "dialect" not in r.stdout
    r = runner.invoke(app, ["synth", "--list-speakers", "-m", str(tiny_checkpoint("1.7B-VoiceDesign"))])
    assert r.exit_code == 0 and "(none" in r.stdout


def test_save_codes_required(tiny_checkpoint):
    r = runner.invoke(app, ["synth", "Hello.", "-m", str(tiny_checkpoint("0.6B-CustomVoice")), "--speaker", "ryan"])
    assert r.exit_code == 2 and "--save-codes" in r.output


def test_synth_writes_codes_equal_to_engine(tiny_checkpoint, tmp_path):
    ck = tiny_checkpoint("0.6B-CustomVoice")
    out = tmp_path / "codes.npy"
    r = runner.invoke(app, ["synth", "-", "-m", str(ck), "--speaker", "Ryan", "--language", "ENGLISH", "--greedy",
                            "--max-frames", "4", "--save-codes", str(out), "--device", "cpu"],
                      input="Hello there, world.")
    assert r.exit_code == 0, r.output
    codes = np.load(out)
    assert codes.dtype == np.int64 and codes.shape == (4, 16)
    want = load_tts(ck).generate_codes("Hello there, world.", speaker="ryan", language="english", greedy=True,
                                       max_frames=4).codes
    assert torch.equal(torch.from_numpy(codes), want)
    assert [p.name for p in tmp_path.iterdir()] == ["codes.npy"]  # no temp file left


def test_synth_errors_leave_no_file(tiny_checkpoint, tmp_path):
    ck = str(tiny_checkpoint("0.6B-CustomVoice"))
    out = tmp_path / "codes.npy"
    r = runner.invoke(app, ["synth", "Hi.", "-m", ck, "--speaker", "bob", "--save-codes", str(out)])
    assert r.exit_code == 2 and "valid speakers" in r.output
    r = runner.invoke(app, ["synth", "Hi.", "-m", ck, "--speaker", "ryan", "--top-p", "2", "--save-codes", str(out)])
    assert r.exit_code == 2 and "top_p" in r.output
    r = runner.invoke(app, ["synth", "Hi.", "-m", ck, "--speaker", "ryan", "--save-codes", str(tmp_path / "no" / "x.npy")])
    assert r.exit_code == 2
    r = runner.invoke(app, ["synth", "Hi.", "-m", str(tmp_path / "missing"), "--save-codes", str(out)])
    assert r.exit_code != 0
    assert not out.exists()
