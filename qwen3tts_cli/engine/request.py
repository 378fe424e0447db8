"""One utterance's request: everything it carries, validated in one place for every front door.

Two steps, both before any weights load:

* ``SpeechRequest(...)`` checks what needs no model: text, sampling values, frame cap, splitting,
  pause, stream schedule, and a voice that contradicts itself or the speaker.
* ``request.resolve(cfg, gen)`` checks it against one model's configuration (config.json and
  generation_config.json: no weights) and fills in every default: the speaker, the language's
  codec tag (dialect speakers included), the instruction (the 0.6B CustomVoice model drops it),
  the voice-clone mode, the text layout, the sampling settings, the frame cap, the runaway guard,
  the stream schedule and the text chunks.

Errors are ``RequestError``s that name the request's field (``error.field``) and say what is wrong
in the engine's own words; ``error.code`` lets a front door word them in its own terms (the CLI
names its flags).

The defaults below are the only copies: front doors show and use these.
"""

from __future__ import annotations

import types
from dataclasses import dataclass, field, fields, replace
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import InputError, RequestError
from ..voice.reference import CloneReference

if TYPE_CHECKING:
    from ..io.config import GenerationConfig, ModelConfig
    from ..model.sampling import SamplingSettings
    from .guard import GuardSettings, Trip

# The documented voice of CustomVoice models when none is asked for (else the first in sorted order).
DEFAULT_SPEAKER = "ryan"
DEFAULT_LANGUAGE = "auto"
# Silence between the chunks of a split text, in seconds: a sentence pause.
DEFAULT_PAUSE = 0.25
MAX_PAUSE = 60.0  # seconds of silence between chunks or lines; more is a mistake, not a pause
# Frames per audio chunk of a stream: the first chunk after one frame (80 ms), then doubling up to
# 8 frames (0.64 s), which amortizes the decoder's per-call cost; the last entry repeats.
DEFAULT_STREAM_SCHEDULE = (1, 2, 4, 8)


def default_speaker(speakers: list[str]) -> str | None:
    """DEFAULT_SPEAKER when the model has it, else the first speaker in sorted order; None without speakers."""
    if not speakers:
        return None
    return DEFAULT_SPEAKER if DEFAULT_SPEAKER in speakers else sorted(speakers)[0]


def request_options() -> frozenset[str]:
    """Every keyword a request takes: its fields and the sampling names."""
    from ..model.sampling import SamplingSettings

    return frozenset(f.name for f in fields(SpeechRequest)) | frozenset(SamplingSettings.OVERRIDABLE)


def _split_options(options: dict) -> tuple[dict, dict]:
    """Keyword options -> (SpeechRequest fields, sampling overrides); an unknown name is refused."""
    from ..model.sampling import SamplingSettings

    names = {f.name for f in fields(SpeechRequest)} - {"text", "sampling"}
    own = {k: v for k, v in options.items() if k in names}
    sampling = {k: v for k, v in options.items() if k not in names}
    unknown = sorted(k for k in sampling if k not in SamplingSettings.OVERRIDABLE)
    if unknown:
        raise RequestError(f"unknown sampling option(s): {', '.join(unknown)}", "sampling", "sampling_unknown")
    return own, sampling


def check_speaker_or_voice(speaker: str | None, has_voice: bool) -> None:
    """A built-in speaker or a cloned voice, not both."""
    if has_voice and speaker not in (None, ""):
        raise RequestError("speaker picks a built-in voice of a CustomVoice model and voice clones one with a "
                           "Base model: give one or the other", "speaker", "speaker_and_voice")


def check_seed(seed) -> None:
    """A seed is a whole number the sampler's generator takes: 0 to 2**64 - 1 (None: unseeded)."""
    from ..model.sampling import MAX_SEED

    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED):
        raise RequestError(f"seed must be a whole number from 0 to {MAX_SEED} (got {seed})", "seed", "seed_range")


def is_text_feed(text) -> bool:
    """A text feed (engine.feed.TextFeed), told apart without importing it (and torch with it)."""
    return getattr(type(text), "is_text_feed", False) is True


def _is_voice_prompt(voice) -> bool:
    return hasattr(voice, "xvector") and hasattr(voice, "check_model")


