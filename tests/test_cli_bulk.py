"""`qwen3tts bulk` in this process (no --ray): every row's WAV equals `synth` with that row's options;
bad rows are recorded and the others go on; a rerun skips finished rows. Ray runs: test_bulk_ray.py."""

from __future__ import annotations

import json
import os

import pytest
import torch
from typer.testing import CliRunner

from qwen3tts_cli.bulk.results import LOCK_NAME, RESULTS_NAME, OutputFolder
from qwen3tts_cli.cli.main import app

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("reuse_loaded_models")
_loaded_models: dict = {}  # one load per model for the whole module (conftest.reuse_loaded_models)

ROWS = [
    {"id": "intro", "text": "Hello there, how are you today?"},
    {"id": "line-2", "text": "Short one.", "speaker": "vivian"},
    {"id": "zh", "text": "今天天气很好。", "speaker": "serena", "language": "chinese"},
    {"id": "nobody", "text": "An unknown speaker.", "speaker": "nobody"},
    {"id": "seeded", "text": "Sampled with a seed of its own.", "seed": 11},
]
GOOD = ["intro", "line-2", "zh", "seeded"]
COMMON = ["--max-frames", "8", "--device", "cpu", "--language", "english"]


def synth_options(row: dict) -> list[str]:
    """synth's flags for a row: the job's defaults with the row's fields over them."""
    opts = ["--greedy", "--max-frames", "8", "--device", "cpu", "--language", row.get("language", "english")]
    opts += ["--seed", str(row["seed"])] if "seed" in row else []
    return opts + (["--speaker", row["speaker"]] if "speaker" in row else [])


