"""Option definitions shared by the commands: written once, so that names, defaults and help stay
in step. Defaults come from the engine's own constants.

``OptionGroup`` lets several commands take the same run of options: a command declares one
parameter whose default is the group; Typer sees the group's options in its place, and the command
receives them as one object.
"""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Any, Optional

import typer

from ..engine.request import DEFAULT_LANGUAGE, DEFAULT_PAUSE, DEFAULT_SPEAKER
from ..io.repos import DEFAULT_MODEL
from ..text.segment import DEFAULT_MAX_CHARS, MIN_MAX_CHARS

DEVICE_OPTION = typer.Option(None, "--device", help="cpu or cuda (default: cuda if available).")
DTYPE_OPTION = typer.Option(None, "--dtype",
                            help="float32 or bfloat16; on CPU also w8a8 (int8 weights and activations: fastest) "
                                 "or int8 (int8 weights, bf16 activations) (default: float32 on CPU, bfloat16 "
                                 "on CUDA).")
QUIET_OPTION = typer.Option(False, "--quiet", "-q", help="Print nothing but errors.")


def comma_counts(value: str | None, flag: str, what: str = "counts") -> list[int] | None:
    """A flag's "1,2,4" -> [1, 2, 4] (None stays None); anything else is one usage error."""
    if value is None:
        return None
    try:
        counts = [int(v) for v in value.split(",")]
    except ValueError:
        counts = []
    if not counts or min(counts) < 1:
        from ..errors import InputError

        raise InputError(f"{flag} must be positive {what} separated by commas (got {value!r})")
    return counts


def save_codes_option(when: str):
    """--save-codes FILE.npy; ``when`` says what that command writes and when."""
    return typer.Option(None, "--save-codes", metavar="FILE.npy",
                        help=f"Also write the codec codes as int64 .npy \\[frames, 16]{when}.")


CODEC_MODEL_OPTION = typer.Option(..., "--model", "-m",
                                  help="Model folder or Qwen3-TTS-Tokenizer-12Hz folder (or an official repo id).")


class OptionGroup:
    """A run of options several commands share: ``options`` maps each parameter name to its
    (annotation, typer.Option); the command receives them as ``make(**values)``."""

    def __init__(self, make, **options: tuple[Any, Any]):
        self.make, self.options = make, options


def with_groups(fn):
    """Expand every OptionGroup default of ``fn``'s parameters into the group's options, in place
    (so --help keeps the order written), and pack their values back into one object per group."""
    sig = inspect.signature(fn)
    params, groups = [], {}
    for p in sig.parameters.values():
        if isinstance(p.default, OptionGroup):
            groups[p.name] = p.default
            params += [inspect.Parameter(name, p.kind, default=opt, annotation=ann)
                       for name, (ann, opt) in p.default.options.items()]
        else:
            params.append(p)

    @functools.wraps(fn)
    def wrapper(**kwargs):
        for name, group in groups.items():
            kwargs[name] = group.make(**{k: kwargs.pop(k) for k in group.options})
        return fn(**kwargs)

    wrapper.__signature__ = sig.replace(parameters=params)  # what Typer reads (before __wrapped__)
    return wrapper


# The options of synth and stream that say what to speak with and how: model, voice, sampling,
# long text. (Device and dtype come separately: each command puts its own options between.)
SPEECH_OPTIONS = dict(
    model=(str, typer.Option(DEFAULT_MODEL, "--model", "-m",
                             help="Model folder, official repo id or short name (e.g. 1.7B-CustomVoice); "
                                  "downloaded on first use.")),
    speaker=(Optional[str], typer.Option(None, "--speaker", "-s",
                                         help=f"Built-in voice (CustomVoice models; default: {DEFAULT_SPEAKER}).")),
    language=(str, typer.Option(DEFAULT_LANGUAGE, "--language", "-l", help="Language, or 'auto'.")),
    instruct=(Optional[str], typer.Option(None, "--instruct", help="Style instruction (1.7B CustomVoice); voice "
                                                                   "description (VoiceDesign, required).")),
    ref_audio=(Optional[Path], typer.Option(None, "--ref-audio", metavar="AUDIO",
                                           help="Base models: clone the voice of this recording (wav/flac/ogg, at "
                                                "least 1 s; 3-10 s of clear speech work best).")),
    ref_text=(Optional[str], typer.Option(None, "--ref-text",
                                          help="Transcript of --ref-audio (in-context cloning, the default).")),
    xvector_only=(bool, typer.Option(False, "--xvector-only",
                                     help="Clone from --ref-audio's speaker embedding alone (no transcript).")),
    voice_file=(Optional[Path], typer.Option(None, "--voice", metavar="VOICE.safetensors",
                                            help="Base models: a voice made by `qwen3tts voice create`.")),
    greedy=(bool, typer.Option(False, "--greedy", help="Deterministic argmax decoding (no sampling).")),
    seed=(Optional[int], typer.Option(None, "--seed", help="Random seed for sampling (chunk i of a split text uses "
                                                           "seed + i; stream uses the same seed for every line).")),
    max_frames=(Optional[int], typer.Option(None, "--max-frames", min=1,
                                            help="Stop after this many 80 ms frames (default: max_new_tokens of "
                                                 "generation_config.json); per chunk when the text is split.")),
    no_split=(bool, typer.Option(False, "--no-split", help="Speak the text in one pass, exactly as given (default: "
                                                           "split long text at sentence, then clause ends).")),
    max_chars=(int, typer.Option(DEFAULT_MAX_CHARS, "--max-chars", min=MIN_MAX_CHARS, metavar="N",
                                 help="Longest chunk of a split text, in characters (a CJK character counts 3).")),
    pause=(float, typer.Option(DEFAULT_PAUSE, "--pause", min=0.0, metavar="SECONDS",
                               help="Silence between the chunks of a split text (stream: also between lines).")),
    allow_truncation=(bool, typer.Option(False, "--allow-truncation",
                                         help="Exit 0 when the runaway guard cuts an utterance short (default: "
                                              "keep the audio, warn, exit 3).")),
    temperature=(Optional[float], typer.Option(None, "--temperature", help="Sampling temperature (first code).")),
    top_k=(Optional[int], typer.Option(None, "--top-k", help="Top-k (first code); 0 disables.")),
    top_p=(Optional[float], typer.Option(None, "--top-p", help="Top-p (first code).")),
    repetition_penalty=(Optional[float], typer.Option(None, "--repetition-penalty",
                                                      help="Penalty on first codes already used.")),
)
DEVICE_OPTIONS = dict(device=(Optional[str], DEVICE_OPTION), dtype=(Optional[str], DTYPE_OPTION))
