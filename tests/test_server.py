"""The speech server on loopback, driven by real clients: the openai SDK, httpx, websockets."""

import asyncio
import json
import socket
import threading
import time

import numpy as np
import pytest
import torch

pytest.importorskip("fastapi")
openai = pytest.importorskip("openai")
httpx = pytest.importorskip("httpx")
websockets = pytest.importorskip("websockets")

from qwen3tts_cli.engine import load_tts  # noqa: E402
from qwen3tts_cli.engine.scheduler import Scheduler  # noqa: E402
from qwen3tts_cli.io.audio import pcm16  # noqa: E402

MODEL_ID = "qwen3tts-test"
KEY = "sk-test-key"


class LiveServer:
    def __init__(self, app):
        import uvicorn

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        for _ in range(200):
            if self.server.started:
                break
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{self.port}"

    def stop(self):
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture(scope="module")
def tts(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)


@pytest.fixture(scope="module")
def server(tiny_checkpoint):
    from qwen3tts_cli.server.app import ServerSettings, create_app

    # Its own loaded model: the expected audio is made on the other one (a scheduler owns its
    # model's caches).
    served = load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)
    sched = Scheduler(served, max_batch=3, max_queue=4)
    live = LiveServer(create_app(served, sched, ServerSettings(MODEL_ID, api_key=KEY, max_input_chars=200)))
    live.scheduler = sched
    yield live
    live.stop()
    sched.close()


def client(server, key=KEY):
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def solo_pcm(tts, text, **options):
    with Scheduler(tts, max_batch=1) as s:  # the scheduler's audio: the stream's, bit for bit
        return pcm16(np.concatenate(list(s.submit(text, **options))))


EXTRA = {"greedy": True, "max_frames": 12, "language": "english"}


def test_openai_sdk_pcm_and_wav_equal_the_engine(server, tts):
    want = solo_pcm(tts, "Hello from the server.", speaker="vivian", **EXTRA)
    c = client(server)
    got = c.audio.speech.create(model=MODEL_ID, voice="vivian", input="Hello from the server.",
                                response_format="pcm", extra_body=EXTRA)
    assert got.content == want
    wav = c.audio.speech.create(model=MODEL_ID, voice="vivian", input="Hello from the server.",
                                response_format="wav", extra_body=EXTRA)
    assert wav.content[:4] == b"RIFF" and wav.content[4:8] == b"\xff\xff\xff\xff" and wav.content[44:] == want


def test_streaming_response_arrives_in_pieces(server, tts):
    c = client(server)
    with c.audio.speech.with_streaming_response.create(model=MODEL_ID, voice="ryan", input="Streaming, piece by piece.",
                                                       response_format="pcm",
                                                       extra_body={**EXTRA, "max_frames": 20}) as r:
        pieces = [p for p in r.iter_bytes() if p]
    assert len(pieces) > 1
    assert b"".join(pieces) == solo_pcm(tts, "Streaming, piece by piece.", speaker="ryan",
                                        **{**EXTRA, "max_frames": 20})


@pytest.mark.parametrize("fmt", ["mp3", "opus", "flac", "aac"])
def test_compressed_formats(server, fmt):
    import io

    import av

    data = client(server).audio.speech.create(model=MODEL_ID, voice="ryan", input="Compressed audio.",
                                              response_format=fmt, extra_body=EXTRA).content
    with av.open(io.BytesIO(data), format={"aac": "adts", "opus": "ogg"}.get(fmt, fmt)) as cont:
        n = sum(f.samples for f in cont.decode(audio=0))
    assert abs(n - 12 * 1920) <= 4096 or (fmt == "opus" and n > 0), (fmt, n)


def test_sse_events(server, tts):
    import base64

    want = solo_pcm(tts, "Events.", speaker="ryan", **EXTRA)
    body = {"model": MODEL_ID, "voice": "ryan", "input": "Events.", "response_format": "pcm", "stream_format": "sse",
            **EXTRA}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, headers={"Authorization": f"Bearer {KEY}"},
                      timeout=60) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: ")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and events[-1]["usage"]["output_frames"] == 12
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == want


def test_concurrent_clients_equal_their_solo_runs(server, tts):
    texts = [f"Caller {i} is speaking now." for i in range(6)]
    wants = [solo_pcm(tts, t, speaker="ryan", **{**EXTRA, "max_frames": 8 + i}) for i, t in enumerate(texts)]
    got = [None] * 6

    def call(i):
        for _ in range(50):
            try:
                got[i] = client(server).audio.speech.create(model=MODEL_ID, voice="ryan", input=texts[i],
                                                            response_format="pcm",
                                                            extra_body={**EXTRA, "max_frames": 8 + i}).content
                return
            except openai.RateLimitError:
                time.sleep(0.1)

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert got == wants