def write_manifest(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return str(path)


def results(folder):
    return [json.loads(line) for line in (folder / RESULTS_NAME).read_text().splitlines()]


@pytest.fixture(scope="module")
def ck(tiny_checkpoint):
    return str(tiny_checkpoint("0.6B-CustomVoice"))


@pytest.fixture(scope="module")
def synth_wavs(ck, tmp_path_factory):
    """Each good row through `qwen3tts synth` with the same options."""
    out = tmp_path_factory.mktemp("synth")
    wavs = {}
    for row in ROWS:
        if row["id"] not in GOOD:
            continue
        path = out / f"{row['id']}.wav"
        r = runner.invoke(app, ["synth", row["text"], "-m", ck, "-o", str(path), *synth_options(row)])
        assert r.exit_code == 0, r.output
        wavs[row["id"]] = path.read_bytes()
    return wavs


def run_bulk(ck, manifest, out, *extra):
    return runner.invoke(app, ["bulk", manifest, "-m", ck, "-d", str(out), "--greedy", *COMMON, *extra])


def test_rows_equal_synth_a_bad_row_is_recorded_and_a_rerun_skips(ck, synth_wavs, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", ROWS)
    out = tmp_path / "out"
    r = run_bulk(ck, manifest, out, "-b", "3")
    assert r.exit_code == 1, r.output
    assert "1 of 5 rows failed: nobody" in r.stderr and "unknown speaker 'nobody'" in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith("error: 1 of 5 rows failed")
    lines = {x["id"]: x for x in results(out)}
    assert sorted(lines) == sorted(r["id"] for r in ROWS)
    assert lines["nobody"]["path"] is None and "unknown speaker" in lines["nobody"]["error"]
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{i}.wav" for i in GOOD] + [RESULTS_NAME, LOCK_NAME])
    for rid in GOOD:
        assert (out / f"{rid}.wav").read_bytes() == synth_wavs[rid], rid
        assert lines[rid]["error"] is None and lines[rid]["frames"] == 8 and lines[rid]["seconds"] == 0.64
        assert lines[rid]["stop_reason"] == "max_frames" and lines[rid]["replica"]

    # Rerun: complete rows are skipped, the bad one is tried again (and fails again), and a file
    # that no longer has its recorded SHA-256 is made again.
    (out / "zh.wav").write_bytes(b"edited")
    r = run_bulk(ck, manifest, out, "-b", "3")
    assert r.exit_code == 1, r.output
    assert "5 rows: 3 already complete, 1 refused, 1 to synthesize" in r.stderr
    assert sorted(x["id"] for x in results(out)[len(ROWS):]) == ["nobody", "zh"]
    assert (out / "zh.wav").read_bytes() == synth_wavs["zh"]


def test_seeded_rows_sample_as_synth_does(ck, tmp_path):
    rows = [{"id": "s1", "text": "Sampled with a seed of its own.", "seed": 11},
            {"id": "s2", "text": "Sampled with a seed of its own.", "seed": 12}]
    out = tmp_path / "out"
    r = runner.invoke(app, ["bulk", write_manifest(tmp_path / "m.jsonl", rows), "-m", ck, "-d", str(out), *COMMON])
    assert r.exit_code == 0, r.output
    for row in rows:
        s = runner.invoke(app, ["synth", row["text"], "-m", ck, "-o", str(tmp_path / "s.wav"), "--seed",
                                str(row["seed"]), *COMMON])
        assert s.exit_code == 0, s.output
        assert (out / f"{row['id']}.wav").read_bytes() == (tmp_path / "s.wav").read_bytes()
    assert (out / "s1.wav").read_bytes() != (out / "s2.wav").read_bytes()


def test_greedy_rows_equal_synth(ck, synth_wavs, tmp_path):
    rows = [r for r in ROWS if r["id"] in GOOD and "seed" not in r]
    out = tmp_path / "out"
    r = run_bulk(ck, write_manifest(tmp_path / "m.jsonl", rows), out, "-b", "2")
    assert r.exit_code == 0, r.output
    assert f"{len(rows)} written, 0 skipped, 0 failed" in r.stderr
    for row in rows:
        assert (out / f"{row['id']}.wav").read_bytes() == synth_wavs[row["id"]], row["id"]


def test_csv_manifest_and_batch_size_give_the_same_files(ck, synth_wavs, tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,text,speaker,language\nintro,\"Hello there, how are you today?\",,\n"
                    "zh,今天天气很好。,serena,chinese\n", encoding="utf-8")
    r = run_bulk(ck, str(path), tmp_path / "out", "-b", "1")
    assert r.exit_code == 0, r.output
    for rid in ("intro", "zh"):
        assert (tmp_path / "out" / f"{rid}.wav").read_bytes() == synth_wavs[rid]


def test_guard_trip_fails_the_row_unless_allowed(ck, tmp_path):
    # No --max-frames: random weights never say the end token, so the runaway guard stops them.
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "long", "text": "Short one."}])
    args = ["bulk", manifest, "-m", ck, "-d", str(tmp_path / "out"), "--greedy", "--device", "cpu"]
    r = runner.invoke(app, args)
    assert r.exit_code == 1, r.output
    assert "audio cut short" in r.stderr and "--allow-truncation keeps such audio" in r.stderr
    assert not (tmp_path / "out" / "long.wav").exists()
    line = results(tmp_path / "out")[0]
    assert line["stop_reason"] == "frame_budget" and line["truncated"] and line["path"] is None
    r = runner.invoke(app, args + ["--allow-truncation"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "long.wav").exists() and results(tmp_path / "out")[-1]["truncated"]


@pytest.fixture(scope="module")
def base_voice(tiny_checkpoint, tmp_path_factory):
    from audio_clips import clip

    from qwen3tts_cli.engine import load_tts
    from qwen3tts_cli.voice.clone import save_voice

    folder = tiny_checkpoint("0.6B-Base")
    tts = load_tts(folder, device="cpu", dtype=torch.float32)
    path = tmp_path_factory.mktemp("voices") / "me.safetensors"
    save_voice(path, tts.create_voice((clip(24000), 24000), xvector_only=True))
    return str(folder), path


def test_voice_files_per_row_and_a_bad_one(base_voice, tmp_path):
    base, voice = base_voice
    (tmp_path / "voices").mkdir()
    (tmp_path / "voices" / "me.safetensors").write_bytes(voice.read_bytes())
    manifest = write_manifest(tmp_path / "m.jsonl", [
        {"id": "mine", "text": "In my own voice.", "voice": "voices/me.safetensors"},
        {"id": "missing", "text": "A voice file that is not there.", "voice": "voices/none.safetensors"},
        {"id": "default", "text": "In the job's voice."},
    ])
    out = tmp_path / "out"
    r = runner.invoke(app, ["bulk", manifest, "-m", base, "-d", str(out), "--voice", str(voice), *COMMON[:4],
                            "--greedy"])
    assert r.exit_code == 1, r.output
    lines = {x["id"]: x for x in results(out)}
    assert "none.safetensors" in lines["missing"]["error"] and lines["mine"]["error"] is None
    for rid, text in (("mine", "In my own voice."), ("default", "In the job's voice.")):
        s = runner.invoke(app, ["synth", text, "-m", base, "--voice", str(voice), "-o", str(tmp_path / "s.wav"),
                                *COMMON[:4], "--greedy"])
        assert s.exit_code == 0, s.output
        assert (out / f"{rid}.wav").read_bytes() == (tmp_path / "s.wav").read_bytes()


def test_a_reference_recording_is_cloned_once_for_every_row(base_voice, tmp_path):
    import soundfile as sf
    from audio_clips import clip

    base, _ = base_voice
    ref = tmp_path / "ref.wav"
    sf.write(ref, clip(48000), 48000)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "a", "text": "First line."},
                                                     {"id": "b", "text": "Second line.", "seed": 3}])
    clone = ["--ref-audio", str(ref), "--xvector-only", *COMMON[:4], "--greedy"]
    r = runner.invoke(app, ["bulk", manifest, "-m", base, "-d", str(tmp_path / "out"), *clone])
    assert r.exit_code == 0, r.output
    for rid, text in (("a", "First line."), ("b", "Second line.")):
        s = runner.invoke(app, ["synth", text, "-m", base, "-o", str(tmp_path / "s.wav"), *clone])
        assert s.exit_code == 0, s.output
        assert (tmp_path / "out" / f"{rid}.wav").read_bytes() == (tmp_path / "s.wav").read_bytes()


