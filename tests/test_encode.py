"""Streaming encoders (io/encode.py): chunks in, one continuous file out, in pieces as made."""

import io

import numpy as np
import pytest
import soundfile as sf

from qwen3tts_cli.errors import InputError
from qwen3tts_cli.io.audio import _to_int16, pcm16
from qwen3tts_cli.io.encode import FORMATS, StreamEncoder, encode_audio


def signal(seconds: float = 3.0) -> np.ndarray:
    t = np.arange(int(24000 * seconds)) / 24000
    return (0.4 * np.sin(2 * np.pi * 220 * t) + 0.2 * np.sin(2 * np.pi * 1700 * t)).astype(np.float32)


def stream(fmt: str, x: np.ndarray, chunk: int = 1920):
    enc = StreamEncoder(fmt)
    pieces = [enc.write(x[i:i + chunk]) for i in range(0, len(x), chunk)]
    return pieces, enc.close(), enc


def decode(fmt: str, data: bytes) -> np.ndarray:
    if fmt == "pcm":
        return np.frombuffer(data, "<i2").astype(np.float32) / 32767
    if fmt in ("aac", "flac", "mp3"):
        # FFmpeg, as a player would: a streamed FLAC says "unknown length", which soundfile's
        # whole-file read cannot size.
        import av

        with av.open(io.BytesIO(data), format={"aac": "adts"}.get(fmt, fmt)) as c:
            frames = [f.to_ndarray().reshape(-1) for f in c.decode(audio=0)]
        y = np.concatenate(frames)
        return y.astype(np.float32) / 32768 if y.dtype == np.int16 else y.astype(np.float32)
    y, sr = sf.read(io.BytesIO(data), dtype="float32")
    assert sr == 24000
    return y


def similar(a: np.ndarray, b: np.ndarray) -> float:
    n = min(len(a), len(b)) - 4000
    return max(np.corrcoef(a[2000:n], b[2000 + d:n + d])[0, 1] for d in range(0, 2200, 8))


@pytest.mark.parametrize("fmt", FORMATS)
def test_one_continuous_file_out_in_pieces(fmt):
    pytest.importorskip("av")  # the decoder the checks use (a test extra)
    x = signal()
    pieces, tail, enc = stream(fmt, x)
    data = b"".join(pieces) + tail
    # The encoder hands bytes out before the end (no waiting for the whole stream).
    assert sum(len(p) for p in pieces[: len(pieces) // 2]) > 0, fmt
    y = decode(fmt, data)
    if fmt in ("wav", "pcm", "flac"):
        got = y
        assert len(got) == len(x)
        if fmt == "flac":
            assert np.array_equal(np.rint(got * 32768).astype(np.int16), _to_int16(x))
        if fmt == "wav":
            assert data[:4] == b"RIFF" and data[4:8] == b"\xff\xff\xff\xff"
            assert data[44:] == pcm16(x)
        return
    assert abs(len(y) - len(x)) <= 4096, (fmt, len(y), len(x))
    assert similar(x, y) > 0.9, fmt
    # One container: a single stream header, never one per chunk.
    marker = {"mp3": None, "opus": b"OpusHead", "vorbis": b"\x01vorbis", "aac": None}[fmt]
    if marker is not None:
        assert data.count(marker) == 1
    if fmt == "mp3":
        assert data.count(b"ID3") <= 1 and data.count(b"Xing") + data.count(b"Info") <= 1


def test_whole_files_have_complete_headers():
    x = signal(1.0)
    data = encode_audio(x, "flac")
    assert sf.info(io.BytesIO(data)).frames == len(x)  # FLAC's sample count filled in at the end


def test_unknown_format_is_refused():
    with pytest.raises(InputError, match="unsupported audio format 'ogg'"):
        StreamEncoder("ogg")


def test_empty_streams():
    assert StreamEncoder("wav").close()[:4] == b"RIFF"
    assert StreamEncoder("pcm").close() == b""
    enc = StreamEncoder("mp3")
    enc.write(np.zeros(0, np.float32))
    enc.close()
