"""The library's front door: load a model folder once, then turn text into audio (or codec codes).

    tts = load_tts("path/to/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    result = tts.synthesize("Hello.", speaker="ryan", language="english", seed=0)
    result.audio  # float32 numpy [frames * 1920] at result.sample_rate (24 kHz)
    result.codes  # LongTensor [frames, 16]; tts.generate_codes(...) stops there
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..model.code_predictor import CodePredictor
from ..io.config import GenerationConfig, ModelConfig
from ..errors import InputError, ModelError
from ..model.generate import GenerationResult, generate_frames, iter_frames
from ..model.sampling import SamplingSettings
from ..model.talker import Talker
from ..io.weights import expected_model_tensors, load_safetensors, safetensors_files
from ..runtime import RuntimeSettings

# The documented voice of CustomVoice models when none is asked for (else the first in sorted order).
DEFAULT_SPEAKER = "ryan"
# Silence between the chunks of a split text, in seconds: a sentence pause.
DEFAULT_PAUSE = 0.25

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise InputError(f"unknown dtype '{dtype}' (use one of: float32, bfloat16, float16; "
                         "int8 or w8a8 on CPU)") from None


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device '{device}' (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device '{device}' (use cpu or cuda)")
    if dev.type == "cuda":
        # Tensors report cuda:N: an unindexed device would never compare equal to theirs.
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise InputError(f"no CUDA device {index} (this machine has {torch.cuda.device_count()})")
        dev = torch.device("cuda", index)
    return dev


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 [frames * 1920], mono, in [-1, 1]
    codes: torch.Tensor  # [frames, 16] int64 on the CPU
    stop_reason: str  # "eos" | "max_frames", or the runaway guard's "frame_budget" | "loop" | "silence"
    sample_rate: int = 24000
    warnings: list[str] = field(default_factory=list)
    # Why the audio is cut short (the runaway guard tripped, or the default frame cap was hit);
    # None when every chunk ended at its end token or at the caller's own max_frames.
    truncated: str | None = None
    chunks: int = 1  # text chunks spoken (long text is split, see synthesize)

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


# Frames per audio chunk of TTS.stream: the first chunk after one frame (80 ms), then doubling up
# to 8 frames (0.64 s), which amortizes the decoder's per-call cost; the last entry repeats.
DEFAULT_STREAM_SCHEDULE = (1, 2, 4, 8)
# Prompt rows the CUDA warm-up captures frame-step graphs for (4 buckets of 256 cache slots): a
# 300-character chunk with a long instruct stays below it.
WARM_UP_PROMPT_ROWS = 1024
NO_AUDIO_WARNING = "the model ended the utterance before its first frame: no audio"


def stream_schedule(schedule: Sequence[int] | int | None) -> list[int]:
    """Frames per chunk of ``TTS.stream`` as a list (None: the default schedule)."""
    sizes = [schedule] if isinstance(schedule, int) else list(schedule or DEFAULT_STREAM_SCHEDULE)
    if not sizes or any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in sizes):
        raise InputError(f"schedule must be positive frame counts (got {schedule!r})")
    return sizes


def joined_stop_reason(reasons: list[str]) -> str:
    """Stop reason of chunks spoken as one: the first guard trip names the whole, else
    "max_frames" if any chunk hit the cap, else "eos"."""
    return next((r for r in reasons if r not in ("eos", "max_frames")),
                "max_frames" if "max_frames" in reasons else "eos")


@dataclass
class StreamResult:
    """What a finished ``TTS.stream`` produced besides its audio chunks."""

    codes: torch.Tensor  # [frames, 16] int64 on the CPU, all text chunks back to back
    stop_reason: str = ""  # as SynthesisResult.stop_reason
    sample_rate: int = 24000
    warnings: list[str] = field(default_factory=list)
    truncated: str | None = None  # as SynthesisResult.truncated
    chunks: int = 0  # text chunks spoken
    samples: int = 0  # audio samples yielded, pauses included
    finished: bool = False  # False while iterating, or when the consumer stopped early

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def seconds(self) -> float:
        return self.samples / self.sample_rate


class SpeechStream:
    """Iterator of float32 audio chunks from ``TTS.stream``; ``result`` is complete once it ends."""

    def __init__(self, chunks, result: StreamResult):
        self._chunks, self.result = chunks, result

    def __iter__(self) -> "SpeechStream":
        return self

    def __next__(self) -> np.ndarray:
        return next(self._chunks)

    def close(self) -> None:
        """Stop generating (what was yielded stays valid)."""
        self._chunks.close()


class TTS:
    """A loaded model: config, text tokenizer, talker and code predictor on one device; the codec
    decoder is loaded on first use."""

    def __init__(self, folder: Path, cfg: ModelConfig, gen: GenerationConfig, talker: Talker,
                 predictor: CodePredictor, tokenizer, device: torch.device, dtype: torch.dtype,
                 runtime: RuntimeSettings | None = None):
        self.folder, self.cfg, self.generation_config = folder, cfg, gen
        self.talker, self.predictor, self.tokenizer = talker, predictor, tokenizer
        self.device, self.dtype = device, dtype
        self.runtime = runtime or RuntimeSettings()
        self.quantize: str | None = None  # "int8": weight-only int8 linears (linear.py)
        self._decoder = None
        self._voice_maker = None

    @property
    def model_type(self) -> str:
        return self.cfg.tts_model_type

    @property
    def speakers(self) -> list[str]:
        return self.cfg.speakers

    @property
    def languages(self) -> list[str]:
        return self.cfg.languages

    @property
    def default_speaker(self) -> str | None:
        """'ryan' when the model has it, else the first speaker in sorted order; None without speakers."""
        speakers = self.speakers
        if not speakers:
            return None
        return DEFAULT_SPEAKER if DEFAULT_SPEAKER in speakers else speakers[0]

    @property
    def decoder(self):
        """The codec decoder from the model folder's speech_tokenizer/, loaded on first use.

        Always float32, whatever the talker's dtype: the codec is stored in F32, and decoding it in
        bf16 (as the reference README's example does by casting the whole model) costs accuracy for
        little speed; we deliberately keep it in fp32.
        """
        if self._decoder is None:
            from ..codec import CodecDecoder

            self._decoder = CodecDecoder.from_folder(self.folder, device=self.device, dtype=torch.float32,
                                                     runtime=self.runtime)
        return self._decoder

    @property
    def sample_rate(self) -> int:
        from ..io.audio import SAMPLE_RATE

        return SAMPLE_RATE

    def create_voice(self, ref_audio, ref_text: str | None = None, xvector_only: bool = False):
        """A VoicePrompt (qwen3tts_cli.voice) from reference audio, for ``voice=`` of prompt(),
        generate_codes() and synthesize(); Base models only.

        ``ref_audio``: an audio file (wav/flac/ogg, any rate and channels) or ``(samples, rate)``,
        at least 1 s and not silent. In-context cloning (default) needs ``ref_text``, the
        transcript; ``xvector_only=True`` uses the speaker embedding alone. The speaker encoder and
        the codec encoder are loaded from the model folder on first use, in float32.
        """
        if self._voice_maker is None:
            from ..voice.clone import VoiceMaker

            self._voice_maker = VoiceMaker(self.folder, self.cfg, self.device)
        return self._voice_maker.create(ref_audio, ref_text=ref_text, xvector_only=xvector_only)

    def check_voice(self, voice) -> None:
        """InputError when the request's voice does not fit this model (see synthesize)."""
        if self.model_type != "base":
            if voice is not None:
                raise InputError(f"a cloned voice was given, but only Base models clone voices "
                                 f"(this model is {self.model_type})")
            return
        if voice is None:
            raise InputError("a Base model speaks in a cloned voice: give a reference (--ref-audio with "
                             "--ref-text or --xvector-only) or a voice file (--voice); in Python, "
                             "voice=tts.create_voice(...)")
        voice.check_model(self.cfg)

    # Row builders used by the prompt construction.
    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.talker.embed_text(ids)

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        return self.talker.embed_codec(ids)

    def embed_frame(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [K, 16] -> [K, H]: C(c0) + sum_g E_g(c_g), one summation in the model dtype."""
        codes = codes.to(self.device)
        embs = [self.talker.embed_codec(codes[:, 0])]
        embs += [emb(codes[:, g + 1]) for g, emb in enumerate(self.predictor.model.codec_embedding)]
        return torch.stack(embs, dim=1).sum(1)

    def prompt(self, text: str, speaker: str | None = None, language: str | None = "auto",
               instruct: str | None = None, non_streaming_mode: bool | None = None, voice=None):
        """The talker prompt (prefill rows, trailing text rows) for one utterance. ``voice``: a
        VoicePrompt (create_voice / voice.load_voice), required by Base models, refused by others."""
        from .prompt import SynthesisRequest, build_prompt

        self.check_voice(voice)
        clone = {}
        if voice is not None:
            clone = dict(xvector=voice.xvector, ref_codes=voice.ref_codes, ref_text=voice.ref_text)
        request = SynthesisRequest(text=text, speaker=speaker, language=language, instruct=instruct,
                                   non_streaming_mode=non_streaming_mode, **clone)
        with torch.inference_mode():
            return build_prompt(self, self.cfg, self.tokenizer, request)

    def sampling(self, greedy: bool = False, **sampling_overrides) -> SamplingSettings:
        """generation_config.json's sampling with the given overrides (None keeps a value)."""
        return SamplingSettings.resolve(self.generation_config, greedy=greedy, **sampling_overrides)

    def frame_budget(self, max_frames: int | None) -> int:
        if max_frames is None:
            max_frames = self.generation_config.max_new_tokens
        if int(max_frames) < 1:
            raise InputError(f"max_frames must be at least 1 (got {max_frames})")
        return int(max_frames)

    def iter_frames(self, prompt, settings: SamplingSettings, max_frames: int | None = None,
                    seed: int | None = None, log=None):
        """Frames of ``prompt`` as they are generated: int64 [16] tensors on the model's device;
        the generator returns the stop reason ("eos" | "max_frames")."""
        return iter_frames(self.talker, self.predictor, prompt.embeds, prompt.trailing, prompt.pad, settings,
                           self.frame_budget(max_frames), self.cfg.talker.codec_eos_token_id, seed=seed, log=log,
                           cuda_graphs=self.runtime.cuda_graphs)

    def text_chunks(self, text: str, split: bool = True, max_chars: int | None = None,
                    language: str | None = "auto") -> list[str]:
        """The pieces ``synthesize`` speaks one after another (and a stream should too): the text
        normalized and cut at sentence, then clause ends into chunks of at most ``max_chars``
        (default segment.DEFAULT_MAX_CHARS = 300; a CJK character counts 3), see segment.py.
        ``split=False``: the text exactly as given, as one chunk."""
        from ..text.segment import DEFAULT_MAX_CHARS, split_text

        if not isinstance(text, str):
            raise InputError(f"text must be a string, not {type(text).__name__}")
        if not split:
            return [text]
        chunks = split_text(text, DEFAULT_MAX_CHARS if max_chars is None else max_chars, language)
        if not chunks:
            raise InputError("text is empty")
        return chunks

    def guarded_frames(self, prompt, text: str, settings: SamplingSettings, max_frames: int | None = None,
                       seed: int | None = None, guard=True):
        """``iter_frames`` watched by the runaway guard (guard.py) sized for ``text``: yields the same
        frames; returns ``(stop_reason, trip)``. ``trip`` is None, or the guard.Trip that ended
        generation early (then stop_reason is trip.reason, and the frames from ``trip.keep`` on
        belong to the runaway stretch). ``guard``: True (default settings), a guard.GuardSettings,
        or False for no guard."""
        from . import guard as guard_module

        watcher = None
        if guard is not False and guard is not None:
            settings_ = guard_module.DEFAULT_SETTINGS if guard is True else guard
            watcher = guard_module.RunawayGuard.for_text(text, settings_)
        frames = self.iter_frames(prompt, settings, max_frames, seed)
        while True:
            try:
                frame = next(frames)
            except StopIteration as stop:
                return stop.value, None
            trip = watcher.push(frame) if watcher is not None else None
            if trip is not None:
                frames.close()
                return trip.reason, trip
            yield frame

    def _truncation(self, trip, stop_reason: str, max_frames: int | None) -> str | None:
        """Why a chunk's audio is cut short, or None (ended at EOS or at the caller's own cap)."""
        if trip is not None:
            return trip.message()
        if stop_reason == "max_frames" and max_frames is None:
            return (f"generation reached the model's limit of {self.frame_budget(None)} frames "
                    "(max_new_tokens of generation_config.json) without an end token")
        return None

    @torch.inference_mode()
    def _generate_chunk(self, text: str, settings: SamplingSettings, max_frames: int | None, seed: int | None,
                        progress: Callable[[int], None] | None, guard,
                        **prompt_kw) -> tuple[GenerationResult, str | None]:
        """One chunk through ``guarded_frames``: (codes without the runaway stretch, why it was cut or None)."""
        prompt = self.prompt(text, **prompt_kw)
        frames: list[torch.Tensor] = []
        it = self.guarded_frames(prompt, text, settings, max_frames, seed, guard)
        while True:
            try:
                frames.append(next(it))
            except StopIteration as stop:
                stop_reason, trip = stop.value
                break
            if progress is not None:
                progress(len(frames))
        if trip is not None:
            frames = frames[:trip.keep]
        truncated = self._truncation(trip, stop_reason, max_frames)
        groups = self.cfg.talker.num_code_groups
        codes = torch.stack(frames).cpu() if frames else torch.empty(0, groups, dtype=torch.long)
        gen = GenerationResult(codes=codes, stop_reason=stop_reason, warnings=list(prompt.warnings),
                               prompt_length=prompt.embeds.shape[0])
        return gen, truncated

    @torch.inference_mode()
    def generate_codes(self, text: str, speaker: str | None = None, language: str | None = "auto",
                       instruct: str | None = None, non_streaming_mode: bool | None = None,
                       greedy: bool = False, seed: int | None = None, max_frames: int | None = None,
                       return_logits: bool = False, progress: Callable[[int], None] | None = None,
                       voice=None, **sampling_overrides) -> GenerationResult:
        """Text to codec codes [frames, 16]. Stops at EOS (not emitted) or after ``max_frames``.

        ``voice``: the cloned voice (VoicePrompt) a Base model speaks with; the codes returned are
        the generated ones only, without an ICL voice's reference codes.
        ``sampling_overrides``: temperature, top_k, top_p, repetition_penalty, do_sample and the
        subtalker_* variants; None keeps generation_config.json's value. ``progress(frames_so_far)``
        is called after every frame.
        """
        settings = self.sampling(greedy=greedy, **sampling_overrides)
        max_frames = self.frame_budget(max_frames)
        prompt = self.prompt(text, speaker=speaker, language=language, instruct=instruct,
                             non_streaming_mode=non_streaming_mode, voice=voice)
        result = generate_frames(self.talker, self.predictor, prompt.embeds, prompt.trailing, prompt.pad,
                                 settings, max_frames, self.cfg.talker.codec_eos_token_id, seed=seed,
                                 return_logits=return_logits, progress=progress, cuda_graphs=self.runtime.cuda_graphs)
        result.warnings = list(prompt.warnings)
        return result

    def decode(self, codes) -> np.ndarray:
        """Codec codes [frames, 16] -> float32 audio [frames * 1920] (the official offline decode)."""
        return self.decoder.decode(codes).numpy()

    def warm_up(self, *, schedule: Sequence[int] | int | None = None, greedy: bool = False,
                max_frames: int | None = None, prompt_rows: int = WARM_UP_PROMPT_ROWS, **kwargs) -> float:
        """On CUDA with graphs, capture now what the first ``stream`` would capture inside its time to
        first audio: the frame step's graphs for prompts of up to ``prompt_rows`` rows (the KV cache
        sized for them plus ``max_frames``) and the codec's graphs for every push size up to the
        schedule's largest. Takes ``stream``'s keyword arguments (sampling overrides matter, the
        rest is ignored). Returns the seconds spent; 0.0 on CPU or with graphs off."""
        from ..codec.streaming import StreamStates
        from ..model.cuda_graphs import prepare_frame_graphs, use_cuda_graphs

        if not use_cuda_graphs(self.device, self.runtime.cuda_graphs):
            return 0.0
        t0 = time.perf_counter()
        sizes = stream_schedule(schedule)
        overrides = {k: v for k, v in kwargs.items() if k in SamplingSettings.OVERRIDABLE}
        settings = self.sampling(greedy=greedy, **overrides)
        prepare_frame_graphs(self.talker, self.predictor, settings, prompt_rows + self.frame_budget(max_frames),
                             prompt_rows)
        # Every size up to the largest: an utterance's last push may be any shorter one.
        StreamStates.for_decoder(self.decoder).prepare(range(1, max(sizes) + 1))
        torch.cuda.synchronize(self.device)
        return time.perf_counter() - t0

    def decode_streamed(self, codes, ref_codes=None, schedule: Sequence[int] | None = None) -> np.ndarray:
        """The audio ``stream`` plays for ``codes``: the streaming decoder fed the same chunk sizes
        (``schedule``, the last size repeating), after ``ref_codes`` when given (their audio is
        returned in front).

        synth decodes this way, not with ``decode``, so that ``stream`` and ``synth`` give the same
        samples bit for bit: fp32 convolutions round differently for different input lengths, so
        any two chunkings of the same codes differ by ~1e-6 (both stay within 1e-5 of the
        official offline decode, which ``decode`` reproduces exactly).
        """
        from ..codec.streaming import StreamingDecoder

        sizes = list(schedule or DEFAULT_STREAM_SCHEDULE)
        codes = torch.as_tensor(codes).to(torch.long).cpu()
        dec = StreamingDecoder(self.decoder)
        out = [] if ref_codes is None else [dec.push(torch.as_tensor(ref_codes).to(torch.long).cpu())]
        start, k = 0, 0
        while start < codes.shape[0]:
            n = sizes[min(k, len(sizes) - 1)]
            out.append(dec.push(codes[start:start + n]))
            start, k = start + n, k + 1
        return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.float32)

    def decode_for(self, codes, voice=None) -> np.ndarray:
        """Audio of generated ``codes`` as synth and stream make it (``decode_streamed``); with an
        ICL voice the reference codes are decoded in front (the decoder's chunk grid starts at the
        first reference frame, as officially) and their part of the audio is cut off again with the
        reference's formula."""
        if voice is None or voice.ref_codes is None:
            return self.decode_streamed(codes)
        from ..voice.clone import cut_reference

        ref = voice.ref_codes.to(torch.long).cpu()
        audio = self.decode_streamed(codes, ref_codes=ref)
        return cut_reference(audio, ref.shape[0], ref.shape[0] + int(torch.as_tensor(codes).shape[0]))

    def stream(self, text: str, *, schedule: Sequence[int] | int | None = None, greedy: bool = False,
               seed: int | None = None, max_frames: int | None = None, split: bool = True,
               max_chars: int | None = None, pause: float = DEFAULT_PAUSE, guard=True,
               progress: Callable[[int], None] | None = None, **kwargs) -> SpeechStream:
        """Like ``synthesize``, but audio comes out while frames are generated: iterate the returned
        ``SpeechStream`` for float32 chunks (24 kHz mono); its ``result`` (codes, stop reason,
        warnings) is filled when the iteration ends.

        ``schedule``: frames per chunk, e.g. ``(1, 2, 4, 8)`` (the default: the first audio after one
        frame, then doubling; the last size repeats) or one int. The codec decodes each chunk with
        its carried state (codec.streaming), so the concatenated chunks are ``synthesize``'s audio
        (fp32 rounding apart: at most ~1e-5, see codec/streaming.py) for the same arguments and seed:
        same text splitting, per-chunk seeds and pauses (a pause is yielded as soon as its chunk
        ends). Other keyword arguments are ``prompt``'s (speaker, language, instruct, voice, …) and
        sampling overrides (temperature, top_k, …). Two differences from ``synthesize``: when the
        runaway guard trips, the runaway stretch up to the trip has already been streamed (codes
        and ``truncated`` say where it began); and with an ICL voice the audio starts exactly at
        the first generated frame, where the reference's proportional cut may keep one more
        sample of the reference.

        Argument errors are raised here, before the first frame.
        """
        from ..codec.streaming import StreamingDecoder

        sizes = stream_schedule(schedule)
        if not pause >= 0:
            raise InputError(f"pause must be 0 or more seconds (got {pause})")
        overrides = {k: kwargs.pop(k) for k in list(kwargs) if k in SamplingSettings.OVERRIDABLE}
        settings = self.sampling(greedy=greedy, **overrides)
        prompt_kw = dict(kwargs)
        if prompt_kw.get("speaker") in (None, "") and self.model_type == "custom_voice":
            prompt_kw["speaker"] = self.default_speaker
        chunks = self.text_chunks(text, split=split, max_chars=max_chars, language=prompt_kw.get("language", "auto"))
        self.frame_budget(max_frames)
        first_prompt = self.prompt(chunks[0], **prompt_kw)  # bad speaker/voice/language fail here
        decoder = self.decoder  # loaded now, not inside the time to first audio
        voice = prompt_kw.get("voice")
        ref_codes = getattr(voice, "ref_codes", None)
        groups = self.cfg.talker.num_code_groups
        result = StreamResult(codes=torch.empty(0, groups, dtype=torch.long), sample_rate=self.sample_rate)

        @torch.inference_mode()
        def produce():
            all_codes, reasons, truncated = [], [], []
            for i, chunk in enumerate(chunks):
                if i:
                    gap = np.zeros(round(pause * self.sample_rate), dtype=np.float32)
                    result.samples += len(gap)
                    yield gap
                prompt = first_prompt if i == 0 else self.prompt(chunk, **prompt_kw)
                result.warnings += [w for w in prompt.warnings if w not in result.warnings]
                dec = StreamingDecoder(decoder)
                k = 0  # every text chunk starts the schedule again, as decode_streamed does
                if ref_codes is not None:
                    dec.push(ref_codes)  # the grid starts at the reference, as offline; audio dropped
                frames = self.guarded_frames(prompt, chunk, settings, max_frames,
                                             None if seed is None else seed + i, guard)
                got: list[torch.Tensor] = []
                sent = 0  # frames already decoded and yielded
                while True:
                    try:
                        got.append(next(frames))
                    except StopIteration as stop:
                        stop_reason, trip = stop.value
                        break
                    if progress is not None:
                        progress(len(all_codes) + len(got))
                    if len(got) - sent >= sizes[min(k, len(sizes) - 1)]:
                        audio = dec.push(torch.stack(got[sent:])).numpy()
                        sent, k = len(got), k + 1
                        result.samples += len(audio)
                        yield audio
                note = self._truncation(trip, stop_reason, max_frames)
                if trip is not None:
                    if sent > trip.keep:
                        note += f" (the stream had already played {sent - trip.keep} frames of it)"
                    got = got[:trip.keep]
                if len(got) > sent:
                    audio = dec.push(torch.stack(got[sent:])).numpy()
                    k += 1
                    result.samples += len(audio)
                    yield audio
                if not got:
                    w = NO_AUDIO_WARNING
                    if w not in result.warnings:
                        result.warnings.append(w)
                if note is not None:
                    truncated.append(note if len(chunks) == 1 else f"chunk {i + 1} of {len(chunks)}: {note}")
                reasons.append(stop_reason)
                all_codes += got
                result.chunks = i + 1
                result.codes = torch.stack(all_codes).cpu() if all_codes else result.codes
            result.stop_reason = joined_stop_reason(reasons)
            result.truncated = "; ".join(truncated) if truncated else None
            result.finished = True

        return SpeechStream(produce(), result)

    def synthesize(self, text: str, speaker: str | None = None, language: str | None = "auto",
                   instruct: str | None = None, non_streaming_mode: bool | None = None,
                   greedy: bool = False, seed: int | None = None, max_frames: int | None = None,
                   progress: Callable[[int], None] | None = None, voice=None, split: bool = True,
                   max_chars: int | None = None, pause: float = DEFAULT_PAUSE, guard=True, decode: bool = True,
                   **sampling_overrides) -> SynthesisResult:
        """Text to 24 kHz mono float32 audio: codec codes, then the codec decoder.

        A CustomVoice model without ``speaker`` speaks with ``default_speaker``. A Base model needs
        ``voice`` (create_voice / voice.load_voice). Other arguments as for ``generate_codes``.

        Long text is split (``text_chunks``: sentences, then clauses, at most ``max_chars`` each;
        ``split=False`` speaks the text as given in one pass). Every chunk gets the same speaker,
        language, instruction and voice; with a ``seed``, chunk i samples with ``seed + i`` (greedy
        decoding is unaffected). Chunks are decoded separately and joined with ``pause`` seconds of
        silence; ``codes`` is the chunks' codes back to back, ``max_frames`` caps each chunk and
        ``progress`` counts frames over all chunks. A text that fits in one chunk gives exactly the
        audio of an unsplit run.

        ``guard`` (True, a guard.GuardSettings, or False) stops a chunk that runs away (frame
        budget, loop, silence; see guard.py): the audio before the runaway stretch is kept and
        ``truncated`` says what happened, as it does when the model's own frame limit is hit.
        ``decode=False`` returns codes only (``audio`` is empty).
        """
        if speaker in (None, "") and self.model_type == "custom_voice":
            speaker = self.default_speaker
        if not pause >= 0:
            raise InputError(f"pause must be 0 or more seconds (got {pause})")
        chunks = self.text_chunks(text, split=split, max_chars=max_chars, language=language)
        settings = self.sampling(greedy=greedy, **sampling_overrides)
        parts: list[SynthesisResult] = []
        done = 0
        for i, chunk in enumerate(chunks):
            on_frame = None if progress is None else (lambda n, base=done: progress(base + n))
            gen, truncated = self._generate_chunk(
                chunk, settings, max_frames, None if seed is None else seed + i, on_frame, guard,
                speaker=speaker, language=language, instruct=instruct, non_streaming_mode=non_streaming_mode,
                voice=voice)
            done += gen.frames
            if decode:
                part = self._to_audio(gen, voice)
            else:
                part = SynthesisResult(audio=np.zeros(0, dtype=np.float32), codes=gen.codes,
                                       stop_reason=gen.stop_reason, sample_rate=self.sample_rate,
                                       warnings=list(gen.warnings))
            if truncated is not None:
                part.truncated = truncated if len(chunks) == 1 else f"chunk {i + 1} of {len(chunks)}: {truncated}"
            parts.append(part)
        return parts[0] if len(parts) == 1 else self._join(parts, pause if decode else 0.0)

    def _join(self, parts: list[SynthesisResult], pause: float) -> SynthesisResult:
        gap = np.zeros(round(pause * self.sample_rate), dtype=np.float32)
        audio = [parts[0].audio]
        for p in parts[1:]:
            audio += [gap, p.audio]
        stop = joined_stop_reason([p.stop_reason for p in parts])
        truncated = [p.truncated for p in parts if p.truncated]
        warnings = list(dict.fromkeys(w for p in parts for w in p.warnings))
        return SynthesisResult(audio=np.concatenate(audio), codes=torch.cat([p.codes for p in parts]),
                               stop_reason=stop, sample_rate=self.sample_rate, warnings=warnings,
                               truncated="; ".join(truncated) if truncated else None, chunks=len(parts))

    def _to_audio(self, gen: GenerationResult, voice=None) -> SynthesisResult:
        warnings = list(gen.warnings)
        if gen.frames == 0:
            audio = np.zeros(0, dtype=np.float32)
            warnings.append(NO_AUDIO_WARNING)
        else:
            audio = self.decode_for(gen.codes, voice)
        return SynthesisResult(audio=audio, codes=gen.codes, stop_reason=gen.stop_reason,
                               sample_rate=self.sample_rate, warnings=warnings)

    @torch.inference_mode()
    def generate_codes_batch(self, texts: Sequence[str], speaker: str | None = None, language: str | None = "auto",
                             instruct: str | None = None, non_streaming_mode: bool | None = None,
                             greedy: bool = False, seed: int | None | Sequence[int | None] = None,
                             max_frames: int | None | Sequence[int | None] = None, return_logits: bool = False,
                             on_row: Callable[[int, GenerationResult], None] | None = None,
                             progress: Callable[[int], None] | None = None, voice=None,
                             **sampling_overrides) -> list[GenerationResult]:
        """``generate_codes`` for many texts at once (one voice, batched generation, batch.py).

        Each row's codes equal ``generate_codes`` of that text alone with the same seed (greedy:
        up to float rounding of batched matmuls). ``seed`` and ``max_frames``: one value or one
        per text. ``on_row(i, result)`` is called as soon as text i has ended.
        """
        from ..model.batch import generate_batch

        settings = self.sampling(greedy=greedy, **sampling_overrides)
        caps = ([self.frame_budget(m) for m in max_frames] if isinstance(max_frames, (list, tuple))
                else self.frame_budget(max_frames))
        prompts = [self.prompt(t, speaker=speaker, language=language, instruct=instruct,
                               non_streaming_mode=non_streaming_mode, voice=voice) for t in texts]

        def row_done(i: int, r: GenerationResult) -> None:
            r.warnings = list(prompts[i].warnings)
            if on_row is not None:
                on_row(i, r)

        return generate_batch(self.talker, self.predictor, prompts, settings, caps,
                              self.cfg.talker.codec_eos_token_id, seeds=seed, return_logits=return_logits,
                              on_row=row_done, progress=progress, cuda_graphs=self.runtime.cuda_graphs)

    def synthesize_batch(self, texts: Sequence[str], speaker: str | None = None, language: str | None = "auto",
                         instruct: str | None = None, non_streaming_mode: bool | None = None,
                         greedy: bool = False, seed: int | None = None, max_frames: int | None = None,
                         on_result: Callable[[int, SynthesisResult], None] | None = None,
                         progress: Callable[[int], None] | None = None, voice=None, split: bool = True,
                         max_chars: int | None = None, pause: float = DEFAULT_PAUSE, guard=True,
                         **sampling_overrides) -> list[SynthesisResult]:
        """``synthesize`` for many texts at once, with the same result per text (greedy: up to float
        rounding of batched matmuls): every text chunk of every text is one row of one batched
        generation (chunk i of a text samples with ``seed + i``, each row watched by its own
        runaway guard). A text is decoded as soon as all its chunks have ended and handed to
        ``on_result(i, result)`` (e.g. to write its file) while the other rows go on.
        ``progress(n)``: lock-step frames so far."""
        from . import guard as guard_module
        from ..model.batch import generate_batch

        if speaker in (None, "") and self.model_type == "custom_voice":
            speaker = self.default_speaker
        if not pause >= 0:
            raise InputError(f"pause must be 0 or more seconds (got {pause})")
        settings = self.sampling(greedy=greedy, **sampling_overrides)
        cap = self.frame_budget(max_frames)
        rows: list[tuple[int, int, str]] = []  # (text index, chunk index, chunk)
        for t, text in enumerate(texts):
            rows += [(t, i, c) for i, c in enumerate(self.text_chunks(text, split=split, max_chars=max_chars,
                                                                       language=language))]
        prompts = [self.prompt(c, speaker=speaker, language=language, instruct=instruct,
                               non_streaming_mode=non_streaming_mode, voice=voice) for _, _, c in rows]
        gsettings = None if guard is False or guard is None else (
            guard_module.DEFAULT_SETTINGS if guard is True else guard)
        guards = [None if gsettings is None else guard_module.RunawayGuard.for_text(c, gsettings) for _, _, c in rows]
        seeds = [None if seed is None else seed + i for _, i, _ in rows]
        n_chunks = [sum(1 for t, _, _ in rows if t == k) for k in range(len(texts))]
        parts: list[dict[int, SynthesisResult]] = [{} for _ in texts]
        out: list[SynthesisResult | None] = [None] * len(texts)

        def row_done(r: int, gen: GenerationResult) -> None:
            t, i, _ = rows[r]
            gen.warnings = list(prompts[r].warnings)
            part = self._to_audio(gen, voice)
            truncated = self._truncation(gen.trip, gen.stop_reason, max_frames)
            if truncated is not None:
                part.truncated = truncated if n_chunks[t] == 1 else f"chunk {i + 1} of {n_chunks[t]}: {truncated}"
            parts[t][i] = part
            if len(parts[t]) == n_chunks[t]:
                done = [parts[t][k] for k in range(n_chunks[t])]
                out[t] = done[0] if len(done) == 1 else self._join(done, pause)
                if on_result is not None:
                    on_result(t, out[t])

        # A guarded row ends at its budget's next frame: no need for cache room (allocated up front
        # for every row on CUDA) up to the global cap.
        caps = [cap if g is None else min(cap, g.budget + 1) for g in guards]
        with torch.inference_mode():
            generate_batch(self.talker, self.predictor, prompts, settings, caps, self.cfg.talker.codec_eos_token_id,
                           seeds=seeds, on_row=row_done, progress=progress, guards=guards,
                           cuda_graphs=self.runtime.cuda_graphs)
        return out


def _split_state(tensors: dict[str, torch.Tensor]) -> tuple[dict, dict]:
    talker, cp = {}, {}
    for name, t in tensors.items():
        if name.startswith("talker.code_predictor."):
            cp[name[len("talker.code_predictor."):]] = t
        elif name.startswith("talker."):
            talker[name[len("talker."):]] = t
    return talker, cp


def _load_into(module: torch.nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    # assign=True adopts the (memory-mapped) tensors as parameters instead of copying them.
    missing, unexpected = module.load_state_dict(state, strict=False, assign=True)
    if missing or unexpected:
        raise ModelError(f"{where}: weights do not fit the network (missing {missing[:4]}, "
                         f"unexpected {unexpected[:4]})")
    module.requires_grad_(False)
    module.eval()


def parse_precision(dtype: str | None) -> tuple[torch.dtype | None, str | None]:
    """The CLI's --dtype: float32 / bfloat16 / float16; on CPU also int8 (int8 weights, bf16
    activations) and w8a8 (int8 weights and dynamically quantized int8 activations, fp32 elsewhere).
    Returns (model dtype or None for the device default, quantization or None)."""
    if dtype is not None and dtype.lower() == "int8":
        return torch.bfloat16, "int8"
    if dtype is not None and dtype.lower() == "w8a8":
        return torch.float32, "w8a8"
    return parse_dtype(dtype), None


def load_tts(path_or_folder: str | Path, device: str | torch.device = "cpu",
             dtype: str | torch.dtype | None = None, quantize: str | None = None,
             runtime: RuntimeSettings | None = None) -> TTS:
    """Load a Qwen3-TTS model folder (config.json, generation_config.json, model.safetensors and the
    text tokenizer files). Default dtype: float32 on CPU, bfloat16 on CUDA.

    ``quantize="int8"`` (CPU): the talker's and code predictor's bias-free linears get int8 weights
    with per-channel scales (activations in ``dtype``, bfloat16 by default); see linear.py.
    ``runtime``: CUDA graphs, fused ops, flash-attn and CPU kernels on or off (default: read from
    the environment now, see runtime.py); the model keeps it for its whole life.
    """
    folder = Path(path_or_folder).expanduser()
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    dev = parse_device(device)
    if isinstance(dtype, str) and dtype.lower() in ("int8", "w8a8"):  # the CLI's --dtype int8 / w8a8
        dtype, quantize = parse_precision(dtype)
    dt = parse_dtype(dtype) or (torch.bfloat16 if dev.type == "cuda" or quantize == "int8" else torch.float32)
    cfg = ModelConfig.from_file(folder / "config.json")
    gen_path = folder / "generation_config.json"
    gen = GenerationConfig.from_file(gen_path) if gen_path.is_file() else GenerationConfig()
    expected = expected_model_tensors(cfg)
    # The Base models' speaker encoder only makes voices: create_voice loads it on first use.
    ignore = [n for n in expected if n.startswith("speaker_encoder.")]
    tensors = load_safetensors(safetensors_files(folder), expected=expected, dtype=dt, device=dev, ignore=ignore)
    return build_tts(folder, cfg, gen, tensors, folder, dev, dt, quantize, runtime)


def build_tts(folder: Path, cfg: ModelConfig, gen: GenerationConfig, tensors: dict[str, torch.Tensor],
              tokenizer_folder: Path, device: torch.device, dtype: torch.dtype, quantize: str | None = None,
              runtime: RuntimeSettings | None = None) -> TTS:
    """A TTS from checkpoint tensors already in memory (``load_tts``; ``bench --random-weights``).

    On CPU the bias-free linears are switched to faster kernels (linear.py; same weights unless
    ``quantize``); ``runtime.cpu_kernels`` off keeps plain ``nn.Linear``. On CUDA in fp16/bf16,
    q/k/v and gate/up become one product each and RMSNorm one kernel (``layers.fused_ops``;
    ``runtime.fused_ops`` off keeps them).
    """
    from ..model.layers import apply_runtime, fused_ops
    from ..model.linear import QUANTIZATIONS, accelerate_cpu, fuse_float_projections
    from ..text.tokenizer import TextTokenizer

    if quantize is not None and (quantize not in QUANTIZATIONS or device.type != "cpu"):
        raise InputError(f"quantization {quantize!r} is only available on CPU (choices: {', '.join(QUANTIZATIONS)})")
    talker_sd, cp_sd = _split_state(tensors)
    with torch.device("meta"):
        talker = Talker(cfg.talker)
        predictor = CodePredictor(cfg.talker)
    _load_into(talker, talker_sd, f"{folder}: talker")
    _load_into(predictor, cp_sd, f"{folder}: code predictor")
    runtime = runtime or RuntimeSettings.from_env()
    if device.type == "cpu" and (quantize or runtime.cpu_kernels):
        accelerate_cpu(talker, quantize)
        accelerate_cpu(predictor, quantize)
    elif fused_ops(device, dtype, runtime.fused_ops):
        fuse_float_projections(talker)
        fuse_float_projections(predictor)
    for net in (talker, predictor):
        apply_runtime(net, device, dtype, fused=runtime.fused_ops, flash_attn=runtime.flash_attn)
    tokenizer = TextTokenizer.from_folder(tokenizer_folder)
    tts = TTS(folder, cfg, gen, talker, predictor, tokenizer, device, dtype, runtime)
    tts.quantize = quantize
    return tts


def resolve_model_folder(model: str, download_missing: bool = True) -> Path:
    """A local folder as is; otherwise an official short name or repo id through the hub cache."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    from ..io.hub import resolve_model

    return resolve_model(model, download_missing=download_missing)
