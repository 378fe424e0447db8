"""The library's front door: load a model folder once, then turn text into codec codes.

    tts = load_tts("path/to/Qwen3-TTS-12Hz-0.6B-CustomVoice")
    result = tts.generate_codes("Hello.", speaker="ryan", language="english", seed=0)
    result.codes  # LongTensor [frames, 16]
"""

from __future__ import annotations

from pathlib import Path

import torch

from .code_predictor import CodePredictor
from .config import GenerationConfig, ModelConfig
from .errors import InputError, ModelError
from .generate import GenerationResult, generate_frames
from .sampling import SamplingSettings
from .talker import Talker
from .weights import expected_model_tensors, load_safetensors, safetensors_files

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


class TTS:
    """A loaded model: config, text tokenizer, talker and code predictor on one device."""

    def __init__(self, folder: Path, cfg: ModelConfig, gen: GenerationConfig, talker: Talker,
                 predictor: CodePredictor, tokenizer, device: torch.device, dtype: torch.dtype):
        self.folder, self.cfg, self.generation_config = folder, cfg, gen
        self.talker, self.predictor, self.tokenizer = talker, predictor, tokenizer
        self.device, self.dtype = device, dtype

    @property
    def model_type(self) -> str:
        return self.cfg.tts_model_type

    @property
    def speakers(self) -> list[str]:
        return self.cfg.speakers

    @property
    def languages(self) -> list[str]:
        return self.cfg.languages

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

    @torch.inference_mode()
    def generate_codes(self, text: str, speaker: str | None = None, language: str | None = "auto",
                       instruct: str | None = None, non_streaming_mode: bool | None = None,
                       greedy: bool = False, seed: int | None = None, max_frames: int | None = None,
                       return_logits: bool = False, **sampling_overrides) -> GenerationResult:
        """Text to codec codes [frames, 16]. Stops at EOS (not emitted) or after ``max_frames``.

        ``sampling_overrides``: temperature, top_k, top_p, repetition_penalty, do_sample and the
        subtalker_* variants; None keeps generation_config.json's value.
        """
        from .prompt import SynthesisRequest, build_prompt

        settings = SamplingSettings.resolve(self.generation_config, greedy=greedy, **sampling_overrides)
        if max_frames is None:
            max_frames = self.generation_config.max_new_tokens
        if int(max_frames) < 1:
            raise InputError(f"max_frames must be at least 1 (got {max_frames})")
        request = SynthesisRequest(text=text, speaker=speaker, language=language, instruct=instruct,
                                   non_streaming_mode=non_streaming_mode)
        prompt = build_prompt(self, self.cfg, self.tokenizer, request)
        result = generate_frames(self.talker, self.predictor, prompt.embeds, prompt.trailing, prompt.pad,
                                 settings, int(max_frames), self.cfg.talker.codec_eos_token_id, seed=seed,
                                 return_logits=return_logits)
        result.warnings = list(prompt.warnings)
        return result


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
