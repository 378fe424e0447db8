"""Audio encoders: float chunks in, the bytes of one continuous file out, as the encoder makes them.

    enc = StreamEncoder("mp3")
    for chunk in stream:
        send(enc.write(chunk))      # whatever the encoder has finished so far (may be b"")
    send(enc.close())               # the rest

One container for the whole stream, never one per chunk: a player sees a single file with no
seams. Formats:

    wav    our own 16-bit header, its sizes saying "unknown length" (a stream), then the samples
    pcm    raw s16le samples
    flac   libsndfile (through soundfile): the WAV's 16-bit samples, lossless
    mp3    libsndfile (LAME): MPEG-2 Layer III at 24 kHz, 112 kbit/s constant bitrate
    opus   libsndfile (libopus): Ogg Opus
    aac    PyAV (FFmpeg's AAC encoder) in an ADTS stream; needs the `av` package

libsndfile writes through a file object here. It may go back to fill in a header once it knows
the length: FLAC's STREAMINFO sample count, for example. Bytes that have already gone out cannot
change, so a streamed file keeps the values written first, and every decoder reads that as
"unknown length". ``whole=True`` keeps every byte until ``close`` so such headers are complete;
``encode_audio`` uses it for files.
"""

from __future__ import annotations

import io

import numpy as np

from ..errors import InputError
from .audio import SAMPLE_RATE, _to_int16, pcm16, wav_header

# format -> (libsndfile format, subtype); wav, pcm and aac are written otherwise.
_SNDFILE = {"flac": ("FLAC", "PCM_16"), "mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"),
            "vorbis": ("OGG", "VORBIS")}
FORMATS = ("wav", "pcm", "flac", "mp3", "opus", "aac", "vorbis")
MEDIA_TYPES = {"wav": "audio/wav", "pcm": "audio/pcm", "flac": "audio/flac", "mp3": "audio/mpeg",
               "opus": "audio/ogg; codecs=opus", "aac": "audio/aac", "vorbis": "audio/ogg; codecs=vorbis"}


class _Sink(io.RawIOBase):
    """A write-only file for an encoder: bytes are kept until ``drain`` hands them out. A seek back
    into bytes already handed out is allowed, but what is written there is dropped."""

    def __init__(self):
        super().__init__()
        self.buf = bytearray()  # the bytes from ``base`` on
        self.base = 0  # bytes handed out so far
        self.pos = 0

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return False

    def write(self, data) -> int:
        data = bytes(data)
        n = len(data)
        start = self.pos
        if start < self.base:  # out already: that part cannot change
            data = data[self.base - start:]
            start = self.base
        at = start - self.base
        if data:
            end = at + len(data)
            if end > len(self.buf):
                self.buf.extend(b"\0" * (end - len(self.buf)))
            self.buf[at:end] = data
        self.pos += n
        return n

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        size = self.base + len(self.buf)
        self.pos = {io.SEEK_SET: offset, io.SEEK_CUR: self.pos + offset, io.SEEK_END: size + offset}[whence]
        return self.pos

    def tell(self) -> int:
        return self.pos

    def drain(self) -> bytes:
        out = bytes(self.buf)
        self.base += len(out)
        self.buf = bytearray()
        return out


