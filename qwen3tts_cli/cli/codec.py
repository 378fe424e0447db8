"""`qwen3tts encode` and `decode`: audio to codec codes and back, without the talker."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .options import CODEC_MODEL_OPTION, DEVICE_OPTION, QUIET_OPTION
from .output import check_output, save_npy, say_to_stderr

NPY_MAGIC = b"\x93NUMPY"


def encode(
    audio_file: Path = typer.Argument(..., metavar="IN_AUDIO",
                                      help="Audio to encode: wav, flac or ogg, any sample rate and channel count."),
    model: str = CODEC_MODEL_OPTION,
    output: Path = typer.Option(..., "--output", "-o", metavar="CODES.npy",
                                help="Codes to write: int64 .npy \\[frames, 16] (12.5 frames per second)."),
    device: Optional[str] = DEVICE_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Encode audio into codec codes (.npy) that `decode` turns back into audio.

    The audio is mixed to mono and resampled to 24 kHz (band-limited) before the codec encoder runs.
    """
    import time

    from ..codec.encoder import CodecEncoder
    from ..engine import parse_device, resolve_model_folder
    from ..io.resample import load_audio, resample
    from ..voice.clone import CODEC_SAMPLE_RATE

    check_output(output, audio=False)
    wav, sr = load_audio(audio_file)
    dev = parse_device(device)
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    encoder = CodecEncoder.from_folder(folder, device=dev)
    t1 = time.perf_counter()
    codes = encoder.encode(resample(wav, sr, CODEC_SAMPLE_RATE))
    t2 = time.perf_counter()
    save_npy(output, codes)
    seconds = len(wav) / sr
    say_to_stderr(quiet)(f"wrote {escape(str(output))}: {codes.shape[0]} frames from {seconds:.2f} s of audio "
                         f"({sr} Hz); load {t1 - t0:.1f} s, encode {t2 - t1:.1f} s")


def decode(
    codes_file: Path = typer.Argument(..., metavar="CODES.npy",
                                      help="Codec codes: an integer .npy array [frames, 16], values 0..2047."),
    model: str = CODEC_MODEL_OPTION,
    output: Path = typer.Option(..., "--output", "-o", help="WAV file to write (16-bit PCM, 24 kHz)."),
    device: Optional[str] = DEVICE_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Decode codec codes (.npy) into a 24 kHz WAV, exactly as the official decoder does."""
    import time

    from ..io.audio import SAMPLE_RATE, WavWriter
    from ..codec import CodecDecoder
    from ..engine import parse_device, resolve_model_folder

    codes = _read_codes(codes_file)
    check_output(output)
    dev = parse_device(device)
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    decoder = CodecDecoder.from_folder(folder, device=dev)
    t1 = time.perf_counter()
    with WavWriter(output, length=codes.shape[0] * decoder.hop) as wav:
        for chunk in decoder.iter_decode(codes):
            wav.write(chunk.numpy())
    t2 = time.perf_counter()
    seconds = wav.frames / SAMPLE_RATE
    say_to_stderr(quiet)(f"wrote {escape(str(output))}: {codes.shape[0]} frames, {seconds:.2f} s of audio; "
                         f"load {t1 - t0:.1f} s, decode {t2 - t1:.1f} s "
                         f"({seconds / max(t2 - t1, 1e-9):.1f}x real time)")


def _read_codes(path: Path):
    """The codes array of a .npy file, each way it can be wrong said in plain words."""
    import io

    import numpy as np

    from ..codec import check_codes
    from ..errors import InputError, reading

    with reading(path, InputError, expected="a .npy file of codes"):
        data = path.read_bytes()  # once: a pipe (<(...)) cannot be read twice
    if data[:4] == b"PK\x03\x04":
        raise InputError(f"{path}: an .npz archive; expected a single .npy array of codes")
    if data[:len(NPY_MAGIC)] != NPY_MAGIC:
        raise InputError(f"{path}: not a .npy file (codes come from `qwen3tts encode` or `synth --save-codes`)")
    try:
        codes = np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as e:
        if "pickle" in str(e):  # object arrays: loading them would run code from the file
            raise InputError(f"{path}: holds Python objects, not an integer array of codes (not loaded)") from None
        raise InputError(f"{path}: damaged .npy file ({e})") from None
    except EOFError:
        raise InputError(f"{path}: damaged .npy file (cut short)") from None
    try:
        check_codes(codes)
    except InputError as e:
        raise InputError(f"{path}: {e}") from None
    return codes
