"""The six official Qwen3-TTS 12 Hz repos: what they hold and the published checksums.

The configs of each repo ship inside this package (``metadata/``), so a known repo id works offline
wherever only the config is needed (``--list-speakers``, ``bench --random-weights``, the builder).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import InputError


@dataclass(frozen=True)
class PublishedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class KnownRepo:
    repo_id: str
    kind: str  # "model" or "tokenizer"
    short: str  # the name the builder and the CLI accept, e.g. "0.6B-CustomVoice"
    weights: PublishedFile  # the repo's own model.safetensors

    @property
    def name(self) -> str:
        return self.repo_id.split("/", 1)[1]


CODEC_WEIGHTS_SIZE = 682_293_092
CODEC_WEIGHTS_SHA256 = "836b7b357f5ea43e889936a3709af68dfe3751881acefe4ecf0dbd30ba571258"


def _model(short: str, size: int, sha: str) -> KnownRepo:
    return KnownRepo(f"Qwen/Qwen3-TTS-12Hz-{short}", "model", short,
                     PublishedFile("model.safetensors", size, sha))


KNOWN_REPOS: tuple[KnownRepo, ...] = (
    _model("0.6B-Base", 1_829_344_272, "180b3b10eb1c9f1b4db7806d5475bae3071c0243c299d49926bab1da3b6946f6"),
    _model("0.6B-CustomVoice", 1_811_626_576, "bc3c7e785eb961179c25450d1acff03f839e0002f2f3a5aeb67b5735c0fa2adb"),
    _model("1.7B-Base", 3_857_413_744, "38fc7fc51c5e776e840414b6fd443962e9411b9654888fd7913e4da643cb857c"),
    _model("1.7B-CustomVoice", 3_833_402_552, "38b1d5971bdbd982b561cccec982669a53b0537c3cf5e9bd4778ed07bb2f5137"),
    _model("1.7B-VoiceDesign", 3_833_402_552, "391e8db219f292c515297cdceeb43e4eae67cdde35fa57e79a6a8a532fca0522"),
    KnownRepo("Qwen/Qwen3-TTS-Tokenizer-12Hz", "tokenizer", "Tokenizer-12Hz",
              PublishedFile("model.safetensors", CODEC_WEIGHTS_SIZE, CODEC_WEIGHTS_SHA256)),
)

DEFAULT_MODEL = "Qwen/Qwen3-TTS-12Hz-0.6B-CustomVoice"


def published_files(repo: KnownRepo) -> list[PublishedFile]:
    """Every safetensors file of a repo whose size and sha256 are published."""
    if repo.kind == "tokenizer":
        return [repo.weights]
    return [repo.weights, PublishedFile("speech_tokenizer/model.safetensors", CODEC_WEIGHTS_SIZE, CODEC_WEIGHTS_SHA256)]


def find_repo(name: str) -> KnownRepo | None:
    """Match a repo id ('Qwen/Qwen3-TTS-12Hz-0.6B-Base'), its name, or its short form, any case."""
    key = name.strip().lower()
    for r in KNOWN_REPOS:
        if key in (r.repo_id.lower(), r.name.lower(), r.short.lower()):
            return r
    return None


def get_repo(name: str) -> KnownRepo:
    r = find_repo(name)
    if r is None:
        shorts = ", ".join(r.short for r in KNOWN_REPOS)
        raise InputError(f"unknown model '{name}' (known: {shorts})")
    return r


def metadata_dir() -> Path:
    """The package's copy of the published metadata files."""
    return Path(str(resources.files("qwen3tts_cli") / "metadata"))


def repo_metadata_files(repo: KnownRepo) -> dict[str, Path]:
    """The small published files of a repo (everything but weights), from the package's copy.

    Keys are paths inside the repo. All five model repos share the generation config,
    preprocessor config, text tokenizer and speech_tokenizer/ configs byte for byte.
    """
    m = metadata_dir()
    common = m / "common"
    st = common / "speech_tokenizer"
    if repo.kind == "tokenizer":
        return {name: st / name for name in ("config.json", "configuration.json", "preprocessor_config.json")}
    files = {
        "config.json": m / repo.name / "config.json",
        "generation_config.json": common / "generation_config.json",
        "preprocessor_config.json": common / "preprocessor_config.json",
    }
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        files[name] = common / "text_tokenizer" / name
    for name in ("config.json", "configuration.json", "preprocessor_config.json"):
        files[f"speech_tokenizer/{name}"] = st / name
    return files


HASH_CHUNK = 1 << 23  # 8 MiB: large enough that hashing, not Python, is the cost


def sha256_file(path: Path, h=None) -> str:
    """SHA-256 of a file, streamed in large chunks; ``h`` continues a running hash (updated in place)."""
    h = h or hashlib.sha256()
    buf = bytearray(HASH_CHUNK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()