def test_errors_in_openai_shape_and_the_server_keeps_serving(server):
    h = {"Authorization": f"Bearer {KEY}"}
    url = server.url + "/v1/audio/speech"
    ok = {"model": MODEL_ID, "voice": "ryan", "input": "Hi.", "response_format": "pcm", **EXTRA}
    cases = [
        ({**ok, "input": ""}, 400, "input"),
        ({k: v for k, v in ok.items() if k != "input"}, 400, "input"),
        ({**ok, "voice": "nobody"}, 400, "voice"),
        ({**ok, "response_format": "ogg"}, 400, "response_format"),
        ({**ok, "speed": 1.5}, 400, "speed"),
        ({**ok, "temperature": -1, "greedy": False}, 400, "sampling"),
        ({**ok, "top_k": "many"}, 400, "top_k"),
        ({**ok, "model": "tts-1"}, 400, "model"),
        ({**ok, "input": "x" * 201}, 413, "input"),
    ]
    for body, status, param in cases:
        r = httpx.post(url, json=body, headers=h, timeout=30)
        assert r.status_code == status, (body, r.text)
        err = r.json()["error"]
        assert set(err) == {"message", "type", "param", "code"} and err["param"] == param, err
    r = httpx.post(url, content=b"{not json", headers={**h, "content-type": "application/json"}, timeout=30)
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    assert httpx.get(server.url + "/v1/nothing", headers=h).status_code == 404
    assert httpx.post(url, json=ok, timeout=30).status_code == 401  # no key
    assert httpx.post(url, json=ok, headers={"Authorization": "Bearer wrong"}, timeout=30).status_code == 401
    assert httpx.get(server.url + "/health").status_code == 200  # no key needed
    models = httpx.get(server.url + "/v1/models", headers=h).json()
    assert models["data"][0]["id"] == MODEL_ID
    assert "ryan" in [v["name"] for v in httpx.get(server.url + "/v1/audio/voices", headers=h).json()["voices"]]
    # Still serving.
    assert httpx.post(url, json=ok, headers=h, timeout=60).status_code == 200


def test_a_client_that_leaves_mid_stream_frees_its_slot(server, tts):
    body = {"model": MODEL_ID, "voice": "ryan", "input": "A long one that the client abandons.",
            "response_format": "pcm", "greedy": True, "max_frames": 3000}
    h = {"Authorization": f"Bearer {KEY}"}
    with httpx.stream("POST", server.url + "/v1/audio/speech", json=body, headers=h, timeout=60) as r:
        for piece in r.iter_bytes():
            if piece:
                break  # and hang up
    # The request is cancelled at once: its row leaves the batch and its place in the queue is free.
    t0 = time.time()
    while server.scheduler.open_requests and time.time() - t0 < 20:
        time.sleep(0.05)
    assert server.scheduler.open_requests == 0
    r = httpx.post(server.url + "/v1/audio/speech", json={**body, "max_frames": 4}, headers=h, timeout=60)
    assert r.status_code == 200