class StreamEncoder:
    """Float32 mono chunks -> the bytes of one file in ``fmt`` (see the module doc)."""

    def __init__(self, fmt: str, sample_rate: int = SAMPLE_RATE, whole: bool = False):
        if fmt not in FORMATS:
            raise InputError(f"unsupported audio format '{fmt}'; supported: {', '.join(FORMATS)}")
        self.fmt, self.sample_rate, self.whole = fmt, sample_rate, whole
        self.media_type = MEDIA_TYPES[fmt]
        self._sink = _Sink()
        self._file = self._av = None
        self._started = False
        self._skip = 0  # bytes still to leave out (mp3: the tag frame)
        self.samples = 0
        if fmt in _SNDFILE:
            import soundfile as sf

            f, subtype = _SNDFILE[fmt]
            # MP3 at a constant bitrate: a stream has no length tag (see _drain), and at a constant
            # bitrate a reader that estimates the length from the file size gets it right.
            # (libsndfile keeps it constant only with a compression level: 0.3 is 112 kbit/s at 24 kHz.)
            extra = {"bitrate_mode": "CONSTANT", "compression_level": 0.3} if fmt == "mp3" else {}
            self._file = sf.SoundFile(self._sink, "w", sample_rate, 1, format=f, subtype=subtype, **extra)
        elif fmt == "aac":
            self._av = _AacEncoder(self._sink, sample_rate)

    def write(self, samples) -> bytes:
        x = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.samples += len(x)
        if self.fmt in ("wav", "pcm"):
            head = b""
            if self.fmt == "wav" and not self._started:
                head = wav_header(None, self.sample_rate)
            self._started = True
            return head + pcm16(x)
        if self._file is not None:
            self._file.write(_to_int16(x) if self.fmt == "flac" else _clip(x))
        else:
            self._av.write(_clip(x))
        return b"" if self.whole else self._drain()

    def _drain(self) -> bytes:
        data = self._sink.drain()
        if self.fmt == "mp3" and not self._started and len(data) >= 4:
            # libsndfile's first MP3 frame is the encoder's tag (length and delay), filled in at the
            # end: gone by then in a stream, and a decoder that trusts it would stop early. A
            # stream leaves it out (it may span several drains).
            self._started = True
            self._skip = _mp3_frame_length(data)
        if self._skip:
            cut = min(self._skip, len(data))
            data, self._skip = data[cut:], self._skip - cut
        return data

    def close(self) -> bytes:
        """The rest of the file (an empty wav stream still gets its header)."""
        if self.fmt == "wav" and not self._started:
            self._started = True
            return wav_header(None, self.sample_rate)
        if self._file is not None:
            self._file.close()
        elif self._av is not None:
            self._av.close()
        return self._sink.drain() if self.whole else self._drain()


# MPEG audio Layer III bitrates (kbit/s) by version (1, or 2 and 2.5) and index; sample rates.
_MP3_KBPS = {1: (0, 32, 40, 48, 56, 64, 80, 96, 112, 128, 160, 192, 224, 256, 320),
             2: (0, 8, 16, 24, 32, 40, 48, 56, 64, 80, 96, 112, 128, 144, 160)}
_MP3_RATES = {3: (44100, 48000, 32000), 2: (22050, 24000, 16000), 0: (11025, 12000, 8000)}


def _mp3_frame_length(data: bytes) -> int:
    """Bytes of the Layer III frame at the start of ``data`` (0 if it does not start with one)."""
    if len(data) < 4 or data[0] != 0xFF or data[1] & 0xE0 != 0xE0:
        return 0
    version = (data[1] >> 3) & 3  # 3: MPEG-1, 2: MPEG-2, 0: MPEG-2.5
    bitrate = (data[2] >> 4) & 15
    rate = (data[2] >> 2) & 3
    if version == 1 or bitrate in (0, 15) or rate == 3:
        return 0
    kbps = _MP3_KBPS[1 if version == 3 else 2][bitrate]
    samples = 1152 if version == 3 else 576
    return samples // 8 * kbps * 1000 // _MP3_RATES[version][rate] + ((data[2] >> 1) & 1)


def _clip(x: np.ndarray) -> np.ndarray:
    return np.clip(np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


class _AacEncoder:
    """AAC-LC in ADTS frames through PyAV (the `av` package, FFmpeg's native encoder)."""

    def __init__(self, sink, sample_rate: int):
        try:
            import av
        except ImportError:
            raise InputError("aac needs the 'av' package (pip install 'qwen3tts-cli[serve]')") from None
        self.av = av
        self.container = av.open(sink, mode="w", format="adts")
        self.stream = self.container.add_stream("aac", rate=sample_rate)
        self.stream.layout = "mono"
        self.rate = sample_rate
        self.pts = 0

    def write(self, x: np.ndarray) -> None:
        if not len(x):
            return
        frame = self.av.AudioFrame.from_ndarray(x[None, :], format="flt", layout="mono")
        frame.sample_rate, frame.pts = self.rate, self.pts
        self.pts += len(x)
        for packet in self.stream.encode(frame):
            self.container.mux(packet)

    def close(self) -> None:
        for packet in self.stream.encode(None):
            self.container.mux(packet)
        self.container.close()


def encode_audio(samples, fmt: str, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A whole file in memory: every header complete (FLAC's sample count too)."""
    enc = StreamEncoder(fmt, sample_rate, whole=True)
    return enc.write(samples) + enc.close()
