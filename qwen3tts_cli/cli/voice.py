"""`qwen3tts voice create` and `voice info`: reusable cloned voices (Base models)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from .options import DEVICE_OPTION, QUIET_OPTION
from .output import check_output, print_stdout, say_to_stderr

voice_app = typer.Typer(help="Make and inspect reusable cloned voices (Base models).", no_args_is_help=True)


def voice_create(
    ref_audio: Path = typer.Option(..., "--ref-audio", metavar="AUDIO",
                                   help="Reference recording: wav, flac or ogg, at least 1 s (3-10 s of clear "
                                        "speech work best)."),
    ref_text: Optional[str] = typer.Option(None, "--ref-text",
                                           help="Transcript of the reference (in-context cloning, the default)."),
    xvector_only: bool = typer.Option(False, "--xvector-only",
                                      help="Clone from the speaker embedding alone: no transcript needed, "
                                           "weaker likeness."),
    model: str = typer.Option(..., "--model", "-m", help="Base model folder, repo id or short name (e.g. 0.6B-Base)."),
    output: Path = typer.Option(..., "--output", "-o", metavar="VOICE.safetensors", help="Voice file to write."),
    device: Optional[str] = DEVICE_OPTION,
    quiet: bool = QUIET_OPTION,
) -> None:
    """Turn reference audio into a voice file for `synth --voice` (no recomputation on reuse).

    The file records the model it was made for; it works with that model size only.
    """
    import time

    from ..engine import parse_device, resolve_model_folder
    from ..voice.clone import VoiceMaker, save_voice
    from ..voice.reference import CloneReference

    reference = CloneReference(str(ref_audio), ref_text=ref_text, xvector_only=xvector_only)
    check_output(output, audio=False)
    dev = parse_device(device)
    folder = resolve_model_folder(model)
    t0 = time.perf_counter()
    voice = VoiceMaker(folder, device=dev).create(reference.audio, ref_text=ref_text, xvector_only=xvector_only)
    save_voice(output, voice)
    what = (f"in-context, {voice.frames} reference frames" if voice.mode == "icl" else "x-vector only")
    say_to_stderr(quiet)(f"wrote {escape(str(output))}: {what}, from {voice.ref_seconds:.2f} s of audio, for "
                         f"{voice.describe_model()} ({time.perf_counter() - t0:.1f} s)")


def voice_info(voice_file: Path = typer.Argument(..., metavar="VOICE.safetensors", help="A voice file."),
               quiet: bool = QUIET_OPTION) -> None:
    """Show what a voice file holds and which model it was made for (on stdout; --quiet is accepted as
    everywhere, and there is nothing else to leave out)."""
    from ..voice.clone import load_voice

    v = load_voice(voice_file)
    lines = [("mode", "in-context (x-vector + reference codes + transcript)" if v.mode == "icl"
              else "x-vector only"),
             ("model", v.describe_model()),
             ("x-vector", f"{v.xvector.numel()} values"),
             ("reference", f"{v.ref_seconds:.2f} s" + (f", {v.frames} frames" if v.mode == "icl" else "")),
             ("transcript", v.ref_text if v.ref_text is not None else "(none)"),
             ("made by", f"qwen3tts {v.tool_version}")]
    print_stdout("".join(f"{k}: {val}\n" for k, val in lines))