def test_text_in_over_a_websocket_equals_the_feed(server, tts):
    text = "Text streamed in, word by word, over a socket."
    feed = tts.text_feed()
    with Scheduler(tts, max_batch=1) as s:
        h = s.submit(feed, speaker="ryan", greedy=True, max_frames=30)
        feed.push(text)
        feed.close()
        want = pcm16(np.concatenate(list(h)))

    async def run():
        uri = f"ws://127.0.0.1:{server.port}/v1/audio/speech/stream"
        async with websockets.connect(uri, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            await ws.send(json.dumps({"type": "session.config", "voice": "ryan", "greedy": True, "max_frames": 30}))
            for w in text.split(" "):
                await ws.send(json.dumps({"type": "input.text", "text": w + " "}))
            await ws.send(json.dumps({"type": "input.done"}))
            audio, done = b"", None
            async for msg in ws:
                if isinstance(msg, bytes):
                    audio += msg
                else:
                    done = json.loads(msg)
            return audio, done

    audio, done = asyncio.run(run())
    assert done["type"] == "audio.done" and done["frames"] == 30
    assert audio == want


def test_a_bad_websocket_message_is_answered_and_closed(server):
    async def run():
        uri = f"ws://127.0.0.1:{server.port}/v1/audio/speech/stream"
        async with websockets.connect(uri, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            await ws.send(json.dumps({"type": "input.text", "text": "no config first"}))
            msg = json.loads(await ws.recv())
            try:
                await ws.recv()
            except websockets.ConnectionClosed as e:
                return msg, e.rcvd.code

    msg, code = asyncio.run(run())
    assert msg["type"] == "error" and set(msg["error"]) == {"message", "type", "code"} and code == 1008


# -- saved voices (Base models) --------------------------------------------------------------------

@pytest.fixture(scope="module")
def base_server(tiny_checkpoint, tmp_path_factory):
    from qwen3tts_cli.server.app import ServerSettings, create_app

    served = load_tts(tiny_checkpoint("0.6B-Base", 0), device="cpu", dtype=torch.float32)
    voices = tmp_path_factory.mktemp("voices")
    sched = Scheduler(served, max_batch=2)
    live = LiveServer(create_app(served, sched, ServerSettings("base-test", voices_dir=voices)))
    live.voices = voices
    yield live
    live.stop()
    sched.close()


def test_saved_voices_round_trip(base_server, tiny_checkpoint, tmp_path):
    import soundfile as sf

    from clone_goldens import load_goldens
    from qwen3tts_cli.voice import load_voice

    signals, _ = load_goldens()
    ref = tmp_path / "ref.wav"
    sf.write(ref, signals["voice"], 24000)
    url = base_server.url + "/v1/audio/voices"
    with open(ref, "rb") as f:
        r = httpx.post(url, data={"name": "alice", "ref_text": "A reference voice."},
                       files={"audio_sample": ("ref.wav", f, "audio/wav")}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json() == {"name": "alice", "type": "saved", "mode": "icl"}
    assert (base_server.voices / "alice.safetensors").is_file()
    assert {"name": "alice", "type": "saved"} in httpx.get(url).json()["voices"]
    # Speech in the saved voice equals the engine with that voice file.
    other = load_tts(tiny_checkpoint("0.6B-Base", 0), device="cpu", dtype=torch.float32)
    want = solo_pcm(other, "Spoken in a saved voice.", voice=load_voice(base_server.voices / "alice.safetensors"),
                    **EXTRA)
    got = openai.OpenAI(base_url=base_server.url + "/v1", api_key="x").audio.speech.create(
        model="base-test", voice="alice", input="Spoken in a saved voice.", response_format="pcm",
        extra_body=EXTRA).content
    assert got == want
    assert httpx.delete(url + "/alice").json() == {"name": "alice", "deleted": True}
    assert httpx.delete(url + "/alice").status_code == 404
    assert not (base_server.voices / "alice.safetensors").exists()


def test_bad_voice_uploads(base_server, tmp_path):
    url = base_server.url + "/v1/audio/voices"
    for name in ("../evil", "a/b", ".hidden", "", "x" * 65):
        r = httpx.post(url, data={"name": name}, files={"audio_sample": ("a.wav", b"RIFF", "audio/wav")})
        assert r.status_code == 400 and r.json()["error"]["param"] == "name", name
    r = httpx.post(url, data={"name": "junk"}, files={"audio_sample": ("a.wav", b"not audio at all", "audio/wav")})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio"
    big = b"\0" * (10 * 2**20 + 10)
    r = httpx.post(url, data={"name": "big"}, files={"audio_sample": ("a.wav", big, "audio/wav")}, timeout=60)
    assert r.status_code == 413
    assert httpx.delete(url + "/..%2Fx").status_code in (404, 400)
    assert list(base_server.voices.iterdir()) == []
    assert httpx.get(base_server.url + "/health").status_code == 200


def test_serve_command_runs_a_real_server(tiny_checkpoint, tmp_path):
    # The command as a person runs it, stopped with Ctrl-C.
    import signal
    import subprocess
    import sys

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**__import__("os").environ, "QWEN3TTS_API_KEY": "env-key"}
    p = subprocess.Popen([sys.executable, "-m", "qwen3tts_cli.cli", "serve", "-m",
                          str(tiny_checkpoint("0.6B-CustomVoice", 0)), "--port", str(port), "--device", "cpu", "-q"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(300):
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert httpx.get(url + "/v1/models").status_code == 401  # the key from the environment
        models = httpx.get(url + "/v1/models", headers={"Authorization": "Bearer env-key"}).json()
        audio = openai.OpenAI(base_url=url + "/v1", api_key="env-key").audio.speech.create(
            model=models["data"][0]["id"], voice="ryan", input="From the command.", response_format="pcm",
            extra_body=EXTRA).content
        assert len(audio) == 12 * 1920 * 2
    finally:
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
    assert p.returncode in (0, 130), err
    assert b"env-key" not in out + err


def _rss_mb() -> float:
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def test_bounded_load(tiny_checkpoint, tts):
    """50 requests at concurrency 8 on the tiny model: no errors, every caller its own audio, flat memory."""
    from concurrent.futures import ThreadPoolExecutor

    from qwen3tts_cli.server.app import ServerSettings, create_app

    served = load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)
    sched = Scheduler(served, max_batch=4, max_queue=8)
    live = LiveServer(create_app(served, sched, ServerSettings(MODEL_ID)))
    texts = [f"Request number {i}, with its own words." for i in range(10)]
    wants = [solo_pcm(tts, t, speaker="ryan", **{**EXTRA, "max_frames": 6 + i % 5}) for i, t in enumerate(texts)]
    c = openai.OpenAI(base_url=live.url + "/v1", api_key="x", max_retries=0)

    def call(i):
        k = i % 10
        return k, c.audio.speech.create(model=MODEL_ID, voice="ryan", input=texts[k], response_format="pcm",
                                        extra_body={**EXTRA, "max_frames": 6 + k % 5}).content

    try:
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(call, range(10)))  # warm
            before = _rss_mb()
            results = list(pool.map(call, range(50)))
        after = _rss_mb()
    finally:
        live.stop()
        sched.close()
    assert len(results) == 50 and all(audio == wants[k] for k, audio in results)
    assert after - before < 150, (before, after)


def test_a_full_server_answers_429_with_retry_after(tiny_checkpoint):
    from qwen3tts_cli.server.app import ServerSettings, create_app

    served = load_tts(tiny_checkpoint("0.6B-CustomVoice", 0), device="cpu", dtype=torch.float32)
    sched = Scheduler(served, max_batch=1, max_queue=0)
    live = LiveServer(create_app(served, sched, ServerSettings(MODEL_ID)))
    body = {"model": MODEL_ID, "voice": "ryan", "input": "Holding the only place.", "response_format": "pcm",
            "greedy": True, "max_frames": 3000}
    try:
        with httpx.stream("POST", live.url + "/v1/audio/speech", json=body, timeout=60) as held:
            pieces = held.iter_bytes()  # kept: a dropped iterator closes the response
            next(pieces)  # it is running
            r = httpx.post(live.url + "/v1/audio/speech", json={**body, "max_frames": 4}, timeout=60)
            assert r.status_code == 429 and r.headers["retry-after"] == "1"
            assert r.json()["error"]["type"] == "rate_limit_error"
        # The held request left with its client: there is room again.
        for _ in range(100):
            if sched.open_requests == 0:
                break
            time.sleep(0.05)
        assert httpx.post(live.url + "/v1/audio/speech", json={**body, "max_frames": 4}, timeout=60).status_code == 200
    finally:
        live.stop()
        sched.close()


def test_hostile_bodies_are_400s(server):
    h = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    url = server.url + "/v1/audio/speech"
    for body in ("[" * 100000 + "]" * 100000, '{"input": "Hi", "seed": 1' + "0" * 5000 + "}", "\xff\xfe"):
        r = httpx.post(url, content=body.encode("latin-1"), headers=h, timeout=30)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
    assert httpx.get(server.url + "/health").status_code == 200


@pytest.mark.parametrize("frames", [[b"\x00\x01"], ["{nope"], ['{"type": "session.config", "voice": "ryan"}', b"\x01"],
                                    ['{"type": "session.config", "voice": "ryan"}', "{x"],
                                    ['{"type": "session.config", "voice": "ryan"}',
                                     '{"type": "input.text", "text": "bad \\ud800 text"}']])
def test_bad_websocket_frames_get_an_error_and_1008(server, frames):
    async def run():
        uri = f"ws://127.0.0.1:{server.port}/v1/audio/speech/stream"
        async with websockets.connect(uri, additional_headers={"Authorization": f"Bearer {KEY}"}) as ws:
            for f in frames:
                await ws.send(f)
            msg = None
            try:
                while True:
                    m = await ws.recv()
                    if isinstance(m, str):
                        msg = json.loads(m)
            except websockets.ConnectionClosed as e:
                return msg, e.rcvd.code if e.rcvd else None

    msg, code = asyncio.run(run())
    assert msg is not None and msg["type"] == "error" and code == 1008
    for _ in range(100):
        if server.scheduler.open_requests == 0:
            break
        time.sleep(0.05)
    assert server.scheduler.open_requests == 0


def test_what_the_engine_changed_is_said_in_a_header(server):
    # The 0.6B CustomVoice model drops instructions (as the reference does): the caller is told.
    r = httpx.post(server.url + "/v1/audio/speech", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": MODEL_ID, "voice": "ryan", "input": "Hi.", "instructions": "Happily.",
                         "response_format": "pcm", **EXTRA})
    assert r.status_code == 200 and "ignores instructions" in r.headers["x-qwen3tts-warning"]
    r = httpx.post(server.url + "/v1/audio/speech", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                   json={"model": MODEL_ID, "voice": "ryan", "input": "Hi.", "response_format": "pcm", **EXTRA})
    assert "x-qwen3tts-warning" not in r.headers
