"""A voice to clone from a recording (Base models): the options of one clone and the checks on
its audio, shared by every front door. Light to import: nothing here loads torch up front.

Reference audio is accepted when it lasts at least ``MIN_REF_SECONDS`` and its RMS level is at
least ``SILENCE_DBFS`` (dB relative to full scale): quieter than that it is treated as silence.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError, RequestError

if TYPE_CHECKING:
    import numpy as np

MIN_REF_SECONDS = 1.0
# -60 dBFS RMS: far below any usable recording (speech is typically -30..-15 dBFS), well above
# the dither floor of 16-bit "digital silence".
SILENCE_DBFS = -60.0


@dataclass(frozen=True)
class CloneReference:
    """``audio``: a file (wav/flac/ogg, any rate and channel count) or ``(samples, sample_rate)``.
    In-context cloning (the default) needs ``ref_text``, the recording's transcript;
    ``xvector_only`` clones from the speaker embedding alone (no transcript, weaker likeness)."""

    audio: Any
    ref_text: str | None = None
    xvector_only: bool = False

    def __post_init__(self):
        from ..text.segment import check_unicode, normalize_text

        if isinstance(self.ref_text, str):
            check_unicode(self.ref_text, "ref_text")
        if self.xvector_only and self.ref_text is not None:
            raise RequestError("a reference transcript (ref_text) is only used for in-context cloning: give "
                               "ref_text or xvector_only, not both", "ref_text", "ref_text_with_xvector_only")
        if not self.xvector_only and (self.ref_text is None or not normalize_text(self.ref_text)):
            raise RequestError("in-context voice cloning needs the transcript of the reference audio (ref_text), "
                               "or xvector_only to clone from the speaker embedding alone",
                               "ref_text", "ref_text_missing")

    @property
    def mode(self) -> str:
        return "xvector" if self.xvector_only else "icl"

    def read(self) -> "CloneReference":
        """This reference with its audio read and checked: ``(samples, sample_rate)``, mono float32."""
        return replace(self, audio=reference_waveform(self.audio))


def reference_waveform(ref_audio) -> tuple[np.ndarray, int]:
    """A file path or ``(samples, sample_rate)`` -> (mono float32, rate), checked for use as a
    reference: readable, finite, at least MIN_REF_SECONDS long, not silent."""
    import numpy as np
    import torch

    from ..io.resample import load_audio

    if isinstance(ref_audio, (str, Path)):
        wav, sr = load_audio(ref_audio)
        where = f"{ref_audio}: "
    elif isinstance(ref_audio, tuple) and len(ref_audio) == 2 and isinstance(ref_audio[0], (np.ndarray, torch.Tensor)):
        wav, sr = ref_audio
        wav = wav.detach().cpu().numpy() if isinstance(wav, torch.Tensor) else wav
        where = "reference audio: "
        if not isinstance(sr, (int, np.integer)) or int(sr) <= 0:
            raise InputError(f"{where}sample rate must be a positive integer, got {sr!r}")
        if wav.ndim == 2:  # [samples, channels], as soundfile reads it
            wav = wav.mean(axis=-1)
        if wav.ndim != 1 or not np.issubdtype(wav.dtype, np.floating):
            raise InputError(f"{where}expected float samples [samples] or [samples, channels], "
                             f"got {wav.dtype} {list(wav.shape)}")
        if wav.size == 0:
            raise InputError(f"{where}no samples")
        if not np.isfinite(wav).all():
            raise InputError(f"{where}contains NaN or infinite samples")
        wav, sr = np.ascontiguousarray(wav, dtype=np.float32), int(sr)
    else:
        raise InputError("reference audio must be a file path or a (samples, sample_rate) tuple")
    seconds = len(wav) / sr
    if seconds < MIN_REF_SECONDS:
        raise InputError(f"{where}{seconds:.2f} s is too short for a reference voice (at least "
                         f"{MIN_REF_SECONDS:g} s; 3-10 s of clear speech work best)")
    rms = math.sqrt(float(np.mean(np.square(wav, dtype=np.float64))))
    level = 20 * math.log10(rms) if rms > 0 else -math.inf
    if level < SILENCE_DBFS:
        shown = "-inf" if level == -math.inf else f"{level:.0f}"
        raise InputError(f"{where}silent (RMS level {shown} dBFS, below {SILENCE_DBFS:g} dBFS): "
                         "a reference voice needs audible speech")
    return wav, sr


