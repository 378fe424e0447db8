"""The library's front door: a loaded model that turns requests into audio (or codec codes).

    tts = load_tts("path/to/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    result = tts.synthesize("Hello.", speaker="ryan", language="english", seed=0)
    result.audio  # float32 numpy [frames * 1920] at result.sample_rate (24 kHz)
    result.codes  # LongTensor [frames, 16]; tts.generate_codes(...) stops there

Every method takes either a SpeechRequest or text plus the request's fields as keywords
(speaker, language, instruct, voice, greedy, seed, max_frames, split, max_chars, pause, schedule,
guard, non_streaming_mode, and sampling overrides such as temperature=0.7). The work itself is in
pipeline.py (plan -> frames -> audio) and model/frames.py (the frame loop).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from ..io.config import GenerationConfig, ModelConfig
from ..model.code_predictor import CodePredictor
from ..model.embeddings import Embeddings
from ..model.frames import GenerationResult, Row, generate, iter_frames
from ..model.sampling import SamplingSettings
from ..model.talker import Talker
from ..runtime import RuntimeSettings
from . import pipeline
from .request import (DEFAULT_LANGUAGE, CloneReference, ResolvedRequest, SpeechRequest, default_speaker,
                      request_options)
from ..errors import RequestError
from .results import SAMPLE_RATE, SpeechStream, SynthesisResult

# Prompt rows the CUDA warm-up captures frame-step graphs for (4 buckets of 256 cache slots): a
# 300-character chunk with a long instruct stays below it.
WARM_UP_PROMPT_ROWS = 1024


class TTS:
    """A loaded model: config, text tokenizer, talker and code predictor on one device, with the
    runtime settings it was loaded with; the codec decoder is loaded on first use."""

    def __init__(self, folder: Path, cfg: ModelConfig, gen: GenerationConfig, talker: Talker,
                 predictor: CodePredictor, tokenizer, device: torch.device, dtype: torch.dtype,
                 runtime: RuntimeSettings | None = None, quantize: str | None = None, decoder=None):
        self.folder, self.cfg, self.generation_config = folder, cfg, gen
        self.talker, self.predictor, self.tokenizer = talker, predictor, tokenizer
        self.embeddings = Embeddings(talker, predictor)
        self.device, self.dtype = device, dtype
        self.runtime = runtime or RuntimeSettings()
        self.quantize = quantize  # "int8" | "w8a8": quantized CPU linears (model/linear.py)
        self._decoder = decoder
        self._voice_maker = None

    # -- what the model is -----------------------------------------------------------------------

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
        return default_speaker(self.speakers)

    @property
    def sample_rate(self) -> int:
        return SAMPLE_RATE

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

    def graph_capture_seconds(self) -> float:
        """Seconds spent capturing CUDA graphs so far (frame step and streaming codec); 0 without."""
        holders = (getattr(self.talker, "_static_step", None),
                   None if self._decoder is None else getattr(self._decoder, "_stream_states", None))
        return sum(float(getattr(h, "capture_s", 0.0)) for h in holders)

    # -- requests --------------------------------------------------------------------------------

    def request(self, text: str | SpeechRequest, **options) -> SpeechRequest:
        """A SpeechRequest from text and keyword options, or a request with the options that are not
        None replacing its fields (sampling names included)."""
        if isinstance(text, SpeechRequest):
            return text.with_options(**options)
        return SpeechRequest.from_options(text, **options)

    def resolve(self, request: SpeechRequest) -> ResolvedRequest:
        """The request against this model (see SpeechRequest.resolve), with a CloneReference turned
        into this model's voice (the speaker and codec encoders run once, here)."""
        plan = request.resolve(self.cfg, self.generation_config)
        if isinstance(request.voice, CloneReference):
            ref = request.voice
            voice = self.create_voice(ref.audio, ref_text=ref.ref_text, xvector_only=ref.xvector_only)
            plan = replace(request, voice=voice).resolve(self.cfg, self.generation_config)
        return plan

    def create_voice(self, ref_audio, ref_text: str | None = None, xvector_only: bool = False):
        """A VoicePrompt (qwen3tts_cli.voice) from reference audio, for ``voice=``; Base models only.

        ``ref_audio``: an audio file (wav/flac/ogg, any rate and channels) or ``(samples, rate)``,
        at least 1 s and not silent. In-context cloning (default) needs ``ref_text``, the
        transcript; ``xvector_only=True`` uses the speaker embedding alone. The speaker encoder and
        the codec encoder are loaded from the model folder on first use, in float32.
        """
        if self._voice_maker is None:
            from ..voice.clone import VoiceMaker

            self._voice_maker = VoiceMaker(self.folder, self.cfg, self.device)
        return self._voice_maker.create(ref_audio, ref_text=ref_text, xvector_only=xvector_only)

    def text_chunks(self, text: str, split: bool = True, max_chars: int | None = None,
                    language: str | None = DEFAULT_LANGUAGE) -> list[str]:
        """The pieces ``synthesize`` speaks one after another (SpeechRequest.chunks)."""
        return SpeechRequest(text, split=split, max_chars=max_chars, language=language).chunks()

    def sampling(self, greedy: bool = False, **sampling_overrides) -> SamplingSettings:
        """generation_config.json's sampling with the given overrides (None keeps a value)."""
        return SamplingSettings.resolve(self.generation_config, greedy=greedy, **sampling_overrides)

    # -- prompts and frames ----------------------------------------------------------------------

    @torch.inference_mode()
    def build_prompt(self, plan: ResolvedRequest, text: str):
        """The talker prompt (prefill rows, trailing text rows) of one text chunk of a resolved request."""
        from .prompt import build_prompt

        return build_prompt(self.embeddings, self.cfg, self.tokenizer, plan, text)

    def feed_ids_needed(self, plan: ResolvedRequest) -> int:
        """Text ids a text feed must have before its prompt can be built (prompt.feed_ids_needed)."""
        from .prompt import feed_ids_needed

        return feed_ids_needed(self.tokenizer, plan)

    def text_feed(self):
        """A new engine.feed.TextFeed for this model's tokenizer: push text to it from any thread
        while ``stream(feed, ...)`` speaks it."""
        from .feed import TextFeed

        return TextFeed(self.tokenizer)

    def prompt(self, text: str | SpeechRequest, speaker: str | None = None, language: str | None = None,
               instruct: str | None = None, **options):
        """The talker prompt of an utterance spoken as given (not split): a Prompt with ``embeds``,
        ``trailing``, ``pad`` and ``warnings``."""
        request = self.request(text, **_given(speaker=speaker, language=language, instruct=instruct), split=False,
                               **options)
        return self.build_prompt(self.resolve(request), request.text)

    def generate(self, rows: Sequence[Row], settings: SamplingSettings, **kw):
        """model.frames.generate on this model: its parts, end token and runtime settings."""
        return generate(self.talker, self.predictor, rows, settings, self.cfg.talker.codec_eos_token_id,
                        cuda_graphs=self.runtime.cuda_graphs, **kw)

    def _utterance(self, text, speaker, language, instruct, options) -> ResolvedRequest:
        """An utterance spoken as given: not split, no runaway guard (the code-level calls)."""
        request = self.request(text, **_given(speaker=speaker, language=language, instruct=instruct), split=False,
                               guard=False, **options)
        return self.resolve(_not_a_feed(request))

    def iter_frames(self, text: str | SpeechRequest, speaker: str | None = None,
                    language: str | None = None, instruct: str | None = None, **options):
        """Frames of one utterance as they are generated: int64 [16] tensors on the model's device;
        the generator returns the stop reason ("eos" | "max_frames")."""
        plan = self._utterance(text, speaker, language, instruct, options)
        row = Row(self.build_prompt(plan, plan.chunks[0]), cap=plan.max_frames, seed=plan.seed(0))
        return iter_frames(self.talker, self.predictor, row, plan.sampling, self.cfg.talker.codec_eos_token_id,
                           cuda_graphs=self.runtime.cuda_graphs)

    @torch.inference_mode()
    def generate_codes(self, text: str | SpeechRequest, speaker: str | None = None,
                       language: str | None = None, instruct: str | None = None, *,
                       return_logits: bool = False, progress: Callable[[int], None] | None = None,
                       **options) -> GenerationResult:
        """Text to codec codes [frames, 16], spoken as given (no splitting, no guard). Stops at EOS
        (not emitted) or after ``max_frames``. With a cloned ``voice`` the codes are the generated
        ones only. ``return_logits``: the raw talker and code-predictor logits too.
        ``progress(frames_so_far)`` is called after every frame."""
        return self.generate_codes_batch([text], speaker, language, instruct, return_logits=return_logits,
                                         progress=progress, **options)[0]

    @torch.inference_mode()
    def generate_codes_batch(self, texts: Sequence[str | SpeechRequest], speaker: str | None = None,
                             language: str | None = None, instruct: str | None = None, *,
                             seed: int | None | Sequence[int | None] = None,
                             max_frames: int | None | Sequence[int | None] = None, return_logits: bool = False,
                             on_row: Callable[[int, GenerationResult], None] | None = None,
                             progress: Callable[[int], None] | None = None, **options) -> list[GenerationResult]:
        """``generate_codes`` for many texts at once (batched generation, model/frames.py): each
        row's codes equal ``generate_codes`` of that text alone with the same seed (greedy: up to
        float rounding of batched products). ``seed`` and ``max_frames``: one value or one per
        text; the texts share their sampling settings. ``on_row(i, result)`` is called as soon as
        text i has ended; ``progress(n)`` after every lock-step frame."""
        def each(value, i):
            return value[i] if isinstance(value, (list, tuple)) else value

        plans = [self._utterance(t, speaker, language, instruct,
                                 dict(options, **_given(seed=each(seed, i), max_frames=each(max_frames, i))))
                 for i, t in enumerate(texts)]
        rows = [Row(self.build_prompt(p, p.chunks[0]), cap=p.max_frames, seed=p.seed(0)) for p in plans]
        for b, frame in self.generate(rows, pipeline.batch_sampling(plans), record_logits=return_logits,
                                      on_step=progress):
            if frame is None and on_row is not None:
                on_row(b, rows[b].result())
        return [r.result() for r in rows]

    @torch.inference_mode()
    def teacher_force(self, text: str | SpeechRequest, codes: torch.Tensor, speaker: str | None = None,
                      language: str | None = None, instruct: str | None = None,
                      **options) -> GenerationResult:
        """The model fed the given codes [T, 16] instead of its own choices (teacher forcing): the raw
        talker logits [T, V] that would choose each first code and the code-predictor logits
        [T, 15, V'], every step on the same context whatever the model would pick."""
        plan = self._utterance(text, speaker, language, instruct, dict(options, greedy=True, max_frames=len(codes)))
        row = Row(self.build_prompt(plan, plan.chunks[0]), cap=len(codes))
        no_eos = replace(plan.sampling, min_new_tokens=len(codes) + 1)
        for _ in generate(self.talker, self.predictor, [row], no_eos, self.cfg.talker.codec_eos_token_id,
                          cuda_graphs=False, record_logits=True, forced=codes.to(self.device)[None]):
            pass
        return row.result()

    # -- audio -----------------------------------------------------------------------------------

    def decode(self, codes) -> np.ndarray:
        """Codec codes [frames, 16] -> float32 audio [frames * 1920] (the official offline decode)."""
        return self.decoder.decode(codes).numpy()

    def decode_streamed(self, codes, ref_codes=None, schedule: Sequence[int] | None = None) -> np.ndarray:
        """The audio ``stream`` plays for ``codes``: the streaming decoder fed the same chunk sizes
        (``schedule``, the last size repeating), after ``ref_codes`` when given (their audio is
        returned in front).

        synth decodes this way, not with ``decode``, so that ``stream`` and ``synth`` give the same
        samples bit for bit: fp32 convolutions round differently for different input lengths, so
        any two chunkings of the same codes differ by ~1e-6 (both stay within 1e-5 of the
        official offline decode, which ``decode`` reproduces exactly).
        """
        from .request import stream_schedule

        audio = pipeline.StreamedAudio(self.decoder, stream_schedule(schedule),
                                       None if ref_codes is None else torch.as_tensor(ref_codes))
        parts = [] if audio.reference is None else [audio.reference]
        parts += [a for frame in torch.as_tensor(codes).to(torch.long).cpu() if (a := audio.add(frame)) is not None]
        parts += [a for a in (audio.flush(),) if a is not None]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float32)

    def decode_for(self, codes, voice=None, schedule: Sequence[int] | None = None) -> np.ndarray:
        """Audio of generated ``codes`` as synth makes it (``decode_streamed``); with an ICL voice
        the reference codes are decoded in front (the decoder's chunk grid starts at the first
        reference frame, as officially) and their part of the audio is cut off again with the
        reference's formula. No frames, no audio."""
        n = int(torch.as_tensor(codes).shape[0])
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        if voice is None or voice.ref_codes is None:
            return self.decode_streamed(codes, schedule=schedule)
        from ..voice.clone import cut_reference

        ref = voice.ref_codes.to(torch.long).cpu()
        audio = self.decode_streamed(codes, ref_codes=ref, schedule=schedule)
        return cut_reference(audio, ref.shape[0], ref.shape[0] + n)

    def warm_up(self, text: str | SpeechRequest = "warm-up", *, prompt_rows: int = WARM_UP_PROMPT_ROWS,
                **options) -> float:
        """On CUDA with graphs, capture now what the first ``stream`` of such requests would capture
        inside its time to first audio: the frame step's graphs for prompts of up to
        ``prompt_rows`` rows (the KV cache sized for them plus ``max_frames``) and the codec's
        graphs (``warm_up_codec``). Takes ``stream``'s options (the sampling ones matter). Returns
        the seconds spent; 0.0 on CPU or with graphs off. (A Scheduler has its own ``warm_up``.)"""
        from ..model.cuda_graphs import prepare_frame_graphs, use_cuda_graphs

        request = self.warm_up_request(text, options)
        if not use_cuda_graphs(self.device, self.runtime.cuda_graphs):
            return 0.0
        t0 = time.perf_counter()
        gen = self.generation_config
        prepare_frame_graphs(self.talker, self.predictor, request.sampling_settings(gen),
                             prompt_rows + request.frame_cap(gen), prompt_rows)
        self.warm_up_codec(request)
        return time.perf_counter() - t0

    def warm_up_request(self, text: str | SpeechRequest, options: dict) -> SpeechRequest:
        """The request a warm-up prepares for: ``stream``'s other keywords (progress, ...) are
        welcome and play no part."""
        return self.request(text, **{k: v for k, v in options.items() if k in request_options()})

    def warm_up_codec(self, request: SpeechRequest) -> None:
        """On CUDA with graphs, capture the streaming codec's graphs for every push size up to the
        largest of ``request``'s schedule (an utterance's last push may be any shorter one)."""
        from ..codec.streaming import StreamStates
        from ..model.cuda_graphs import use_cuda_graphs

        if not use_cuda_graphs(self.device, self.runtime.cuda_graphs):
            return
        StreamStates.for_decoder(self.decoder).prepare(range(1, max(request.schedule) + 1))
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    # -- text to audio ---------------------------------------------------------------------------

    def synthesize(self, text: str | SpeechRequest, speaker: str | None = None,
                   language: str | None = None, instruct: str | None = None, *,
                   progress: Callable[[int], None] | None = None, decode: bool = True,
                   **options) -> SynthesisResult:
        """Text to 24 kHz mono float32 audio: codec codes, then the codec decoder.

        A CustomVoice model without ``speaker`` speaks with ``default_speaker``. A Base model needs
        ``voice`` (a VoicePrompt from create_voice / voice.load_voice, or a CloneReference).

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
        request = _not_a_feed(self.request(text, **_given(speaker=speaker, language=language, instruct=instruct),
                                           **options))
        return pipeline.synthesize(self, self.resolve(request), progress, decode)

    def stream(self, text: str | SpeechRequest, *, progress: Callable[[int], None] | None = None,
               **options) -> SpeechStream:
        """Like ``synthesize``, but audio comes out while frames are generated: iterate the returned
        ``SpeechStream`` for float32 chunks (24 kHz mono); its ``result`` (codes, stop reason,
        warnings) is filled when the iteration ends.

        ``schedule``: frames per chunk, e.g. ``(1, 2, 4, 8)`` (the default: the first audio after one
        frame, then doubling; the last size repeats) or one int. The codec decodes each chunk with
        its carried state (codec.streaming), so the concatenated chunks are ``synthesize``'s audio
        (fp32 rounding apart: at most ~1e-5, see codec/streaming.py) for the same arguments and seed:
        same text splitting, per-chunk seeds and pauses (a pause is yielded as soon as its chunk
        ends). Two differences from ``synthesize``: when the runaway guard trips, the runaway
        stretch up to the trip has already been streamed (codes and ``truncated`` say where it
        began); and with an ICL voice the audio starts exactly at the first generated frame, where
        the reference's proportional cut may keep one more sample of the reference.

        ``text`` may be a text feed (``text_feed()``): the text arrives while it is spoken, in the
        streaming text layout; generation waits for the text it needs (engine/feed.py).

        Request errors are raised here, before the first frame.
        """
        plan = self.resolve(self.request(text, **options))
        if plan.request.feed is not None:
            return pipeline.stream_feed(self, plan, progress)
        return pipeline.stream(self, plan, progress)

    def synthesize_batch(self, texts: Sequence[str | SpeechRequest], speaker: str | None = None,
                         language: str | None = None, instruct: str | None = None, *,
                         on_result: Callable[[int, SynthesisResult], None] | None = None,
                         progress: Callable[[int], None] | None = None, **options) -> list[SynthesisResult]:
        """``synthesize`` for many texts at once, with the same result per text (greedy: up to float
        rounding of batched matmuls): every text chunk of every text is one row of one batched
        generation (chunk i of a text samples with ``seed + i``, each row watched by its own
        runaway guard). A text is decoded as soon as all its chunks have ended and handed to
        ``on_result(i, result)`` (e.g. to write its file) while the other rows go on.
        ``progress(n)``: after every lock-step frame. The texts share their sampling settings."""
        given = _given(speaker=speaker, language=language, instruct=instruct)
        plans = [self.resolve(_not_a_feed(self.request(t, **given, **options))) for t in texts]
        return pipeline.synthesize_batch(self, plans, on_result, progress)


def _given(**options) -> dict:
    """The positional-or-keyword options a caller actually set (None: the request's default)."""
    return {k: v for k, v in options.items() if v is not None}


def _not_a_feed(request: SpeechRequest) -> SpeechRequest:
    if request.feed is not None:
        raise RequestError("a text feed is spoken while it arrives: use stream(feed, ...)", "text", "feed_not_streamed")
    return request
