"""`qwen3tts encode` and `decode`: audio to codec codes and back, without the talker."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .app import err
from .options import CODEC_MODEL_OPTION, DEVICE_OPTION
from .output import check_output, save_npy


def encode(
    audio_file: Path = typer.Argument(..., metavar="IN_AUDIO",
                                      help="Audio to encode: wav, flac or ogg, any sample rate and channel count."),
    model: str = CODEC_MODEL_OPTION,
    output: Path = typer.Option(..., "--output", "-o", metavar="CODES.npy",
                                help="Codes to write: int64 .npy \\[frames, 16] (12.5 frames per second)."),
    device: Optional[str] = DEVICE_OPTION,
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
    err.print(f"wrote {escape(str(output))}: {codes.shape[0]} frames from {seconds:.2f} s of audio "
              f"({sr} Hz); load {t1 - t0:.1f} s, encode {t2 - t1:.1f} s", soft_wrap=True)


def decode(
    codes_file: Path = typer.Argument(..., metavar="CODES.npy",
                                      help="Codec codes: an integer .npy array [frames, 16], values 0..2047."),
    model: str = CODEC_MODEL_OPTION,
    output: Path = typer.Option(..., "--output", "-o", help="WAV file to write (16-bit PCM, 24 kHz)."),
    device: Optional[str] = DEVICE_OPTION,
) -> None:
    """Decode codec codes (.npy) into a 24 kHz WAV, exactly as the official decoder does."""
    import time

    import numpy as np

    from ..io.audio import SAMPLE_RATE, WavWriter
    from ..codec import CodecDecoder, check_codes
    from ..engine import parse_device, resolve_model_folder
    from ..errors import InputError

    if not codes_file.is_file():
        raise InputError(f"{codes_file}: file not found")
    try:
        codes = np.load(codes_file, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{codes_file}: not a readable .npy array ({e})") from None
    if not isinstance(codes, np.ndarray):
        codes.close()
        raise InputError(f"{codes_file}: expected a single .npy array, not an .npz archive")
    try:
        check_codes(codes)
    except InputError as e:
        raise InputError(f"{codes_file}: {e}") from None
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
    err.print(f"wrote {output}: {codes.shape[0]} frames, {seconds:.2f} s of audio; load {t1 - t0:.1f} s, "
              f"decode {t2 - t1:.1f} s ({seconds / max(t2 - t1, 1e-9):.1f}x real time)", soft_wrap=True)