@dataclass(frozen=True)
class SpeechRequest:
    """Everything one utterance carries (see the module doc). ``sampling``: generation_config.json
    overrides by name (temperature, top_k, top_p, repetition_penalty, do_sample, subtalker_*);
    ``guard``: True (default settings), False, or a guard.GuardSettings; ``non_streaming_mode``:
    the text layout (None: the official default for the model type)."""

    text: str
    speaker: str | None = None
    language: str | None = DEFAULT_LANGUAGE
    instruct: str | None = None
    voice: Any = None  # a voice.VoicePrompt, a CloneReference, or None
    greedy: bool = False
    sampling: Mapping[str, Any] = field(default_factory=dict)
    seed: int | None = None
    max_frames: int | None = None
    split: bool = True
    max_chars: int | None = None
    pause: float = DEFAULT_PAUSE
    schedule: tuple[int, ...] = DEFAULT_STREAM_SCHEDULE
    guard: Any = True
    non_streaming_mode: bool | None = None

    def __post_init__(self):
        from ..model.sampling import SamplingSettings

        from ..text.segment import check_unicode

        if not isinstance(self.text, str) and not is_text_feed(self.text):
            raise RequestError(f"text must be a string or a text feed, not {type(self.text).__name__}", "text",
                               "text_type")
        if self.feed is not None and self.non_streaming_mode:
            raise RequestError("a text feed is spoken in the streaming text layout (non_streaming_mode=False): "
                               "the non-streaming layout needs the whole text before the first frame",
                               "non_streaming_mode", "feed_non_streaming")
        for name in ("text", "instruct", "speaker", "language"):
            if isinstance(getattr(self, name), str):
                check_unicode(getattr(self, name), name)
        set_ = object.__setattr__  # frozen: normalize the containers once, here
        set_(self, "sampling", types.MappingProxyType(dict(self.sampling or {})))
        set_(self, "schedule", stream_schedule(self.schedule))
        if self.voice is not None and not (isinstance(self.voice, CloneReference) or _is_voice_prompt(self.voice)):
            raise RequestError("voice must be a VoicePrompt (TTS.create_voice, voice.load_voice) or a "
                               f"CloneReference, not {type(self.voice).__name__}", "voice", "voice_type")
        check_speaker_or_voice(self.speaker, self.voice is not None)
        check_seed(self.seed)
        if not 0 <= self.pause <= MAX_PAUSE:  # NaN and inf too: a pause is made of real samples
            raise RequestError(f"pause must be from 0 to {MAX_PAUSE:g} seconds (got {self.pause})", "pause",
                               "pause_range")
        if self.max_frames is not None and int(self.max_frames) < 1:
            raise RequestError(f"max_frames must be at least 1 (got {self.max_frames})", "max_frames",
                               "max_frames_range")
        # The sampling rules live with the settings; here against the defaults, again once resolved.
        try:
            SamplingSettings.resolve(None, greedy=self.greedy, **self.sampling)
        except InputError as e:
            raise RequestError(str(e), "sampling", "sampling_invalid") from None
        if self.feed is not None:
            self.max_chars_limit()  # a feed's utterances are bounded by max_chars
        elif self.split:
            self.chunks()  # the text splits into something to say, at a valid max_chars
        elif not self.text.strip():
            raise RequestError("text is empty", "text", "text_empty")

    @classmethod
    def from_options(cls, text: str, **options) -> "SpeechRequest":
        """A request from keyword options: its own fields, and generation_config.json's sampling
        names (temperature=0.7, top_k=..., ...) for ``sampling``; None leaves an option at its default
        (but ``guard=None``, as ``guard=False``, means no guard)."""
        own, sampling = _split_options(options)
        for k in ("language", "schedule"):
            if own.get(k, 0) is None:
                del own[k]
        return cls(text, sampling={k: v for k, v in sampling.items() if v is not None}, **own)

    def with_options(self, **options) -> "SpeechRequest":
        """This request with the given fields and sampling names replaced; None keeps a value."""
        own, sampling = _split_options({k: v for k, v in options.items() if v is not None})
        if sampling:
            own["sampling"] = {**self.sampling, **sampling}
        return replace(self, **own) if own else self

    @property
    def feed(self):
        """The text feed the text arrives through (engine.feed.TextFeed), or None for a text."""
        return self.text if is_text_feed(self.text) else None

    def max_chars_limit(self) -> int:
        """``max_chars``, or the splitter's default."""
        from ..text.segment import DEFAULT_MAX_CHARS, MIN_MAX_CHARS

        limit = DEFAULT_MAX_CHARS if self.max_chars is None else int(self.max_chars)
        if limit < MIN_MAX_CHARS:
            raise RequestError(f"max_chars must be at least {MIN_MAX_CHARS} (got {self.max_chars})", "max_chars",
                               "max_chars_range")
        return limit

    def chunks(self) -> list[str]:
        """The pieces spoken one after another: the text normalized and cut at sentence, then
        clause ends into chunks of at most ``max_chars`` (text.segment); ``split=False``: the text
        exactly as given, as one chunk."""
        from ..text.segment import DEFAULT_MAX_CHARS, split_text

        if self.feed is not None:
            return []  # the text is not known yet: a feed's utterances are cut as it arrives
        if not self.split:
            return [self.text]
        try:
            chunks = split_text(self.text, DEFAULT_MAX_CHARS if self.max_chars is None else self.max_chars,
                                self.language)
        except InputError as e:
            raise RequestError(str(e), "max_chars", "max_chars_range") from None
        if not chunks:
            raise RequestError("text is empty", "text", "text_empty")
        return chunks

    def sampling_settings(self, gen: "GenerationConfig | None") -> "SamplingSettings":
        """generation_config.json's sampling values with this request's overrides."""
        from ..model.sampling import SamplingSettings

        return SamplingSettings.resolve(gen, greedy=self.greedy, **self.sampling)

    def frame_cap(self, gen: "GenerationConfig | None") -> int:
        """Frames a chunk may run: ``max_frames``, else generation_config.json's max_new_tokens."""
        from ..io.config import GenerationConfig

        return int(self.max_frames) if self.max_frames is not None else (gen or GenerationConfig()).max_new_tokens

    def resolve(self, cfg: "ModelConfig", gen: "GenerationConfig | None" = None) -> "ResolvedRequest":
        """This request for one model, every default filled in (see the module doc)."""
        from . import guard as guard_module

        model_type = cfg.tts_model_type
        voice, warnings = self.voice, []
        # Who speaks: a built-in speaker, a described voice, or a cloned one.
        if model_type != "base":
            if voice is not None:
                raise RequestError(f"a cloned voice was given, but only Base models clone voices (this model is "
                                   f"{model_type})", "voice", "voice_unsupported", model_type=model_type)
        else:
            if self.speaker not in (None, ""):
                raise RequestError(f"speaker '{self.speaker}' given, but only CustomVoice models have built-in "
                                   f"speakers (this model is {model_type})", "speaker", "speaker_unsupported",
                                   model_type=model_type)
            if voice is None:
                raise RequestError("a Base model needs a reference voice to clone: give voice (a CloneReference "
                                   "of a recording, or a VoicePrompt from TTS.create_voice or voice.load_voice)",
                                   "voice", "voice_required")
            if _is_voice_prompt(voice):
                voice.check_model(cfg)
        language = _choice("language", self.language or DEFAULT_LANGUAGE, cfg.languages)

        speaker, defaulted = None, False
        if model_type == "custom_voice":
            if self.speaker in (None, ""):
                speaker, defaulted = default_speaker(cfg.speakers), True
                if speaker is None:
                    raise RequestError("this CustomVoice model has no speakers in its config.json", "speaker",
                                       "speaker_missing")
            else:
                speaker = _choice("speaker", self.speaker, cfg.speakers)
        elif self.speaker not in (None, ""):
            raise RequestError(f"speaker '{self.speaker}' given, but only CustomVoice models have built-in speakers "
                               f"(this model is {model_type})", "speaker", "speaker_unsupported", model_type=model_type)

        instruct = self.instruct if self.instruct is not None and self.instruct.strip() else None
        if model_type == "voice_design" and instruct is None:
            raise RequestError("a VoiceDesign model needs an instruction describing the voice", "instruct",
                               "instruct_required")
        if model_type == "base" and instruct is not None:
            raise RequestError("Base (voice clone) models take no instruction", "instruct", "instruct_unsupported")
        # The reference tests `tts_model_size in "0b6"` (a substring test) and then drops the
        # instruction; we follow it so that the same request gives the same audio.
        dropped = model_type == "custom_voice" and instruct is not None and cfg.tts_model_size in "0b6"
        if dropped:
            instruct = None
            warnings.append("this 0.6B CustomVoice model ignores instructions; the instruction was dropped")

        mode = model_type if model_type != "base" else voice.mode
        non_streaming = (mode in ("custom_voice", "voice_design") and self.feed is None
                         if self.non_streaming_mode is None else bool(self.non_streaming_mode))
        guard = None if self.guard is False or self.guard is None else (
            guard_module.DEFAULT_SETTINGS if self.guard is True else self.guard)
        return ResolvedRequest(
            request=self, model_type=model_type, mode=mode, speaker=speaker, speaker_defaulted=defaulted,
            language=language, language_id=_language_id(cfg, language, speaker), instruct=instruct,
            instruct_dropped=dropped, non_streaming=non_streaming, sampling=self.sampling_settings(gen),
            max_frames=self.frame_cap(gen), guard=guard,
            chunks=tuple(self.chunks()), warnings=tuple(warnings))