@pytest.mark.parametrize("args,words", [
    (["--replicas", "2"], "--replicas, --gpus-per-replica and --cpus-per-replica are for --ray"),
    (["--speaker", "ryan", "--ref-text", "x"], "--ref-text and --xvector-only go with --ref-audio"),
    (["--temperature", "-1"], "--temperature"),
])
def test_usage_errors_are_one_line_before_any_work(ck, tmp_path, args, words):
    manifest = write_manifest(tmp_path / "m.jsonl", ROWS[:1])
    r = run_bulk(ck, manifest, tmp_path / "out", *args)
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1 and words in r.output
    assert not (tmp_path / "out").exists()


def test_bad_manifest_and_busy_folder(ck, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "a", "text": "x"}, {"id": "a", "text": "y"}])
    r = run_bulk(ck, manifest, tmp_path / "out")
    assert r.exit_code == 2 and "id 'a' repeats" in r.output and len(r.output.strip().splitlines()) == 1
    manifest = write_manifest(tmp_path / "m.jsonl", ROWS[:1])
    with OutputFolder(tmp_path / "out"):
        r = run_bulk(ck, manifest, tmp_path / "out")
    assert r.exit_code == 2 and "another bulk job is writing to this folder" in r.output
    assert not (tmp_path / "out" / "intro.wav").exists()


def test_ctrl_c_keeps_finished_rows_and_no_partial_file_then_a_rerun_finishes(ck, tmp_path):
    import signal
    import subprocess
    import sys
    import time

    rows = [{"id": f"r{i}", "text": f"Line {i} of a job that is interrupted."} for i in range(8)]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "qwen3tts_cli.cli", "bulk", manifest, "-m", ck, "-d", str(out), "--greedy",
           "--device", "cpu", "--max-frames", "60", "-b", "2"]
    job = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not ((out / RESULTS_NAME).exists() and results(out)):
        assert job.poll() is None, job.communicate()
        time.sleep(0.05)
    job.send_signal(signal.SIGINT)
    _, stderr = job.communicate(timeout=120)
    assert job.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr
    done = {x["id"] for x in results(out)}
    assert 0 < len(done) < len(rows)
    assert sorted(p.name for p in out.iterdir() if p.suffix == ".wav") == sorted(f"{i}.wav" for i in done)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{len(done)} already complete" in again.stderr
    assert sorted(x["id"] for x in results(out)) == sorted(r["id"] for r in rows)


