"""The OpenAI-compatible speech server (FastAPI): a front door on one loaded model and its scheduler.

    POST /v1/audio/speech        OpenAI's speech request; audio streamed as it is made (or SSE)
    GET  /v1/models              the one model this server serves
    GET  /v1/audio/voices        its built-in speakers and saved voices
    POST /v1/audio/voices        a saved voice from a recording (Base models; multipart name,
                                 audio_sample, optional ref_text), kept in --voices-dir
    DELETE /v1/audio/voices/{name}
    GET  /health                 200 once the model is loaded (the app is built after that)
    WS   /v1/audio/speech/stream text streamed in, s16le 24 kHz PCM streamed out

Every request goes through the engine's Scheduler, so callers share one batch and each gets what
it would get alone. A request is checked before it is queued: a bad field is a 400 in OpenAI's
error shape, a full queue a 429 with Retry-After, a disconnect cancels the request at once.
"""

from __future__ import annotations

import base64
import io
import json
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ..engine.feed import FeedCancelled
from ..engine.scheduler import Scheduler
from ..errors import BusyError, InputError, RequestError
from ..io.encode import MEDIA_TYPES, StreamEncoder

RESPONSE_FORMATS = ("mp3", "opus", "aac", "flac", "wav", "pcm")
DEFAULT_MAX_INPUT_CHARS = 4096  # OpenAI's limit
# The extensions a request may carry beside OpenAI's fields, and their JSON types.
EXTENSIONS = {"language": str, "seed": int, "greedy": bool, "temperature": (int, float), "top_k": int,
              "top_p": (int, float), "repetition_penalty": (int, float), "max_frames": int}
RETRY_AFTER_S = 1
WS_IDLE_S = 60.0  # a text-in session that sends nothing for this long is closed (it holds a batch row)
MAX_UPLOAD_BYTES = 10 * 2**20
# A saved voice's name is its file name: letters, digits, and - _ . inside, nothing that walks
# out of the voices folder.
VOICE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


@dataclass(frozen=True)
class ServerSettings:
    model_id: str
    api_key: str | None = None
    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    voices_dir: Path | None = None  # saved voices (Base models), NAME.safetensors