@dataclass(frozen=True)
class ResolvedRequest:
    """A SpeechRequest for one model, every default filled in (``SpeechRequest.resolve``)."""

    request: SpeechRequest
    model_type: str  # custom_voice | voice_design | base
    mode: str  # custom_voice | voice_design | xvector | icl
    speaker: str | None  # canonical (lower-case) name; CustomVoice only
    speaker_defaulted: bool  # the speaker is the model's default, not the caller's choice
    language: str  # canonical name, "auto" included
    language_id: int | None  # the codec tag id (a dialect speaker's dialect), None for the 3-tag "auto" form
    instruct: str | None  # None when absent, blank or dropped
    instruct_dropped: bool  # the 0.6B CustomVoice model ignores instructions, as the reference does
    non_streaming: bool  # the text layout
    sampling: "SamplingSettings"
    max_frames: int  # frames per chunk at most
    guard: "GuardSettings | None"
    chunks: tuple[str, ...]
    warnings: tuple[str, ...]

    @property
    def voice(self):
        return self.request.voice

    def seed(self, chunk: int) -> int | None:
        """Chunk i samples with seed + i, modulo 2**64 (greedy decoding is unaffected)."""
        return None if self.request.seed is None else (self.request.seed + chunk) % 2**64

    def row_cap(self, chunk: int) -> int:
        """Frames chunk i may run: the cap, or one past its guard's budget, where the guard trips
        (so a batched row reserves no cache room it cannot use)."""
        if self.guard is None:
            return self.max_frames
        from .guard import frame_budget

        return min(self.max_frames, frame_budget(self.chunks[chunk], self.guard) + 1)

    def truncation(self, stop_reason: str, trip: "Trip | None") -> str | None:
        """Why a chunk's audio is cut short, or None (it ended at its end token or at the caller's own cap)."""
        if trip is not None:
            return trip.message()
        if stop_reason == "max_frames" and self.request.max_frames is None:
            return (f"generation reached the model's limit of {self.max_frames} frames "
                    "(max_new_tokens of generation_config.json) without an end token")
        return None

    def chunk_label(self, chunk: int, note: str) -> str:
        if self.request.feed is not None:
            return f"utterance {chunk + 1}: {note}"
        return note if len(self.chunks) == 1 else f"chunk {chunk + 1} of {len(self.chunks)}: {note}"


