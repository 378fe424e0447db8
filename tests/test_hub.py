"""The resumable downloader against a fake hub on loopback (nothing leaves 127.0.0.1)."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit

import numpy as np
import pytest
from safetensors.numpy import save as save_safetensors

from qwen3tts_cli.io import hub, transfer
from qwen3tts_cli.errors import DownloadError, ModelError

REPO = "tester/Tiny-TTS"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def make_repo() -> tuple[dict[str, bytes], set[str]]:
    rng = np.random.default_rng(7)
    files = {
        "config.json": json.dumps({"model_type": "tiny", "hidden_size": 64}).encode(),
        "generation_config.json": json.dumps({"do_sample": True, "top_k": 50}).encode(),
        "README.md": b"# tiny\n",
        "speech_tokenizer/config.json": json.dumps({"sample_rate": 24000}).encode(),
        "model.safetensors": save_safetensors({"w": rng.standard_normal((640, 1024), dtype=np.float32)}),
        "speech_tokenizer/model.safetensors": save_safetensors({"c": rng.standard_normal((256, 1024), dtype=np.float32)}),
    }
    return files, {"model.safetensors", "speech_tokenizer/model.safetensors"}


class FakeHub:
    """Answers model_info(files_metadata=True) and /resolve/ (HEAD, ranged GET, CDN redirect for LFS)."""

    def __init__(self, files: dict[str, bytes], lfs: set[str]):
        self.files, self.lfs = files, lfs
        self.sha = {p: hashlib.sha256(b).hexdigest() for p, b in files.items()}
        self.log: list[dict] = []  # every request: method, path, range, auth
        self.cut_after: dict[str, int] = {}  # path -> bytes sent before the connection is dropped
        self.corrupt: set[str] = set()
        hubself = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_HEAD(self):
                hubself.handle(self, body=False)

            def do_GET(self):
                hubself.handle(self, body=True)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def data_gets(self) -> list[dict]:
        return [r for r in self.log if r["method"] == "GET" and not r["path"].startswith("/api/")]

    # -- request handling --------------------------------------------------------------------

    def handle(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        path = unquote(urlsplit(h.path).path)
        self.log.append({"method": h.command, "path": path, "range": h.headers.get("Range"),
                         "auth": h.headers.get("Authorization")})
        api = f"/api/models/{REPO}"
        if path in (api, f"{api}/revision/main", f"{api}/revision/{COMMIT}"):
            return self.json(h, self.info())
        if path.startswith("/api/models/"):
            if path.startswith(api + "/revision/"):
                return self.json(h, {"error": "Invalid rev id"}, 404, "RevisionNotFound")
            return self.json(h, {"error": "Repository not found"}, 404, "RepoNotFound")
        prefix = f"/{REPO}/resolve/{COMMIT}/"
        if path.startswith(prefix) and path[len(prefix):] in self.files:
            rel = path[len(prefix):]
            if rel in self.lfs:
                # Like the hub: LFS files live on a CDN host. "localhost" is another host name for
                # the client, so the token must not follow the redirect.
                h.send_response(302)
                h.send_header("Location", f"http://localhost:{self.port}/cdn/{self.sha[rel]}?sig=x")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            return self.serve(h, rel, body)
        if path.startswith("/cdn/"):
            sha = path[len("/cdn/"):]
            rel = next((p for p, s in self.sha.items() if s == sha), None)
            if rel is not None:
                return self.serve(h, rel, body)
        self.json(h, {"error": "Entry not found"}, 404, "EntryNotFound")

    def info(self) -> dict:
        siblings = []
        for p, b in self.files.items():
            s = {"rfilename": p, "size": len(b), "blobId": git_blob_sha1(b)}
            if p in self.lfs:
                s["blobId"] = git_blob_sha1(b"version https://git-lfs.github.com/spec/v1\n" + p.encode())
                s["lfs"] = {"size": len(b), "sha256": self.sha[p], "pointerSize": 134}
            siblings.append(s)
        return {"id": REPO, "sha": COMMIT, "private": False, "siblings": siblings}

    def json(self, h, data, status=200, error_code=None):
        raw = json.dumps(data).encode()
        h.send_response(status)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(raw)))
        if error_code:
            h.send_header("X-Error-Code", error_code)
        h.end_headers()
        h.wfile.write(raw)

    def serve(self, h, rel: str, body: bool) -> None:
        data = self.files[rel]
        if rel in self.corrupt:
            data = data[:1000] + bytes([data[1000] ^ 0xFF]) + data[1001:]
        start, status = 0, 200
        rng = h.headers.get("Range")
        if rng:
            start = int(rng.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                h.send_response(416)
                h.send_header("Content-Range", f"bytes */{len(data)}")
                h.send_header("Content-Length", "0")
                h.end_headers()
                return
            status = 206
        chunk = data[start:]
        h.send_response(status)
        h.send_header("Content-Length", str(len(chunk)))
        h.send_header("ETag", f'"{self.sha[rel]}"')
        if status == 206:
            h.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        h.end_headers()
        if not body:
            return
        cut = self.cut_after.get(rel)
        if cut is not None:
            h.wfile.write(chunk[:cut])
            h.wfile.flush()
            h.connection.shutdown(socket.SHUT_RDWR)  # drop the connection mid-body
            h.close_connection = True
            return
        h.wfile.write(chunk)


@pytest.fixture
def fake_hub(monkeypatch, tmp_path):
    files, lfs = make_repo()
    server = FakeHub(files, lfs)
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for name in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HUB_OFFLINE", "HF_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(transfer, "RETRY_DELAY_S", 0.0)
    yield server
    server.close()


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_clean_download_files_manifest_and_cache_layout(fake_hub, tmp_path):
    events = []
    folder = hub.download(REPO, progress=lambda *e: events.append(e))

    repo_cache = tmp_path / "hf" / "hub" / "models--tester--Tiny-TTS"
    assert folder == repo_cache / "snapshots" / COMMIT
    assert (repo_cache / "refs" / "main").read_text() == COMMIT
    for rel, data in fake_hub.files.items():
        assert (folder / rel).read_bytes() == data
    # LFS files are blobs named by sha256, linked from the snapshot (the huggingface_hub layout).
    blob = repo_cache / "blobs" / fake_hub.sha["model.safetensors"]
    assert blob.is_file() and (folder / "model.safetensors").resolve() == blob.resolve()
    assert not list(repo_cache.glob("blobs/*" + hub.PARTIAL_SUFFIX))

    m = json.loads((folder / hub.MANIFEST_NAME).read_text())
    assert m["format"] == 1 and m["source"] == "hub" and m["repo_id"] == REPO
    assert m["revision"] == COMMIT and m["endpoint"] == fake_hub.url
    assert isinstance(m["created"], str) and m["created"][:2] == "20"
    assert m["files"] == {rel: {"size": len(d), "sha256": hashlib.sha256(d).hexdigest()}
                          for rel, d in fake_hub.files.items()}

    assert events[0] == ("plan", REPO, 0, sum(len(d) for d in fake_hub.files.values()))
    done = {e[1] for e in events if e[0] == "done"}
    assert done == set(fake_hub.files)
    # Every data byte moved once: GETs without Range, one per file.
    assert all(r["range"] is None for r in fake_hub.data_gets())
    assert len([r for r in fake_hub.data_gets() if r["path"].startswith(f"/{REPO}/resolve/")]) == 6

    # resolve_model finds it again by short id and without downloading.
    before = len(fake_hub.log)
    assert hub.resolve_model(REPO, download_missing=False) == folder
    assert len(fake_hub.log) == before


def test_token_goes_to_the_hub_not_to_the_cdn(fake_hub, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_testtoken")
    hub.download(REPO)
    api = [r for r in fake_hub.log if r["path"].startswith("/api/")]
    cdn = [r for r in fake_hub.log if r["path"].startswith("/cdn/")]
    resolve = [r for r in fake_hub.log if "/resolve/" in r["path"]]
    assert api and cdn and resolve
    assert all(r["auth"] == "Bearer hf_testtoken" for r in api + resolve)
    assert all(r["auth"] is None for r in cdn)


def test_interrupted_download_resumes_with_range(fake_hub, tmp_path):
    rel = "model.safetensors"
    size = len(fake_hub.files[rel])
    fake_hub.cut_after[rel] = 300_000
    with pytest.raises(DownloadError, match="model.safetensors.*run the same command again"):
        hub.download(REPO, local_dir=tmp_path / "m")

    part = tmp_path / "m" / hub.PARTIAL_DIR / (fake_hub.sha[rel] + hub.PARTIAL_SUFFIX)
    kept = part.stat().st_size
    # One first try and RETRIES in-run resumes, each cut after 300 000 bytes.
    assert kept == 300_000 * (transfer.RETRIES + 1) < size
    assert part.read_bytes() == fake_hub.files[rel][:kept]
    assert not (tmp_path / "m" / rel).exists()
    assert not (tmp_path / "m" / hub.MANIFEST_NAME).exists()
    ranges = [r["range"] for r in fake_hub.data_gets() if r["path"] == f"/cdn/{fake_hub.sha[rel]}"]
    assert ranges == [None] + [f"bytes={300_000 * k}-" for k in range(1, transfer.RETRIES + 1)]

    del fake_hub.cut_after[rel]
    fake_hub.log.clear()
    folder = hub.download(REPO, local_dir=tmp_path / "m")
    cdn = [r for r in fake_hub.data_gets() if r["path"] == f"/cdn/{fake_hub.sha[rel]}"]
    assert [r["range"] for r in cdn] == [f"bytes={kept}-"]
    assert sha256_of(folder / rel) == fake_hub.sha[rel]
    assert json.loads((folder / hub.MANIFEST_NAME).read_text())["files"][rel]["sha256"] == fake_hub.sha[rel]
    assert not (folder / hub.PARTIAL_DIR).exists()


def test_server_ignoring_range_restarts_from_zero(fake_hub, tmp_path):
    rel = "speech_tokenizer/model.safetensors"
    data = fake_hub.files[rel]
    partials = tmp_path / "m" / hub.PARTIAL_DIR
    partials.mkdir(parents=True)
    # A partial whose bytes are wrong: the server answers 200 to the Range request, so nothing of it
    # may survive in the result.
    (partials / (fake_hub.sha[rel] + hub.PARTIAL_SUFFIX)).write_bytes(b"\0" * 5000)
    orig = fake_hub.serve

    def no_ranges(h, r, body):
        del h.headers["Range"]
        orig(h, r, body)

    fake_hub.serve = no_ranges
    folder = hub.download(REPO, local_dir=tmp_path / "m")
    assert (folder / rel).read_bytes() == data
    assert [r["range"] for r in fake_hub.data_gets() if r["path"].startswith("/cdn/" + fake_hub.sha[rel])] \
        == ["bytes=5000-"]


def test_corrupt_lfs_file_is_rejected_and_not_left_in_place(fake_hub, tmp_path):
    fake_hub.corrupt.add("model.safetensors")
    with pytest.raises(DownloadError, match="model.safetensors: SHA-256 mismatch"):
        hub.download(REPO)
    repo_cache = tmp_path / "hf" / "hub" / "models--tester--Tiny-TTS"
    snap = repo_cache / "snapshots" / COMMIT
    assert not (snap / "model.safetensors").exists()
    assert not (repo_cache / "blobs" / fake_hub.sha["model.safetensors"]).exists()
    assert not list(repo_cache.glob("blobs/*" + hub.PARTIAL_SUFFIX))  # the bad partial was deleted
    assert not (snap / hub.MANIFEST_NAME).exists()
    with pytest.raises(ModelError, match=f"qwen3tts download {REPO}"):
        hub.resolve_model(REPO, download_missing=False)

    # Fixed server: the next run completes, fetching only what is missing.
    fake_hub.corrupt.clear()
    fake_hub.log.clear()
    folder = hub.resolve_model(REPO)
    assert folder == snap and sha256_of(snap / "model.safetensors") == fake_hub.sha["model.safetensors"]
    fetched = {r["path"] for r in fake_hub.data_gets()}
    assert f"/cdn/{fake_hub.sha['model.safetensors']}" in fetched
    assert f"/{REPO}/resolve/{COMMIT}/config.json" not in fetched


def test_rerun_after_success_fetches_no_data(fake_hub, tmp_path):
    first = hub.download(REPO, local_dir=tmp_path / "m")
    manifest = (first / hub.MANIFEST_NAME).read_text()
    fake_hub.log.clear()
    events = []
    second = hub.download(REPO, local_dir=tmp_path / "m", progress=lambda *e: events.append(e))
    assert second == first
    assert fake_hub.data_gets() == []
    assert [r["path"] for r in fake_hub.log] == [f"/api/models/{REPO}"]
    assert sorted(e[1] for e in events if e[0] == "skip") == sorted(fake_hub.files)
    assert (first / hub.MANIFEST_NAME).read_text() == manifest


def test_wrong_file_on_disk_is_replaced(fake_hub, tmp_path):
    folder = hub.download(REPO, local_dir=tmp_path / "m")
    (folder / "config.json").write_bytes(b"{}")  # same path, other content
    fake_hub.log.clear()
    hub.download(REPO, local_dir=tmp_path / "m")
    assert [r["path"] for r in fake_hub.data_gets()] == [f"/{REPO}/resolve/{COMMIT}/config.json"]
    assert (folder / "config.json").read_bytes() == fake_hub.files["config.json"]


def test_hub_errors_are_clear(fake_hub):
    with pytest.raises(DownloadError, match="repository not found.*tester/nothing"):
        hub.download("tester/nothing")
    with pytest.raises(DownloadError, match="revision not found in tester/Tiny-TTS: v9"):
        hub.download(REPO, revision="v9")


def test_no_server_listening(monkeypatch, tmp_path):
    endpoint = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HF_ENDPOINT", endpoint)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    with pytest.raises(DownloadError) as e:
        hub.download(REPO)
    msg = str(e.value)
    assert f"cannot reach the Hugging Face hub at {endpoint}" in msg
    assert "HF_ENDPOINT" in msg and "local model folder" in msg
    assert "\n" not in msg


def test_resolve_model_local_and_missing(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert hub.resolve_model(str(tmp_path)) == tmp_path
    with pytest.raises(ModelError, match="model folder not found: .*nope"):
        hub.resolve_model(str(tmp_path / "a" / "nope"))
    with pytest.raises(ModelError, match="qwen3tts download Qwen/Qwen3-TTS-12Hz-0.6B-Base"):
        hub.resolve_model("0.6b-base", download_missing=False)


# ---------------------------------------------------------------------------------------------
# CLI
# ---------------------------------------------------------------------------------------------

def run_cli(args, env_extra, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "HUGGINGFACE_"))}
    env.update(HF_HOME=str(tmp_path / "hf"), COLUMNS="120", **env_extra)
    return subprocess.run([sys.executable, "-m", "qwen3tts_cli.cli", *args], env=env, capture_output=True,
                          text=True, timeout=60)


def test_cli_lists_the_official_repos(tmp_path):
    from qwen3tts_cli.io.repos import KNOWN_REPOS
    r = run_cli(["download"], {}, tmp_path)
    assert r.returncode == 0, r.stderr
    for repo in KNOWN_REPOS:
        assert repo.repo_id in r.stdout
    assert "2.5 GB" in r.stdout and "0.7 GB" in r.stdout  # 0.6B model + codec; codec alone


def test_cli_download_prints_the_folder(fake_hub, tmp_path):
    r = run_cli(["download", REPO], {"HF_ENDPOINT": fake_hub.url}, tmp_path)
    assert r.returncode == 0, r.stderr
    folder = Path(r.stdout.strip())
    assert r.stdout.count("\n") == 1
    assert folder == tmp_path / "hf" / "hub" / "models--tester--Tiny-TTS" / "snapshots" / COMMIT
    assert sha256_of(folder / "model.safetensors") == fake_hub.sha["model.safetensors"]


def test_cli_download_without_network_fails_cleanly(tmp_path):
    r = run_cli(["download", REPO], {"HF_ENDPOINT": f"http://127.0.0.1:{closed_port()}"}, tmp_path)
    assert r.returncode == 1
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot reach the Hugging Face hub"), r.stderr
    assert "Traceback" not in r.stderr
