"""The library's front door: load a model folder once, then turn text into audio (or codec codes).

    tts = load_tts("path/to/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    result = tts.synthesize("Hello.", speaker="ryan", language="english", seed=0)
    result.audio  # float32 numpy [frames * 1920] at result.sample_rate (24 kHz)
    result.codes  # LongTensor [frames, 16]; tts.generate_codes(...) stops there
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .code_predictor import CodePredictor
from .config import GenerationConfig, ModelConfig
from .errors import InputError, ModelError
from .generate import GenerationResult, generate_frames, iter_frames
from .sampling import SamplingSettings
from .talker import Talker
from .weights import expected_model_tensors, load_safetensors, safetensors_files

# The documented voice of CustomVoice models when none is asked for (else the first in sorted order).
DEFAULT_SPEAKER = "ryan"

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise InputError(f"unknown dtype '{dtype}' (use one of: float32, bfloat16, float16)") from None


def parse_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device '{device}' (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but CUDA is not available (use --device cpu)")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device '{device}' (use cpu or cuda)")
    return dev


@dataclass
class SynthesisResult:
    audio: np.ndarray  # float32 [frames * 1920], mono, in [-1, 1]
    codes: torch.Tensor  # [frames, 16] int64 on the CPU
    stop_reason: str  # "eos" | "max_frames"
    sample_rate: int = 24000
    warnings: list[str] = field(default_factory=list)

    @property
    def frames(self) -> int:
        return int(self.codes.shape[0])

    @property
    def seconds(self) -> float:
        return len(self.audio) / self.sample_rate


class TTS:
    """A loaded model: config, text tokenizer, talker and code predictor on one device; the codec
    decoder is loaded on first use."""

    def __init__(self, folder: Path, cfg: ModelConfig, gen: GenerationConfig, talker: Talker,
                 predictor: CodePredictor, tokenizer, device: torch.device, dtype: torch.dtype):
        self.folder, self.cfg, self.generation_config = folder, cfg, gen
        self.talker, self.predictor, self.tokenizer = talker, predictor, tokenizer
        self.device, self.dtype = device, dtype
        self._decoder = None

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
            from .codec import CodecDecoder

            self._decoder = CodecDecoder.from_folder(self.folder, device=self.device, dtype=torch.float32)
        return self._decoder

    @property
    def sample_rate(self) -> int:
        from .audio import SAMPLE_RATE

        return SAMPLE_RATE

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
               instruct: str | None = None, non_streaming_mode: bool | None = None):
        """The talker prompt (prefill rows, trailing text rows) for one utterance."""
        from .prompt import SynthesisRequest, build_prompt

        request = SynthesisRequest(text=text, speaker=speaker, language=language, instruct=instruct,
                                   non_streaming_mode=non_streaming_mode)
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
                           self.frame_budget(max_frames), self.cfg.talker.codec_eos_token_id, seed=seed, log=log)

    @torch.inference_mode()
    def generate_codes(self, text: str, speaker: str | None = None, language: str | None = "auto",
                       instruct: str | None = None, non_streaming_mode: bool | None = None,
                       greedy: bool = False, seed: int | None = None, max_frames: int | None = None,
                       return_logits: bool = False, progress: Callable[[int], None] | None = None,
                       **sampling_overrides) -> GenerationResult:
        """Text to codec codes [frames, 16]. Stops at EOS (not emitted) or after ``max_frames``.

        ``sampling_overrides``: temperature, top_k, top_p, repetition_penalty, do_sample and the
        subtalker_* variants; None keeps generation_config.json's value. ``progress(frames_so_far)``
        is called after every frame.
        """
        settings = self.sampling(greedy=greedy, **sampling_overrides)
        max_frames = self.frame_budget(max_frames)
        prompt = self.prompt(text, speaker=speaker, language=language, instruct=instruct,
                             non_streaming_mode=non_streaming_mode)
        result = generate_frames(self.talker, self.predictor, prompt.embeds, prompt.trailing, prompt.pad,
                                 settings, max_frames, self.cfg.talker.codec_eos_token_id, seed=seed,
                                 return_logits=return_logits, progress=progress)
        result.warnings = list(prompt.warnings)
        return result

    def decode(self, codes) -> np.ndarray:
        """Codec codes [frames, 16] -> float32 audio [frames * 1920] (the official offline decode)."""
        return self.decoder.decode(codes).numpy()

    def synthesize(self, text: str, speaker: str | None = None, language: str | None = "auto",
                   instruct: str | None = None, non_streaming_mode: bool | None = None,
                   greedy: bool = False, seed: int | None = None, max_frames: int | None = None,
                   progress: Callable[[int], None] | None = None, **sampling_overrides) -> SynthesisResult:
        """Text to 24 kHz mono float32 audio: ``generate_codes`` then the codec decoder.

        A CustomVoice model without ``speaker`` speaks with ``default_speaker``. Other arguments as
        for ``generate_codes``.
        """
        if speaker in (None, "") and self.model_type == "custom_voice":
            speaker = self.default_speaker
        gen = self.generate_codes(text, speaker=speaker, language=language, instruct=instruct,
                                  non_streaming_mode=non_streaming_mode, greedy=greedy, seed=seed,
                                  max_frames=max_frames, progress=progress, **sampling_overrides)
        warnings = list(gen.warnings)
        if gen.frames == 0:
            audio = np.zeros(0, dtype=np.float32)
            warnings.append("the model ended the utterance before its first frame: no audio")
        else:
            audio = self.decode(gen.codes)
        return SynthesisResult(audio=audio, codes=gen.codes, stop_reason=gen.stop_reason,
                               sample_rate=self.sample_rate, warnings=warnings)


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


def load_tts(path_or_folder: str | Path, device: str | torch.device = "cpu",
             dtype: str | torch.dtype | None = None) -> TTS:
    """Load a Qwen3-TTS model folder (config.json, generation_config.json, model.safetensors and the
    text tokenizer files). Default dtype: float32 on CPU, bfloat16 on CUDA."""
    from .text import TextTokenizer

    folder = Path(path_or_folder).expanduser()
    if not folder.is_dir():
        raise ModelError(f"model folder not found: {folder}")
    dev = parse_device(device)
    dt = parse_dtype(dtype) or (torch.bfloat16 if dev.type == "cuda" else torch.float32)
    cfg = ModelConfig.from_file(folder / "config.json")
    gen_path = folder / "generation_config.json"
    gen = GenerationConfig.from_file(gen_path) if gen_path.is_file() else GenerationConfig()
    expected = expected_model_tensors(cfg)
    # The Base models' speaker encoder is not used for text-to-codes (voice cloning is issue #5).
    ignore = [n for n in expected if n.startswith("speaker_encoder.")]
    tensors = load_safetensors(safetensors_files(folder), expected=expected, dtype=dt, device=dev, ignore=ignore)
    talker_sd, cp_sd = _split_state(tensors)
    with torch.device("meta"):
        talker = Talker(cfg.talker)
        predictor = CodePredictor(cfg.talker)
    _load_into(talker, talker_sd, f"{folder}: talker")
    _load_into(predictor, cp_sd, f"{folder}: code predictor")
    tokenizer = TextTokenizer.from_folder(folder)
    return TTS(folder, cfg, gen, talker, predictor, tokenizer, dev, dt)


def resolve_model_folder(model: str, download_missing: bool = True) -> Path:
    """A local folder as is; otherwise an official short name or repo id through the hub cache."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    from .hub import resolve_model

    return resolve_model(model, download_missing=download_missing)