def stream_schedule(schedule) -> tuple[int, ...]:
    """Frames per chunk of a stream as a tuple (None: DEFAULT_STREAM_SCHEDULE; one int: that size)."""
    sizes = [schedule] if isinstance(schedule, int) else list(schedule or DEFAULT_STREAM_SCHEDULE)
    if not sizes or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in sizes):
        raise RequestError(f"schedule must be positive frame counts (got {schedule!r})", "schedule", "schedule_range")
    return tuple(sizes)


def _choice(kind: str, value: str, valid: list[str]) -> str:
    v = value.strip().lower()
    if v not in valid:
        raise RequestError(f"unknown {kind} '{value}'; valid {kind}s: {', '.join(valid)}", kind, f"{kind}_unknown")
    return v


def _language_id(cfg: "ModelConfig", language: str, speaker: str | None) -> int | None:
    """The codec tag of the language: None for "auto" (the 3-tag form); a dialect speaker turns
    chinese and auto into its dialect (always the 4-tag form)."""
    from ..errors import ModelError

    tk = cfg.talker
    language_id = None if language == "auto" else tk.codec_language_id[language]
    if speaker is not None and language in ("chinese", "auto"):
        dialect = tk.spk_is_dialect.get(speaker, False)
        if dialect:
            if str(dialect).lower() not in tk.codec_language_id:
                raise ModelError(f"config.json: speaker '{speaker}' has dialect '{dialect}' "
                                 "which is not in codec_language_id")
            language_id = tk.codec_language_id[str(dialect).lower()]
    return language_id
