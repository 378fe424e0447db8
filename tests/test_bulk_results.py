"""bulk/results.py: the output folder's one-job lock, results.jsonl and what counts as complete."""

import hashlib
import json

import pytest

from qwen3tts_cli.bulk.results import RESULTS_NAME, OutputFolder, RowResult
from qwen3tts_cli.errors import InputError


def test_write_then_complete_only_while_the_file_matches(tmp_path):
    with OutputFolder(tmp_path / "out") as out:
        written = out.write(RowResult("a", seconds=1.0, frames=12, stop_reason="eos", replica="h:1"), b"RIFF-a")
        out.write(RowResult("b", error="unknown speaker 'x'"), None)
        out.write(RowResult("c", seconds=1.0), b"RIFF-c")
        assert written.path == "a.wav" and written.sha256 == hashlib.sha256(b"RIFF-a").hexdigest()
        assert (out.folder / "a.wav").read_bytes() == b"RIFF-a"
        assert out.complete(["a", "b", "c", "d"]) == {"a", "c"}
        (out.folder / "c.wav").write_bytes(b"changed")  # edited after the job: no longer complete
        (out.folder / "a.wav.extra").write_bytes(b"x")
        assert out.complete(["a", "b", "c"]) == {"a"}
    lines = [json.loads(line) for line in (tmp_path / "out" / RESULTS_NAME).read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b", "c"]
    assert set(lines[0]) >= {"id", "path", "seconds", "frames", "stop_reason", "truncated", "sha256", "error",
                             "replica", "time"}
    assert lines[1]["error"] == "unknown speaker 'x'" and lines[1]["path"] is None
    assert lines[0]["time"].endswith("Z")


def test_latest_line_wins_and_a_cut_off_line_is_ignored(tmp_path):
    with OutputFolder(tmp_path) as out:
        out.write(RowResult("a", error="failed first"), None)
        out.write(RowResult("a"), b"ok")
    with open(tmp_path / RESULTS_NAME, "ab") as f:
        f.write(b'{"id": "b", "path": "b.w')  # a crash mid-line
    with OutputFolder(tmp_path) as out:
        assert out.complete(["a", "b"]) == {"a"}
        out.write(RowResult("b"), b"ok-b")  # the next line starts on a line of its own
        assert out.complete(["a", "b"]) == {"a", "b"}
    assert (tmp_path / RESULTS_NAME).read_text().splitlines()[-1].startswith('{"id": "b"')


def test_one_job_per_folder(tmp_path):
    with OutputFolder(tmp_path):
        with pytest.raises(InputError, match="another bulk job is writing to this folder"):
            with OutputFolder(tmp_path):
                pass
    with OutputFolder(tmp_path):  # free again once the first job ends
        pass


def test_a_file_is_not_a_folder(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(InputError, match="is a file"):
        OutputFolder(tmp_path / "f")