@pytest.mark.parametrize("address,words", [
    ("foo", "--ray foo: expected local, auto or the head's HOST:PORT"),
    ("http://h:1", "expected local, auto"),
    ("ray://head:10001", "Ray Client addresses do not work with Ray Data"),
    ("127.0.0.1:1", "--ray 127.0.0.1:1: nothing answers at 127.0.0.1:1"),
])
def test_a_cluster_that_is_not_there_is_one_line_and_writes_no_row(ck, tmp_path, address, words):
    pytest.importorskip("ray.data")
    manifest = write_manifest(tmp_path / "m.jsonl", ROWS)  # a refused row too: still nothing written
    r = run_bulk(ck, manifest, tmp_path / "out", "--ray", address)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().splitlines()[-1].startswith("error:") and words in r.stderr
    assert not (tmp_path / "out" / RESULTS_NAME).exists()


@pytest.mark.parametrize("model,args,words", [
    ("0.6B-Base", [], "a Base model speaks in a cloned voice: give --ref-audio"),
    ("0.6B-Base", ["--speaker", "ryan"], "a Base model has no built-in speakers"),
    ("0.6B-CustomVoice", ["--language", "klingon"], "unknown language 'klingon'"),
    ("1.7B-VoiceDesign", [], "a VoiceDesign model needs an instruction describing the voice: give --instruct"),
])
def test_job_wide_options_the_model_refuses_are_one_usage_error(tiny_checkpoint, tmp_path, model, args, words):
    manifest = write_manifest(tmp_path / "m.jsonl", ROWS[:2])
    r = runner.invoke(app, ["bulk", manifest, "-m", str(tiny_checkpoint(model)), "-d", str(tmp_path / "out"),
                            *COMMON[:4], *args])
    assert r.exit_code == 2, r.output
    assert r.output.startswith("error:") and len(r.output.strip().splitlines()) == 1 and words in r.output
    assert not (tmp_path / "out" / RESULTS_NAME).exists()


def test_rows_that_set_what_the_job_lacks_run(tiny_checkpoint, tmp_path):
    vd = str(tiny_checkpoint("1.7B-VoiceDesign"))
    rows = [{"id": "a", "text": "Hello.", "instruct": "A calm, low voice."},
            {"id": "b", "text": "Hi.", "instruct": "A bright, quick voice."}]
    r = runner.invoke(app, ["bulk", write_manifest(tmp_path / "m.jsonl", rows), "-m", vd, "-d", str(tmp_path / "o"),
                            *COMMON, "--greedy"])
    assert r.exit_code == 0, r.output
    s = runner.invoke(app, ["synth", "Hi.", "--instruct", "A bright, quick voice.", "-m", vd, "-o",
                            str(tmp_path / "s.wav"), *COMMON, "--greedy"])
    assert s.exit_code == 0, s.output
    assert (tmp_path / "o" / "b.wav").read_bytes() == (tmp_path / "s.wav").read_bytes()


def test_a_changed_row_or_option_is_made_again(ck, tmp_path):
    out = tmp_path / "out"
    rows = [{"id": "a", "text": "First text."}, {"id": "b", "text": "Second text."}]
    assert run_bulk(ck, write_manifest(tmp_path / "m.jsonl", rows), out).exit_code == 0
    before = {rid: (out / f"{rid}.wav").read_bytes() for rid in "ab"}
    rows[0]["text"] = "First text, edited."
    r = run_bulk(ck, write_manifest(tmp_path / "m.jsonl", rows), out)
    assert r.exit_code == 0 and "2 rows: 1 already complete, 0 refused, 1 to synthesize" in r.stderr, r.output
    assert (out / "a.wav").read_bytes() != before["a"] and (out / "b.wav").read_bytes() == before["b"]
    r = run_bulk(ck, str(tmp_path / "m.jsonl"), out, "--speaker", "vivian")  # a job-wide option: every row
    assert r.exit_code == 0 and "2 rows: 0 already complete, 0 refused, 2 to synthesize" in r.stderr, r.output
    r = run_bulk(ck, str(tmp_path / "m.jsonl"), out, "--speaker", "vivian")
    assert "2 rows: 2 already complete" in r.stderr


