"""bulk/results.py: the output folder's one-job lock, results.jsonl and what counts as complete."""

import hashlib
import json
import os

import pytest

from qwen3tts_cli.bulk.results import RESULTS_NAME, OutputFolder, RowResult
from qwen3tts_cli.errors import InputError


def test_write_then_complete_only_while_the_file_matches(tmp_path):
    with OutputFolder(tmp_path / "out") as out:
        written = out.write(RowResult("a", seconds=1.0, frames=12, stop_reason="eos", replica="h:1", request="ra"),
                            b"RIFF-a")
        out.write(RowResult("b", error="unknown speaker 'x'", request="rb"), None)
        out.write(RowResult("c", seconds=1.0, request="rc"), b"RIFF-c")
        assert written.path == "a.wav" and written.sha256 == hashlib.sha256(b"RIFF-a").hexdigest()
        assert (out.folder / "a.wav").read_bytes() == b"RIFF-a"
        requests = {"a": "ra", "b": "rb", "c": "rc", "d": "rd"}
        assert out.complete(requests) == {"a", "c"}
        assert out.complete({**requests, "a": "changed text"}) == {"c"}  # another request: made again
        (out.folder / "c.wav").write_bytes(b"changed")  # edited after the job: no longer complete
        (out.folder / "a.wav.extra").write_bytes(b"x")
        assert out.complete(requests) == {"a"}
    lines = [json.loads(line) for line in (tmp_path / "out" / RESULTS_NAME).read_text().splitlines()]
    assert [r["id"] for r in lines] == ["a", "b", "c"]
    assert set(lines[0]) >= {"id", "path", "seconds", "frames", "stop_reason", "truncated", "sha256", "error",
                             "replica", "time"}
    assert lines[1]["error"] == "unknown speaker 'x'" and lines[1]["path"] is None
    assert lines[0]["time"].endswith("Z")


def test_latest_line_wins_and_a_cut_off_line_is_ignored(tmp_path):
    with OutputFolder(tmp_path) as out:
        out.write(RowResult("a", error="failed first", request="r"), None)
        out.write(RowResult("a", request="r"), b"ok")
    with open(tmp_path / RESULTS_NAME, "ab") as f:
        f.write(b'{"id": "b", "path": "b.w')  # a crash mid-line
    requests = {"a": "r", "b": "r"}
    with OutputFolder(tmp_path) as out:
        assert out.complete(requests) == {"a"}
        out.write(RowResult("b", request="r"), b"ok-b")  # the next line starts on a line of its own
        assert out.complete(requests) == {"a", "b"}
    assert (tmp_path / RESULTS_NAME).read_text().splitlines()[-1].startswith('{"id": "b"')


def test_lines_that_do_not_vouch_for_their_own_file_are_not_complete(tmp_path):
    with OutputFolder(tmp_path) as out:
        out.write(RowResult("a", request="r"), b"ok-a")
    sha = hashlib.sha256(b"ok-a").hexdigest()
    with open(tmp_path / RESULTS_NAME, "a") as f:
        for line in ({"id": "b", "path": "a.wav", "sha256": sha, "error": None, "request": "r"},  # another row's file
                     {"id": "c", "path": 123, "sha256": "x", "error": None, "request": "r"},
                     {"id": "d", "path": ["d.wav"], "sha256": None, "error": None, "request": "r"},
                     {"id": "e", "path": "e.wav\u0000", "sha256": sha, "error": None, "request": "r"}):
            f.write(json.dumps(line) + "\n")
        f.write("[1, 2]\n" + "[" * 200_000 + "\n")
    with OutputFolder(tmp_path) as out:
        assert out.complete({k: "r" for k in "abcde"}) == {"a"}


def test_non_regular_targets_are_refused_before_any_work(tmp_path):
    (tmp_path / "dir.wav").mkdir()
    (tmp_path / "link.wav").symlink_to(tmp_path / "elsewhere.wav")
    os.mkfifo(tmp_path / "fifo.wav")
    out = OutputFolder(tmp_path)
    out.check_targets(["fine", "missing"])
    os.mkfifo(tmp_path / ".qwen3tts-bulk.lock")
    with pytest.raises(InputError, match="qwen3tts-bulk.lock: is not a regular file"):
        out.check_targets([])
    os.unlink(tmp_path / ".qwen3tts-bulk.lock")
    for rid, kind in (("dir", "a folder"), ("link", "a symbolic link"), ("fifo", "not a regular file")):
        with pytest.raises(InputError, match=f"{rid}.wav: is {kind}"):
            out.check_targets(["fine", rid])


def test_a_row_replaces_a_stale_link_not_its_target(tmp_path):
    outside = tmp_path / "outside.wav"
    outside.write_bytes(b"keep me")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "a.wav").symlink_to(outside)
    with OutputFolder(tmp_path / "out") as out:
        out.write(RowResult("a", request="r"), b"new")
    assert outside.read_bytes() == b"keep me"
    assert not (tmp_path / "out" / "a.wav").is_symlink() and (tmp_path / "out" / "a.wav").read_bytes() == b"new"


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
