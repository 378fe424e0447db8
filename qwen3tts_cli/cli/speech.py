"""What synth and stream share: their options as one object each, and the road from those options
to a checked request and a loaded model. Every check that needs no weights runs before they load."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Optional

from rich.markup import escape

from ..engine.request import SpeechRequest, check_speaker_or_voice
from ..errors import InputError, RequestError
from .options import DEVICE_OPTIONS, SPEECH_OPTIONS, OptionGroup


@dataclass(frozen=True)
class SpeechOptions:
    model: str
    speaker: Optional[str]
    language: str
    instruct: Optional[str]
    ref_audio: Optional[Path]
    ref_text: Optional[str]
    xvector_only: bool
    voice_file: Optional[Path]
    greedy: bool
    seed: Optional[int]
    max_frames: Optional[int]
    no_split: bool
    max_chars: int
    pause: float
    allow_truncation: bool
    temperature: Optional[float]
    top_k: Optional[int]
    top_p: Optional[float]
    repetition_penalty: Optional[float]


@dataclass(frozen=True)
class DeviceOptions:
    device: Optional[str]
    dtype: Optional[str]


SPEECH = OptionGroup(SpeechOptions, **SPEECH_OPTIONS)
DEVICE = OptionGroup(DeviceOptions, **DEVICE_OPTIONS)


def voice_source(o: SpeechOptions):
    """The voice the options ask for, checked before anything else: a reference recording (read and
    checked now, cloned once the model is loaded), a loaded voice file, or None."""
    from ..voice.reference import CloneReference

    if o.ref_audio is not None and o.voice_file is not None:
        raise InputError("give either --ref-audio (clone now) or --voice (a saved voice), not both")
    if o.ref_audio is None and (o.ref_text is not None or o.xvector_only):
        raise InputError("--ref-text and --xvector-only go with --ref-audio" +
                         (" (a --voice file already holds its transcript)" if o.voice_file is not None else ""))
    if o.ref_audio is not None:
        try:
            ref = CloneReference(str(o.ref_audio), ref_text=o.ref_text, xvector_only=o.xvector_only)
        except RequestError as e:  # a contradiction first, then the speaker, then a missing transcript
            if e.code == "ref_text_missing":
                check_speaker_or_voice(o.speaker, True)
            raise
    check_speaker_or_voice(o.speaker, o.ref_audio is not None or o.voice_file is not None)
    if o.ref_audio is not None:
        return ref.read()
    if o.voice_file is not None:
        from ..voice.clone import load_voice

        return load_voice(o.voice_file)
    return None


def speech_request(o: SpeechOptions, text: str, voice, **fields) -> SpeechRequest:
    """The request the options describe for ``text``, with ``voice`` from ``voice_source`` (checked:
    no model needed)."""
    sampling = dict(temperature=o.temperature, top_k=o.top_k, top_p=o.top_p, repetition_penalty=o.repetition_penalty)
    return SpeechRequest(text, speaker=o.speaker, language=o.language, instruct=o.instruct, voice=voice,
                         greedy=o.greedy, seed=o.seed, max_frames=o.max_frames, split=not o.no_split,
                         max_chars=o.max_chars, pause=o.pause,
                         sampling={k: v for k, v in sampling.items() if v is not None}, **fields)


def check_against_model(folder: Path, request: SpeechRequest):
    """The request against the model's config.json and generation_config.json (no weights)."""
    from ..engine.load import model_files

    files = model_files(folder)
    return request.resolve(files.model_config(), files.generation())


def load_model(folder: Path, device, dtype: str | None, status: bool = False):
    """(the loaded model, seconds it took); ``status``: a spinner on the terminal meanwhile."""
    from ..engine import load_tts
    from .app import err

    t0 = time.perf_counter()
    if status:
        with err.status("loading the model…"):
            tts = load_tts(folder, device=device, dtype=dtype)
    else:
        tts = load_tts(folder, device=device, dtype=dtype)
    return tts, time.perf_counter() - t0


def with_voice(tts, request: SpeechRequest, say=None, source: Path | None = None) -> SpeechRequest:
    """The request with a reference recording turned into this model's voice (made once, reused for
    every utterance); ``say``: a note of what was made from ``source`` and how long it took."""
    from ..voice.reference import CloneReference

    ref = request.voice
    if not isinstance(ref, CloneReference):
        return request
    t = time.perf_counter()
    voice = tts.create_voice(ref.audio, ref_text=ref.ref_text, xvector_only=ref.xvector_only)
    if say is not None:
        say(f"voice: {'in-context' if voice.mode == 'icl' else 'x-vector only'} clone of "
            f"{escape(str(source))} ({time.perf_counter() - t:.1f} s)")
    return replace(request, voice=voice)