def test_the_manifest_is_never_an_output(ck, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_manifest(out / RESULTS_NAME, ROWS[:1])
    r = run_bulk(ck, str(out / RESULTS_NAME), out)
    assert r.exit_code == 2 and "is this job's results.jsonl" in r.output, r.output
    assert json.loads((out / RESULTS_NAME).read_text()) == ROWS[0]


def test_a_folder_where_a_wav_goes_is_refused_before_the_model_loads(ck, tmp_path):
    (tmp_path / "out" / "line-2.wav").mkdir(parents=True)
    r = run_bulk(ck, write_manifest(tmp_path / "m.jsonl", ROWS), tmp_path / "out")
    assert r.exit_code == 2 and "line-2.wav: is a folder" in r.output, r.output
    assert not (tmp_path / "out" / RESULTS_NAME).exists()


def test_allowed_truncation_is_still_said(ck, tmp_path):
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "long", "text": "Short one."}])
    r = runner.invoke(app, ["bulk", manifest, "-m", ck, "-d", str(tmp_path / "out"), "--greedy", "--device", "cpu",
                            "--allow-truncation"])
    assert r.exit_code == 0, r.output
    assert "warning: long: generation ran past its frame budget" in r.stderr


def test_an_address_where_something_else_answers(ck, tmp_path):
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    pytest.importorskip("ray.data")
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        r = run_bulk(ck, write_manifest(tmp_path / "m.jsonl", ROWS[:1]), tmp_path / "out", "--ray", address)
    finally:
        server.shutdown()
    assert r.exit_code == 2 and "is not a Ray cluster's head" in r.output, r.output
    assert not (tmp_path / "out").exists()


def test_every_job_wide_option_is_checked_past_one_the_rows_replace(tiny_checkpoint, base_voice, tmp_path):
    cv = str(tiny_checkpoint("0.6B-CustomVoice"))
    _, voice = base_voice
    with_speakers = write_manifest(tmp_path / "m.jsonl", [{"id": "a", "text": "Hi.", "speaker": "vivian"}])
    # --voice is for Base models, but every row names a speaker: excused; the language is not.
    r = run_bulk(cv, with_speakers, tmp_path / "o1", "--voice", str(voice), "--language", "klingon")
    assert r.exit_code == 2 and "unknown language 'klingon'" in r.output, r.output
    r = run_bulk(cv, with_speakers, tmp_path / "o2", "--voice", str(voice))
    assert r.exit_code == 0, r.output


def test_a_reference_recording_every_row_replaces_is_not_cloned(ck, tmp_path):
    import soundfile as sf
    from audio_clips import clip

    sf.write(tmp_path / "ref.wav", clip(24000), 24000)
    manifest = write_manifest(tmp_path / "m.jsonl", [{"id": "a", "text": "Hi.", "speaker": "vivian"}])
    r = runner.invoke(app, ["bulk", manifest, "-m", ck, "-d", str(tmp_path / "out"), *COMMON, "--greedy",
                            "--ref-audio", str(tmp_path / "ref.wav"), "--xvector-only"])
    assert r.exit_code == 0, r.output
    s = runner.invoke(app, ["synth", "Hi.", "-s", "vivian", "-m", ck, "-o", str(tmp_path / "s.wav"), *COMMON,
                            "--greedy"])
    assert s.exit_code == 0, s.output
    assert (tmp_path / "out" / "a.wav").read_bytes() == (tmp_path / "s.wav").read_bytes()


def test_a_manifest_linked_to_results_is_refused(ck, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    write_manifest(out / RESULTS_NAME, ROWS[:1])
    os.link(out / RESULTS_NAME, tmp_path / "hard.jsonl")
    r = run_bulk(ck, str(tmp_path / "hard.jsonl"), out)
    assert r.exit_code == 2 and "is this job's results.jsonl" in r.output, r.output
