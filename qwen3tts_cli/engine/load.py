"""Loading: the one model resolver, device and dtype choices, and ``load_tts``.

    folder = resolve_model_folder("0.6B-CustomVoice")    # a folder, or an official model via the hub cache
    files = model_files("0.6B-CustomVoice")             # its configs without weights or network
    tts = load_tts(folder, device=default_device())
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ..codec.decoder import codec_folder
from ..errors import InputError, ModelError, RequestError
from ..io.config import GenerationConfig, ModelConfig
from ..io.weights import expected_model_tensors, load_safetensors, safetensors_files
from ..model.code_predictor import CodePredictor
from ..model.talker import Talker
from ..runtime import RuntimeSettings

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16,
          "float16": torch.float16, "fp16": torch.float16}


def default_device() -> str:
    """cuda when this machine has it, else cpu."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def default_dtype(device: torch.device, quantize: str | None = None) -> torch.dtype:
    """bfloat16 on CUDA (and for int8 weights, whose activations are bf16), float32 otherwise."""
    return torch.bfloat16 if device.type == "cuda" or quantize == "int8" else torch.float32


def parse_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    try:
        return DTYPES[dtype.lower()]
    except KeyError:
        raise InputError(f"unknown dtype '{dtype}' (use one of: float32, bfloat16, float16; "
                         "int8 or w8a8 on CPU)") from None


def parse_precision(dtype: str | torch.dtype | None) -> tuple[torch.dtype | None, str | None]:
    """The CLI's --dtype: float32 / bfloat16 / float16; on CPU also int8 (int8 weights, bf16
    activations) and w8a8 (int8 weights and dynamically quantized int8 activations, fp32 elsewhere).
    Returns (model dtype or None for the device default, quantization or None)."""
    if isinstance(dtype, str) and dtype.lower() == "int8":
        return torch.bfloat16, "int8"
    if isinstance(dtype, str) and dtype.lower() == "w8a8":
        return torch.float32, "w8a8"
    return parse_dtype(dtype), None


def parse_device(device: str | torch.device | None = None) -> torch.device:
    """A usable device (None: ``default_device()``); cuda becomes cuda:N, as tensors report it."""
    try:
        dev = torch.device(default_device() if device is None else device)
    except (RuntimeError, TypeError):
        raise InputError(f"unknown device '{device}' (use cpu or cuda)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RequestError("device 'cuda' requested but CUDA is not available (use the cpu device)", "device",
                           "cuda_unavailable")
    if dev.type not in ("cpu", "cuda"):
        raise InputError(f"unsupported device '{device}' (use cpu or cuda)")
    if dev.type == "cuda":
        # Tensors report cuda:N: an unindexed device would never compare equal to theirs.
        index = torch.cuda.current_device() if dev.index is None else dev.index
        if index >= torch.cuda.device_count():
            raise InputError(f"no CUDA device {index} (this machine has {torch.cuda.device_count()})")
        dev = torch.device("cuda", index)
    return dev


# ---------------------------------------------------------------------------------------------
# Finding a model
# ---------------------------------------------------------------------------------------------

def resolve_model_folder(model: str, download_missing: bool = True, progress=None) -> Path:
    """A local folder as is; otherwise an official short name or repo id through the hub cache
    (downloaded on first use unless ``download_missing`` is False; ``progress`` as hub.download's)."""
    local = Path(model).expanduser()
    if local.is_dir():
        return local
    from ..io.hub import resolve_model

    return resolve_model(model, download_missing=download_missing, progress=progress)


@dataclass(frozen=True)
class ModelFiles:
    """A model's small files, without its weights: enough to check a request against it."""

    config: Path
    generation_config: Path | None
    tokenizer: Path  # the folder with vocab.json, merges.txt, tokenizer_config.json
    codec_config: Path

    def model_config(self) -> ModelConfig:
        return ModelConfig.from_file(self.config)

    def generation(self) -> GenerationConfig:
        gen = self.generation_config
        return GenerationConfig.from_file(gen) if gen is not None and gen.is_file() else GenerationConfig()


def model_files(model: str | Path) -> ModelFiles | None:
    """A local folder's files, or an official model repo's from the package's copy of its
    metadata (no network); None for anything else."""
    local = Path(model).expanduser()
    if local.is_dir():
        return ModelFiles(local / "config.json", local / "generation_config.json", local,
                          local / "speech_tokenizer" / "config.json")
    from ..io.repos import find_repo, repo_metadata_files

    repo = find_repo(str(model))
    if repo is None or repo.kind != "model":
        return None
    files = repo_metadata_files(repo)
    return ModelFiles(files["config.json"], files["generation_config.json"], files["vocab.json"].parent,
                      files["speech_tokenizer/config.json"])


# ---------------------------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------------------------

def load_tts(path_or_folder: str | Path, device: str | torch.device = "cpu",
             dtype: str | torch.dtype | None = None, quantize: str | None = None,
             runtime: RuntimeSettings | None = None):
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
    dt = parse_dtype(dtype) or default_dtype(dev, quantize)
    files = model_files(folder)
    cfg = files.model_config()
    codec_folder(folder)  # decoding needs it: a missing codec is said now, not after generating
    expected = expected_model_tensors(cfg)
    # The Base models' speaker encoder only makes voices: create_voice loads it on first use.
    ignore = [n for n in expected if n.startswith("speaker_encoder.")]
    tensors = load_safetensors(safetensors_files(folder), expected=expected, dtype=dt, device=dev, ignore=ignore)
    return build_tts(folder, cfg, files.generation(), tensors, folder, dev, dt, quantize, runtime)


def build_tts(folder: Path, cfg: ModelConfig, gen: GenerationConfig, tensors: dict[str, torch.Tensor],
              tokenizer_folder: Path, device: torch.device, dtype: torch.dtype, quantize: str | None = None,
              runtime: RuntimeSettings | None = None, decoder=None):
    """A TTS from checkpoint tensors already in memory (``load_tts``; ``bench --random-weights``,
    which brings its own codec ``decoder``; otherwise it is loaded from the folder on first use).

    On CPU the bias-free linears are switched to faster kernels (linear.py; same weights unless
    ``quantize``); ``runtime.cpu_kernels`` off keeps plain ``nn.Linear``. On CUDA in fp16/bf16,
    q/k/v and gate/up become one product each and RMSNorm one kernel (``layers.fused_ops``;
    ``runtime.fused_ops`` off keeps them).
    """
    from ..model.layers import apply_runtime, fused_ops
    from ..model.linear import QUANTIZATIONS, accelerate_cpu, fuse_float_projections
    from ..text.tokenizer import TextTokenizer
    from .tts import TTS

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
    return TTS(folder, cfg, gen, talker, predictor, tokenizer, device, dtype, runtime, quantize, decoder)


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
