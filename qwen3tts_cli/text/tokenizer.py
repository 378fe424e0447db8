"""Text tokenizer: the Qwen2 byte-level BPE, built with `tokenizers` from the model folder's files.

The official folders ship vocab.json + merges.txt + tokenizer_config.json and no tokenizer.json,
so we assemble the same pipeline the reference gets from its slow-to-fast converter: NFC
normalization, a regex split, byte-level mapping, BPE, and the 33 added tokens matched in the raw
text before any of that. Nothing is prepended or appended (the prompt templates carry their own
special tokens).

Two split regexes exist. "qwen2" is the published tokenizer's. "local-path" is what the official
reference ends up with when it loads a *local folder* whose config.json says transformers 4.57.3:
its Mistral regex fix replaces the split and CamelCase words, combining marks and "/" after
punctuation then tokenize differently (reference-architecture.md §2.8). Plain sentences, CJK text
and all-caps words split the same under both.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, normalizers, pre_tokenizers
from tokenizers.models import BPE

from ..errors import InputError, ModelError

SPLIT_REGEXES = {
    "qwen2": (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
    "local-path": (
        r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+"
        r"|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*"
        r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+"
    ),
}
DEFAULT_REGEX = "qwen2"
TOKENIZER_FILES = ("vocab.json", "merges.txt", "tokenizer_config.json")

# Building from the 2.7 MB vocab and 1.6 MB merges takes about 0.3 s (2-core CPU); one build per
# (folder, regex) serves the whole process.
_cache: dict[tuple[str, str], "TextTokenizer"] = {}
_cache_lock = threading.Lock()


def _added_tokens(config_path: Path) -> list[tuple[int, AddedToken]]:
    try:
        cfg = json.loads(config_path.read_text(encoding="utf-8"))
        entries = cfg.get("added_tokens_decoder") or {}
        out = []
        for key, d in entries.items():
            out.append((int(key), AddedToken(
                d["content"], single_word=bool(d.get("single_word", False)),
                lstrip=bool(d.get("lstrip", False)), rstrip=bool(d.get("rstrip", False)),
                normalized=bool(d.get("normalized", False)), special=bool(d.get("special", False)))))
    except FileNotFoundError:
        raise ModelError(f"{config_path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError, KeyError, TypeError,
            ValueError) as e:
        raise ModelError(f"{config_path}: cannot read the added tokens ({e})") from None
    return sorted(out, key=lambda x: x[0])


def build_tokenizer(folder: str | Path, regex: str = DEFAULT_REGEX) -> Tokenizer:
    """A fresh `tokenizers.Tokenizer` for the text-tokenizer files in `folder` (uncached)."""
    if regex not in SPLIT_REGEXES:
        raise InputError(f"unknown tokenizer regex '{regex}'; valid: {', '.join(sorted(SPLIT_REGEXES))}")
    folder = Path(folder)
    for name in TOKENIZER_FILES:
        if not (folder / name).is_file():
            raise ModelError(f"{folder}: text tokenizer file '{name}' is missing")
    try:
        model = BPE.from_file(str(folder / "vocab.json"), str(folder / "merges.txt"),
                              unk_token=None, continuing_subword_prefix="", end_of_word_suffix="",
                              fuse_unk=False, byte_fallback=False)
    except Exception as e:  # the Rust reader reports every parse problem as a plain Exception
        raise ModelError(f"{folder}: cannot read vocab.json/merges.txt ({e})") from None
    tok = Tokenizer(model)
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(SPLIT_REGEXES[regex]), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()

    for token_id, added in _added_tokens(folder / "tokenizer_config.json"):
        # tokenizers numbers new tokens consecutively after the vocab; the official ids are exactly
        # that sequence, which we check instead of trusting it.
        if added.special:
            tok.add_special_tokens([added])
        else:
            tok.add_tokens([added])
        if tok.token_to_id(added.content) != token_id:
            raise ModelError(f"{folder}: added token {added.content!r} should have id {token_id}, "
                             f"got {tok.token_to_id(added.content)}")
    return tok


class TextTokenizer:
    """Encode text to Qwen2 ids and back. Use `from_folder`; instances are shared per folder."""

    def __init__(self, tokenizer: Tokenizer, regex: str, folder: Path | None = None,
                 build_seconds: float = 0.0):
        self.tokenizer = tokenizer
        self.regex = regex
        self.folder = folder
        self.build_seconds = build_seconds

    @classmethod
    def from_folder(cls, folder: str | Path, regex: str = DEFAULT_REGEX) -> "TextTokenizer":
        folder = Path(folder).resolve()
        key = (str(folder), regex)
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                return hit
            t0 = time.perf_counter()
            tok = cls(build_tokenizer(folder, regex), regex, folder)
            tok.build_seconds = time.perf_counter() - t0
            _cache[key] = tok
            return tok

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = False) -> str:
        return self.tokenizer.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size(with_added_tokens=True)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
