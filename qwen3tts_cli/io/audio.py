"""Audio output: WAV files written atomically (whole or chunk by chunk), raw s16le PCM, and
FLAC, MP3, Ogg Vorbis and Ogg Opus files (io/encode.py).

A file is first written to a hidden temporary file beside the target and renamed over it only when
complete, so an interrupted or failed write never leaves a partial file at the target path.
The WAV bytes are our own (a 44-byte header and little-endian samples): writing a WAV needs no
libsndfile, and a write error is an OSError naming the file. The compressed formats are encoded
in memory by io/encode.py (libsndfile) and written the same way.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import InputError
from .files import naming, output_target, replace_atomically

SAMPLE_RATE = 24000
AUDIO_SUFFIXES = ("", ".wav")  # what audio files can be written as (WAV; a name without a suffix too)
# Compressed formats a file name may ask for, by suffix (encoders in io/encode.py).
ENCODED = {".flac": "flac", ".mp3": "mp3", ".ogg": "vorbis", ".opus": "opus"}


def check_audio_name(path: str | Path, encoded: bool = False) -> None:
    """Refuse an output name whose suffix promises a format this output does not write: WAV, and
    with ``encoded`` also FLAC, MP3, Ogg Vorbis (.ogg) and Ogg Opus (.opus)."""
    suffix = Path(path).suffix.lower()
    if suffix in AUDIO_SUFFIXES or (encoded and suffix in ENCODED):
        return
    if suffix in ENCODED:
        raise InputError(f"{path}: this output is written as it is produced, as WAV: use a .wav name "
                         f"(synth writes {', '.join(ENCODED)} too)")
    what = ", ".join(("wav", *(s.lstrip(".") for s in ENCODED))) if encoded else "WAV: use a .wav name"
    raise InputError(f"{path}: unsupported output format '{Path(path).suffix}' (this output writes {what})")


def write_audio(path: str | Path, samples, sample_rate: int = SAMPLE_RATE) -> Path:
    """Write mono samples atomically in the format the name asks for: WAV (16-bit), or FLAC, MP3,
    Ogg Vorbis or Ogg Opus (ENCODED)."""
    from .encode import encode_audio

    suffix = Path(path).suffix.lower()
    if suffix not in ENCODED:
        return write_wav(path, samples, sample_rate)
    data = encode_audio(samples, ENCODED[suffix], sample_rate)
    with replace_atomically(Path(path)) as (where, _):
        with naming(Path(path)), open(where, "wb") as f:
            f.write(data)
    return Path(path)


SUBTYPES = ("pcm16", "float32")
_PCM16_SCALE = np.float32(32767.0)


def pcm16(samples) -> bytes:
    """Float samples -> 16-bit little-endian PCM bytes.

    Clipped to [-1, 1], scaled by 32767 in float32 and rounded to nearest (half to even), so the
    scale is symmetric and silence stays 0. WAV files get the same integers (``write_wav`` converts
    itself instead of letting libsndfile do it: libsndfile 1.2 scales by 32768 and rounds down,
    and its behaviour has changed between versions).
    """
    return _to_int16(samples).astype("<i2", copy=False).tobytes()


def _to_int16(samples) -> np.ndarray:
    x = np.asarray(samples, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"expected mono samples [n], got shape {list(x.shape)}")
    x = np.nan_to_num(x, nan=0.0, posinf=1.0, neginf=-1.0)
    return np.rint(np.clip(x, -1.0, 1.0) * _PCM16_SCALE).astype(np.int16)


class WavWriter:
    """Append mono float chunks to a WAV file that appears at ``path`` only on success.

        with WavWriter("out.wav") as w:
            for chunk in chunks:
                w.write(chunk)

    Any exception (including KeyboardInterrupt) inside the block leaves no partial file and an
    existing ``path`` untouched (io/files.py: a symlink's target is replaced; a device or FIFO is
    written through, with ``length`` samples in its header if given, else "unknown length"). The
    bytes are written here, not by libsndfile: a full disk is an OSError naming the file.
    """

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE, subtype: str = "pcm16",
                 length: int | None = None):
        if subtype not in SUBTYPES:
            raise ValueError(f"subtype must be one of {sorted(SUBTYPES)}")
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.subtype = subtype
        self.length = length
        self.frames = 0
        self._target = None  # the replace_atomically context
        self._file = None
        self._through = False

    def __enter__(self) -> "WavWriter":
        self._target = replace_atomically(self.path)
        where, self._through = self._target.__enter__()
        try:
            with naming(self.path):
                self._file = open(where, "wb")
            self._put(wav_header(self.length, self.sample_rate, self.subtype))
        except BaseException as e:
            self.__exit__(type(e), e, e.__traceback__)
            raise
        return self

    def write(self, samples) -> None:
        if self.subtype == "pcm16":
            # Our own conversion (not libsndfile's), so clipping never depends on its version.
            data = _to_int16(samples).astype("<i2", copy=False)
        else:
            data = np.asarray(samples, dtype="<f4")
            if data.ndim != 1:
                raise ValueError(f"expected mono samples [n], got shape {list(data.shape)}")
        self._put(data.tobytes())
        self.frames += len(data)

    def _put(self, data: bytes) -> None:
        with naming(self.path):
            self._file.write(data)

    def __exit__(self, exc_type, exc, tb) -> None:
        file = self._file
        target, self._target = self._target, None
        if exc_type is None:
            try:
                if not self._through and self.frames != self.length:  # the sizes, now known
                    file.seek(0)
                    self._put(wav_header(self.frames, self.sample_rate, self.subtype))
                self._file = None
                with naming(self.path):
                    file.close()  # the last flush
            except BaseException as e:
                self._file = None
                target.__exit__(type(e), e, e.__traceback__)  # the temporary file goes
                raise
            target.__exit__(None, None, None)  # renamed into place
            return
        self._file = None
        if file is not None:
            try:
                file.close()
            except Exception:
                pass
        target.__exit__(exc_type, exc, tb)  # the temporary file goes; the exception goes on


def write_wav(path: str | Path, samples, sample_rate: int = SAMPLE_RATE, subtype: str = "pcm16") -> Path:
    """Write mono samples as a WAV file atomically: 16-bit PCM by default, or ``subtype="float32"``."""
    with WavWriter(path, sample_rate, subtype, length=len(samples)) as w:
        w.write(samples)
    return Path(path)


def wav_bytes(samples, sample_rate: int = SAMPLE_RATE) -> bytes:
    """A complete 16-bit PCM WAV file in memory (for standard output), same samples as ``write_wav``."""
    data = pcm16(samples)
    return wav_header(len(data) // 2, sample_rate) + data


# A RIFF/data size field meaning "unknown length": what streaming writers put on a pipe, where the
# header cannot be rewritten (sox, ffmpeg and aplay read such a stream to its end).
UNKNOWN_LENGTH = 0xFFFFFFFF


def wav_header(n_samples: int | None, sample_rate: int = SAMPLE_RATE, subtype: str = "pcm16") -> bytes:
    """The 44-byte header of a mono WAV holding ``n_samples`` (None: unknown length): 16-bit PCM,
    or IEEE float32 with ``subtype="float32"``."""
    fmt, width = (3, 4) if subtype == "float32" else (1, 2)
    if n_samples is None:
        data = riff = UNKNOWN_LENGTH
    else:
        data = width * n_samples
        riff = 36 + data
        if riff > UNKNOWN_LENGTH:
            raise ValueError("too long for a WAV file (4 GiB)")
    return (b"RIFF" + riff.to_bytes(4, "little") + b"WAVEfmt " + (16).to_bytes(4, "little")
            + fmt.to_bytes(2, "little") + (1).to_bytes(2, "little") + sample_rate.to_bytes(4, "little")
            + (width * sample_rate).to_bytes(4, "little") + width.to_bytes(2, "little")
            + (8 * width).to_bytes(2, "little") + b"data" + data.to_bytes(4, "little"))


class ProgressiveWavWriter:
    """A 16-bit mono WAV written at ``path`` as audio arrives, valid after every ``write``.

    Unlike ``WavWriter`` (atomic: nothing at ``path`` until complete), this is for streaming: the
    samples go straight into the file and the header's sizes are rewritten after each chunk, so
    the file is a valid WAV of everything written so far even if the process is interrupted or
    killed. Same integer conversion as ``pcm16``. A name that is not a regular file (a FIFO, a
    device) is written through with an "unknown length" header, as a stream on stdout.
    """

    def __init__(self, path: str | Path, sample_rate: int = SAMPLE_RATE):
        self.path = Path(path)
        self.sample_rate = sample_rate
        self.frames = 0
        target, through = output_target(self.path)
        self._seekable = not through
        with naming(self.path):
            self._file = open(target, "wb")
        self._put(wav_header(0 if self._seekable else None, sample_rate))

    def write(self, samples) -> None:
        data = pcm16(samples)
        if not data:
            return
        self._put(data)
        self.frames += len(data) // 2
        if self._seekable:
            # Sizes first in the header, then back to the end: a reader sees a consistent file.
            header = wav_header(self.frames, self.sample_rate)
            self._put(header[4:8], at=4)
            self._put(header[40:44], at=40)
            self._file.seek(0, os.SEEK_END)

    def _put(self, data: bytes, at: int | None = None) -> None:
        with naming(self.path):
            if at is not None:
                self._file.seek(at)
            self._file.write(data)
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> "ProgressiveWavWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()  # the header is already right, whatever happened
