"""`qwen3tts bulk --ray local` on a real local Ray cluster (2 replicas of the tiny model, one CPU
each): files equal `synth`, a bad row is recorded, a rerun skips finished rows, and a replica killed
mid-job neither loses nor duplicates a row."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from typer.testing import CliRunner

from qwen3tts_cli.bulk.results import RESULTS_NAME
from qwen3tts_cli.cli.main import app

pytest.importorskip("ray.data")
pytestmark = pytest.mark.slow

RAY = ["--ray", "local", "--replicas", "2", "--cpus-per-replica", "1", "-b", "2"]
COMMON = ["--greedy", "--device", "cpu", "--language", "english"]


def rows(n: int, frames_hint: str = "") -> list[dict]:
    return [{"id": f"row-{i:02d}", "text": f"Row number {i} is spoken here{frames_hint}.",
             **({"speaker": "vivian"} if i % 3 == 0 else {})} for i in range(n)]


def write_manifest(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def bulk(ck, manifest, out, *extra, wait=True):
    cmd = [sys.executable, "-m", "qwen3tts_cli.cli", "bulk", manifest, "-m", ck, "-d", str(out), *COMMON, *RAY,
           *extra]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if not wait:
        return p
    stdout, stderr = p.communicate(timeout=600)
    return p.returncode, stderr


def results(folder):
    return [json.loads(line) for line in (folder / RESULTS_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def ck(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-CustomVoice"))


def test_ray_files_equal_synth_bad_row_recorded_rerun_skips(ck, tmp_path):
    records = rows(6) + [{"id": "bad", "text": "Unknown speaker.", "speaker": "nobody"}]
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    out = tmp_path / "out"
    code, stderr = bulk(ck, manifest, out, "--max-frames", "10")
    assert code == 1, stderr
    assert "7 rows: 0 already complete, 1 refused, 6 to synthesize on 2 replica(s)" in stderr
    assert stderr.strip().splitlines()[-1].startswith("error: 1 of 7 rows failed: bad"), stderr
    lines = {x["id"]: x for x in results(out)}
    assert sorted(lines) == sorted(r["id"] for r in records) and len(results(out)) == len(records)
    assert "unknown speaker 'nobody'" in lines["bad"]["error"]
    # Each replica runs one torch thread (--cpus-per-replica 1): synth with one thread gives the
    # same bytes (the codes are the same at any thread count; float sums are not).
    runner, threads = CliRunner(), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for r in records[:-1]:
            s = runner.invoke(app, ["synth", r["text"], "-m", ck, "-o", str(tmp_path / "s.wav"), *COMMON,
                                    "--max-frames", "10", *(["--speaker", r["speaker"]] if "speaker" in r else [])])
            assert s.exit_code == 0, s.output
            assert (out / f"{r['id']}.wav").read_bytes() == (tmp_path / "s.wav").read_bytes(), r["id"]
            assert lines[r["id"]]["frames"] == 10 and lines[r["id"]]["replica"]
    finally:
        torch.set_num_threads(threads)
    # The rerun starts no cluster for the finished rows: only the bad row is tried again.
    code, stderr = bulk(ck, manifest, out, "--max-frames", "10")
    assert code == 1 and "7 rows: 6 already complete, 1 refused, 0 to synthesize" in stderr, stderr
    assert [x["id"] for x in results(out)[len(records):]] == ["bad"]


def test_a_killed_replica_neither_loses_nor_duplicates_a_row(ck, tmp_path):
    records = rows(12, ", with a few more words to say")
    manifest = write_manifest(tmp_path / "m.jsonl", records)
    out = tmp_path / "out"
    job = bulk(ck, manifest, out, "--max-frames", "40", wait=False)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and not ((out / RESULTS_NAME).exists() and results(out)):
            assert job.poll() is None, job.communicate()
            time.sleep(0.1)
        first = results(out)
        assert 0 < len(first) < len(records)  # results stream back while the job runs
        victim = int(first[0]["replica"].rsplit(":", 1)[1])
        os.kill(victim, signal.SIGKILL)
        _, stderr = job.communicate(timeout=600)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0, stderr
    lines = results(out)
    assert sorted(x["id"] for x in lines) == sorted(r["id"] for r in records)  # each once: none lost, none twice
    assert all(x["error"] is None and x["frames"] > 0 and x["stop_reason"] in ("eos", "max_frames") for x in lines)
    assert len({x["replica"] for x in lines}) >= 2
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".wav") == sorted(f"{r['id']}.wav" for r in records)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_an_existing_cluster_joined_with_auto(ck, tmp_path):
    import socket

    ray_cli = os.path.join(os.path.dirname(sys.executable), "ray")
    with socket.socket() as s:  # a free port: a cluster someone else runs on 6379 stays out of it
        s.bind(("", 0))
        port = s.getsockname()[1]
    start = subprocess.run([ray_cli, "start", "--head", "--port", str(port), "--num-cpus", "2",
                            "--include-dashboard=false", "--disable-usage-stats"],
                           capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stderr
    try:
        records = rows(4)
        cmd = [sys.executable, "-m", "qwen3tts_cli.cli", "bulk", write_manifest(tmp_path / "m.jsonl", records), "-m",
               ck, "-d", str(tmp_path / "out"), *COMMON, "--max-frames", "6", "--ray", "auto", "--replicas", "2"]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert p.returncode == 0, p.stderr
        assert "on 2 replica(s) (Ray: auto)" in p.stderr and p.stdout == ""
        lines = results(tmp_path / "out")
        assert sorted(x["id"] for x in lines) == sorted(r["id"] for r in records)
        assert all(x["error"] is None for x in lines)
    finally:
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True, timeout=120)