class APIError(Exception):
    """An error answered in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def create_app(tts, scheduler: Scheduler, settings: ServerSettings) -> FastAPI:
    app = FastAPI(title="qwen3tts", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(APIError)
    async def api_error(_request, e: APIError):
        return e.response()

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request, e: StarletteHTTPException):
        kind = "not_found" if e.status_code == 404 else "http_error"
        return APIError(e.status_code, str(e.detail), kind, code=kind).response()

    @app.middleware("http")
    async def auth(request: Request, call_next):
        if settings.api_key and request.url.path != "/health" and not _authorized(request.headers, settings.api_key):
            return APIError(401, "missing or wrong API key (Authorization: Bearer KEY)", "authentication_error",
                            code="invalid_api_key").response()
        return await call_next(request)

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": settings.model_id}

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": [{"id": settings.model_id, "object": "model", "owned_by": "qwen3tts",
                                            "model_type": tts.model_type}]}

    @app.get("/v1/audio/voices")
    async def voices():
        saved = [{"name": p.stem, "type": "saved"} for p in _saved_voices(settings)]
        return {"voices": [{"name": s, "type": "speaker"} for s in tts.speakers] + saved}

    @app.post("/v1/audio/voices")
    async def create_voice(request: Request):
        if tts.model_type != "base":
            raise APIError(400, f"only Base models clone voices (this model is {tts.model_type})",
                           code="voice_cloning_unsupported")
        if settings.voices_dir is None:
            raise APIError(400, "this server keeps no voices (start it with --voices-dir)", code="no_voices_dir")
        if int(request.headers.get("content-length") or 0) > MAX_UPLOAD_BYTES + 65536:
            raise APIError(413, "upload over 10 MiB", param="audio_sample", code="upload_too_large")
        try:
            form = await request.form(max_part_size=MAX_UPLOAD_BYTES)
        except Exception:  # noqa: BLE001 (a malformed or oversized multipart body)
            raise APIError(400, "expected multipart/form-data with name and audio_sample (at most 10 MiB)",
                           code="invalid_form") from None
        name = _voice_name(form.get("name"))
        upload = form.get("audio_sample")
        if upload is None or not hasattr(upload, "read"):
            raise APIError(400, "audio_sample (a file) is missing", param="audio_sample", code="missing_field")
        data = await upload.read(MAX_UPLOAD_BYTES + 1)
        if len(data) > MAX_UPLOAD_BYTES:
            raise APIError(413, "audio_sample is over 10 MiB", param="audio_sample", code="upload_too_large")
        ref_text = form.get("ref_text")
        ref_text = ref_text if isinstance(ref_text, str) and ref_text.strip() else None
        voice = await anyio.to_thread.run_sync(_make_voice, tts, data, ref_text)
        from ..voice.clone import save_voice

        save_voice(settings.voices_dir / f"{name}.safetensors", voice)
        return {"name": name, "type": "saved", "mode": voice.mode}

    @app.delete("/v1/audio/voices/{name}")
    async def delete_voice(name: str):
        path = _voice_path(settings, name)
        if path is None or not path.is_file():
            raise APIError(404, f"no saved voice {name!r}", param="name", code="voice_not_found")
        path.unlink()
        return {"name": name, "deleted": True}

    @app.post("/v1/audio/speech")
    async def speech(request: Request):
        try:
            body = await request.json()
        except (ValueError, RecursionError):  # not JSON, not UTF-8, nested too deep, a 5000-digit number
            raise APIError(400, "the body is not valid JSON", code="invalid_json") from None
        fields = _speech_fields(body, settings, need_input=True)
        handle = _submit(scheduler, fields, settings=settings)
        fmt = fields["response_format"]
        # What the engine changed about the request (e.g. the 0.6B CustomVoice model drops
        # instructions) is known before the first byte: said in a header.
        headers = {"X-Qwen3TTS-Warning": "; ".join(handle.plan.warnings)} if handle.plan.warnings else None
        if fields["stream_format"] == "sse":
            return _Streaming(_sse(handle, fmt), media_type="text/event-stream", headers=headers)
        return _Streaming(_audio(handle, fmt), media_type=MEDIA_TYPES[fmt], headers=headers)

    @app.websocket("/v1/audio/speech/stream")
    async def speech_stream(ws: WebSocket):
        if settings.api_key and not _authorized(ws.headers, settings.api_key):
            await ws.close(code=1008, reason="missing or wrong API key")
            return
        await ws.accept()
        await _text_in(ws, tts, scheduler, settings)

    return app


def _authorized(headers, key: str) -> bool:
    value = headers.get("authorization", "")
    scheme, _, token = value.partition(" ")
    return scheme.lower() == "bearer" and secrets.compare_digest(token.strip().encode(), key.encode())


def _speech_fields(body: Any, settings: ServerSettings, need_input: bool) -> dict:
    """The request body checked field by field (a 400 names the field); the engine's own checks
    follow at submit."""
    if not isinstance(body, dict):
        raise APIError(400, "the body must be a JSON object", code="invalid_body")
    out: dict = {}
    model = body.get("model")
    if model is not None and model != settings.model_id:
        raise APIError(400, f"unknown model {model!r}; this server serves {settings.model_id!r}", param="model",
                       code="model_not_found")
    if need_input:
        text = body.get("input")
        if not isinstance(text, str):
            raise APIError(400, "input must be a string", param="input", code="invalid_type")
        if not text.strip():
            raise APIError(400, "input is empty", param="input", code="empty_input")
        if len(text) > settings.max_input_chars:
            raise APIError(413, f"input has {len(text)} characters; this server takes at most "
                                f"{settings.max_input_chars}", param="input", code="input_too_long")
        out["input"] = text
    for name in ("voice", "instructions"):
        v = body.get(name)
        if isinstance(v, dict) and name == "voice":
            v = v.get("id")
        if v is not None and not isinstance(v, str):
            raise APIError(400, f"{name} must be a string", param=name, code="invalid_type")
        out[name] = v
    fmt = body.get("response_format", "mp3")
    if fmt not in RESPONSE_FORMATS:
        raise APIError(400, f"unsupported response_format {fmt!r}; supported: {', '.join(RESPONSE_FORMATS)}",
                       param="response_format", code="unsupported_format")
    out["response_format"] = fmt
    stream_format = body.get("stream_format", "audio")
    if stream_format not in ("audio", "sse"):
        raise APIError(400, "stream_format must be 'audio' or 'sse'", param="stream_format", code="invalid_value")
    out["stream_format"] = stream_format
    speed = body.get("speed", 1.0)
    if isinstance(speed, bool) or not isinstance(speed, (int, float)):
        raise APIError(400, "speed must be a number", param="speed", code="invalid_type")
    if speed != 1.0:
        raise APIError(400, "speed other than 1.0 is not supported (no time-stretch)", param="speed",
                       code="unsupported_speed")
    for name, kind in EXTENSIONS.items():
        v = body.get(name)
        if v is None:
            continue
        if isinstance(v, bool) and kind is not bool or not isinstance(v, kind):
            raise APIError(400, f"{name} has the wrong type", param=name, code="invalid_type")
        out[name] = v
    return out


def _saved_voices(settings: ServerSettings) -> list[Path]:
    if settings.voices_dir is None or not settings.voices_dir.is_dir():
        return []
    return sorted(p for p in settings.voices_dir.glob("*.safetensors") if VOICE_NAME.fullmatch(p.stem))


def _voice_name(name) -> str:
    if not isinstance(name, str) or not VOICE_NAME.fullmatch(name) or ".." in name:
        raise APIError(400, "name must be 1-64 letters, digits, '-', '_' or '.', starting with a letter or digit",
                       param="name", code="invalid_voice_name")
    return name


def _voice_path(settings: ServerSettings, name: str) -> Path | None:
    if settings.voices_dir is None or not VOICE_NAME.fullmatch(name) or ".." in name:
        return None
    return settings.voices_dir / f"{name}.safetensors"


def _make_voice(tts, data: bytes, ref_text: str | None):
    """A voice from uploaded audio bytes (any format libsndfile reads), checked as a reference."""
    import soundfile as sf

    try:
        samples, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except Exception:  # noqa: BLE001 (libsndfile says "not audio" in many ways)
        raise APIError(400, "audio_sample is not an audio file libsndfile can read", param="audio_sample",
                       code="invalid_audio") from None
    try:
        return tts.create_voice((samples, rate), ref_text=ref_text, xvector_only=ref_text is None)
    except (InputError, RequestError) as e:
        raise APIError(400, str(e), param="audio_sample", code="invalid_audio") from None


def _submit(scheduler: Scheduler, fields: dict, text=None, settings: ServerSettings | None = None):
    """Queue the request (RequestError -> 400 naming the field, BusyError -> 429)."""
    tts = scheduler.tts
    options = {k: v for k, v in fields.items() if k in EXTENSIONS}
    voice = fields.get("voice")
    saved = _voice_path(settings, voice) if voice and settings is not None else None
    if saved is not None and saved.is_file():
        from ..voice.clone import load_voice

        try:
            options["voice"] = load_voice(saved)
        except InputError as e:
            raise APIError(400, f"saved voice {voice!r}: {e}", param="voice", code="voice_unreadable") from None
    elif voice:
        if tts.model_type != "custom_voice":
            raise APIError(400, f"unknown voice {voice!r}: this {tts.model_type} model has no built-in speakers"
                                + (" (saved voices: GET /v1/audio/voices)" if tts.model_type == "base" else ""),
                           param="voice", code="voice_not_found")
        if voice.strip().lower() not in tts.speakers:
            raise APIError(400, f"unknown voice {voice!r}; voices: {', '.join(tts.speakers)}", param="voice",
                           code="voice_not_found")
        options["speaker"] = voice
    if fields.get("instructions"):
        options["instruct"] = fields["instructions"]
    try:
        return scheduler.submit(fields["input"] if text is None else text, **options)
    except RequestError as e:
        raise APIError(400, str(e), param=_param(e.field), code=e.code) from None
    except InputError as e:
        raise APIError(400, str(e), code="invalid_request") from None
    except BusyError as e:
        raise APIError(429, str(e), "rate_limit_error", code="busy", headers={"Retry-After": str(RETRY_AFTER_S)}) \
            from None


def _param(field: str) -> str:
    return {"text": "input", "instruct": "instructions", "speaker": "voice"}.get(field, field)


class _Streaming(StreamingResponse):
    """A StreamingResponse that always closes its body iterator: when the client goes, the send
    fails (or the response task is cancelled) and the generator's ``finally`` cancels the request
    at once, instead of whenever the generator is garbage-collected."""

    async def __call__(self, scope, receive, send):
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


async def _chunks(handle):
    """The handle's audio chunks, pulled in a worker thread. A consumer that stops early (a client
    that left) cancels the request at once: its row leaves the batch, its place is free."""
    it = iter(handle)
    done = False
    try:
        while True:
            chunk = await anyio.to_thread.run_sync(next, it, None)
            if chunk is None:
                done = True
                return
            yield chunk
    finally:
        if not done:
            handle.cancel()


async def _audio(handle, fmt: str):
    enc = StreamEncoder(fmt)
    async for chunk in _chunks(handle):
        data = enc.write(chunk)
        if data:
            yield data
    tail = enc.close()
    if tail:
        yield tail


async def _sse(handle, fmt: str):
    def event(payload: dict) -> bytes:
        return f"data: {json.dumps(payload)}\n\n".encode()

    enc = StreamEncoder(fmt)
    async for chunk in _chunks(handle):
        data = enc.write(chunk)
        if data:
            yield event({"type": "speech.audio.delta", "audio": base64.b64encode(data).decode()})
    tail = enc.close()
    if tail:
        yield event({"type": "speech.audio.delta", "audio": base64.b64encode(tail).decode()})
    r = handle.result
    yield event({"type": "speech.audio.done", "usage": {"input_tokens": None, "output_frames": r.frames,
                                                        "audio_seconds": round(r.seconds, 3)},
                 "stop_reason": r.stop_reason})


async def _message(ws: WebSocket):
    """The next JSON text message: ValueError for binary or invalid JSON, TimeoutError when the
    client has said nothing for WS_IDLE_S (an idle client would hold its batch row forever)."""
    with anyio.fail_after(WS_IDLE_S):
        message = await ws.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    text = message.get("text")
    if text is None:
        raise ValueError("a binary message")
    return json.loads(text)


async def _text_in(ws: WebSocket, tts, scheduler: Scheduler, settings: ServerSettings) -> None:
    """session.config, input.text..., input.done in; PCM (s16le 24 kHz mono) and audio.done out."""
    from ..io.audio import pcm16

    async def fail(message: str, code: str, type_: str = "invalid_request_error") -> None:
        await ws.send_json({"type": "error", "error": {"message": message, "type": type_, "code": code}})
        await ws.close(code=1008)

    try:
        first = await _message(ws)
    except WebSocketDisconnect:
        return
    except (ValueError, RecursionError, KeyError, TimeoutError):
        await fail("messages are JSON text frames, the first {\"type\": \"session.config\", ...}", "bad_message")
        return
    if not isinstance(first, dict) or first.get("type") != "session.config":
        await fail("the first message must be {\"type\": \"session.config\", ...}", "expected_session_config")
        return
    config = {k: v for k, v in first.items() if k not in ("type", "input")}
    feed = tts.text_feed()
    try:
        fields = _speech_fields(config, settings, need_input=False)
        handle = _submit(scheduler, {**fields, "input": feed}, text=feed, settings=settings)
    except APIError as e:
        await fail(e.message, e.code or "invalid_request", e.type)
        return

    async def read_text():
        from ..text.segment import check_unicode

        try:
            while True:
                try:
                    msg = await _message(ws)
                except (ValueError, RecursionError, KeyError, TimeoutError) as e:
                    feed.cancel()
                    handle.cancel()
                    idle = isinstance(e, TimeoutError)
                    await fail(f"no message for {WS_IDLE_S:g} s: closed" if idle else
                               "messages are JSON text frames", "idle_timeout" if idle else "bad_message")
                    return
                kind = msg.get("type") if isinstance(msg, dict) else None
                text = msg.get("text") if kind == "input.text" else None
                if isinstance(text, str):
                    try:
                        check_unicode(text, "text")
                    except RequestError as e:
                        feed.cancel()
                        handle.cancel()
                        await fail(str(e), e.code)
                        return
                    feed.push(text)
                elif kind == "input.done":
                    feed.close()
                    return
                else:
                    feed.cancel()
                    handle.cancel()
                    await fail("expected {\"type\": \"input.text\", \"text\": \"...\"} or {\"type\": \"input.done\"}",
                               "bad_message")
                    return
        except WebSocketDisconnect:
            feed.cancel()
            handle.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_text)
        try:
            async for chunk in _chunks(handle):
                await ws.send_bytes(pcm16(chunk))
            if not feed.cancelled:
                r = handle.result
                await ws.send_json({"type": "audio.done", "frames": r.frames, "stop_reason": r.stop_reason})
                await ws.close()
        except FeedCancelled:
            pass  # the client's bad message or disconnect: already answered
        except (WebSocketDisconnect, RuntimeError):
            handle.cancel()
        tg.cancel_scope.cancel()

