"""Offline integrity check of a model folder (or the standalone speech tokenizer folder).

Every check is a named item with a status, so a user sees everything that is wrong at once rather
than the first problem only. Large files are hashed once, in parallel threads (hashlib releases the
GIL), and the digest serves both the manifest and the published checksums.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..errors import InputError, ModelError
from .config import CodecConfig, GenerationConfig, ModelConfig, read_json
from .checksums import check_manifest, check_published, file_size, hash_files, manifest_entries, plan_published, safe_rel
from .manifest import load_manifest
from .weights import (TensorSpec, check_tensor_set, expected_codec_tensors, expected_model_tensors, read_headers,
                      stored_dtypes)


MODEL_TYPE = "qwen3_tts"
TOKENIZER_TYPE = "qwen3_tts_tokenizer_12hz"

# Files every model repo has; configuration.json files are ModelScope extras and optional.
MODEL_REQUIRED = (
    "config.json", "generation_config.json", "preprocessor_config.json",
    "vocab.json", "merges.txt", "tokenizer_config.json",
    "speech_tokenizer/config.json", "speech_tokenizer/preprocessor_config.json",
    "speech_tokenizer/model.safetensors",
)
TOKENIZER_REQUIRED = ("config.json", "preprocessor_config.json", "model.safetensors")

OK, FAIL, SKIP = "ok", "fail", "skip"


@dataclass
class CheckItem:
    name: str
    status: str  # "ok" | "fail" | "skip"
    detail: str

    def to_dict(self) -> dict:
        return {"name": self.name, "status": self.status, "detail": self.detail}


@dataclass
class VerifyReport:
    path: Path
    kind: str  # "model" | "tokenizer" | "unknown"
    checks: list[CheckItem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    @property
    def failures(self) -> list[CheckItem]:
        return [c for c in self.checks if c.status == FAIL]

    def __iter__(self):
        return iter(self.checks)

    def __len__(self) -> int:
        return len(self.checks)

    def __getitem__(self, name: str) -> CheckItem:
        for c in self.checks:
            if c.name == name:
                return c
        raise KeyError(name)

    def add(self, name: str, status: str, detail: str) -> CheckItem:
        item = CheckItem(name, status, detail)
        self.checks.append(item)
        return item

    def to_dict(self) -> dict:
        return {"path": str(self.path), "kind": self.kind, "ok": self.ok,
                "checks": [c.to_dict() for c in self.checks]}


# --------------------------------------------------------------------------------------------
# The checks
# --------------------------------------------------------------------------------------------

def verify_folder(path: str | Path, progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Check a model folder or a Qwen3-TTS-Tokenizer-12Hz folder; never raises for a bad folder.

    Raises InputError only when ``path`` is not a folder at all.
    """
    root = Path(path)
    if not root.exists():
        raise InputError(f"{root}: no such folder")
    if not root.is_dir():
        raise InputError(f"{root}: not a folder (give the model folder, not a file inside it)")
    say = progress or (lambda msg: None)

    manifest, manifest_error = load_manifest(root)
    kind, kind_detail = _detect_kind(root, manifest)
    report = VerifyReport(root, kind)

    # Files that claim to be the official release are held to its exact layout (dtypes included).
    published_plan = plan_published(root, kind, manifest)
    official = set() if isinstance(published_plan, str) else {rel for rel, _ in published_plan[1]}
    if kind == "unknown":
        report.add("folder kind", FAIL, kind_detail)
    else:
        report.add("folder kind", OK, kind_detail)
        _check_required(report, root, kind)
        model_cfg, codec_cfg = _check_configs(report, root, kind)
        _check_weights(report, root, kind, model_cfg, codec_cfg, official)

    # Which files to hash, for which check, decided before hashing so each is read once.
    to_hash: list[Path] = []
    if manifest is not None:
        to_hash += [root / rel for rel, info in manifest_entries(manifest)
                    if safe_rel(rel) and (root / rel).is_file() and file_size(root / rel) == info.get("size")]
    if not isinstance(published_plan, str):
        to_hash += [root / rel for rel, pf in published_plan[1] if file_size(root / rel) == pf.size]
    if to_hash:
        total = sum(file_size(p) for p in set(to_hash))
        say(f"hashing {len(set(to_hash))} file(s), {total / 1e9:.2f} GB")
    digests = hash_files(to_hash)

    manifest_error = None if manifest_error is None else _strip_root(manifest_error, root)
    report.add("manifest", *check_manifest(root, manifest, manifest_error, digests))
    report.add("published checksums", *check_published(root, published_plan, digests))
    return report


def _config_model_type(path: Path) -> str | None:
    try:
        return json.loads(path.read_text(encoding="utf-8")).get("model_type")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        return None


def _detect_kind(root: Path, manifest: dict | None) -> tuple[str, str]:
    cfg = root / "config.json"
    mt = _config_model_type(cfg) if cfg.is_file() else None
    if mt == MODEL_TYPE:
        return "model", "Qwen3-TTS model (model_type qwen3_tts)"
    if mt == TOKENIZER_TYPE:
        return "tokenizer", "speech tokenizer (model_type qwen3_tts_tokenizer_12hz)"
    # config.json is missing, unreadable or foreign: guess from the layout so the other checks still
    # run and the user learns everything that is wrong, not just the first thing.
    guess = None
    if (root / "speech_tokenizer").is_dir() or (root / "generation_config.json").is_file():
        guess = "model"
    elif manifest is not None and manifest.get("model") == "Tokenizer-12Hz":
        guess = "tokenizer"
    elif (root / "model.safetensors").is_file() and (root / "preprocessor_config.json").is_file():
        guess = "tokenizer"
    if mt is not None:
        why = f"config.json has model_type '{mt}', not '{MODEL_TYPE}' or '{TOKENIZER_TYPE}'"
        return "unknown", why + ": not a Qwen3-TTS model or speech tokenizer folder"
    if guess is None:
        why = "config.json is missing" if not cfg.exists() else "config.json is not readable JSON"
        return "unknown", why + "; not a Qwen3-TTS model or speech tokenizer folder"
    what = "model folder" if guess == "model" else "Qwen3-TTS-Tokenizer-12Hz folder"
    return guess, f"looks like a Qwen3-TTS {what} (config.json unusable, see below)"


def _index_shards(index: Path) -> list[str] | None:
    try:
        wm = read_json(index).get("weight_map")
    except ModelError:
        return None
    if not isinstance(wm, dict) or not wm:
        return None
    return sorted(set(str(v) for v in wm.values()))


def _weights_present(root: Path, sub: str) -> list[str]:
    """Names of missing weight files for model.safetensors (single file, or index + shards)."""
    folder = root / sub if sub else root
    prefix = f"{sub}/" if sub else ""
    if (folder / "model.safetensors").is_file():
        return []
    index = folder / "model.safetensors.index.json"
    if index.is_file():
        shards = _index_shards(index)
        if shards is None:
            return []  # a broken index is reported by the weights check with its reason
        return [prefix + s for s in shards if not (folder / s).is_file()]
    return [prefix + "model.safetensors"]


def _check_required(report: VerifyReport, root: Path, kind: str) -> None:
    if kind == "model":
        names = [n for n in MODEL_REQUIRED if n != "speech_tokenizer/model.safetensors"]
        missing = [n for n in names if not (root / n).is_file()]
        missing += _weights_present(root, "")
        missing += _weights_present(root, "speech_tokenizer")
        total = len(names) + 2
    else:
        names = [n for n in TOKENIZER_REQUIRED if n != "model.safetensors"]
        missing = [n for n in names if not (root / n).is_file()]
        missing += _weights_present(root, "")
        total = len(names) + 1
    if missing:
        report.add("required files", FAIL, f"{len(missing)} missing: " + ", ".join(missing))
    else:
        report.add("required files", OK, f"all {total} present")


def _check_configs(report: VerifyReport, root: Path, kind: str) -> tuple[ModelConfig | None, CodecConfig | None]:
    """Parse every config; returns the model and codec configs that parsed (None where not)."""
    model_cfg = codec_cfg = None

    def attempt(name: str, fn) -> object | None:
        p = root / name
        if not p.is_file():
            report.add(name, FAIL, "missing")
            return None
        try:
            value, detail = fn(p)
        except ModelError as e:
            report.add(name, FAIL, _strip_root(str(e), root))
            return None
        report.add(name, OK, detail)
        return value

    if kind == "tokenizer":
        codec_cfg = attempt("config.json", lambda p: _codec_summary(CodecConfig.from_file(p)))
        attempt("preprocessor_config.json", _json_object)
        return None, codec_cfg

    model_cfg = attempt("config.json", lambda p: _model_summary(ModelConfig.from_file(p)))
    attempt("generation_config.json", lambda p: (GenerationConfig.from_file(p), "parses"))
    attempt("preprocessor_config.json", _json_object)
    attempt("vocab.json", _vocab)
    attempt("merges.txt", _merges)
    attempt("tokenizer_config.json", _tokenizer_config)
    codec_cfg = attempt("speech_tokenizer/config.json", lambda p: _codec_summary(CodecConfig.from_file(p)))
    attempt("speech_tokenizer/preprocessor_config.json", _json_object)
    return model_cfg, codec_cfg


def _strip_root(msg: str, root: Path) -> str:
    """Messages name files relative to the folder; the report already says which folder."""
    prefix = str(root).rstrip("/") + "/"
    return msg.replace(prefix, "")


def _model_summary(cfg: ModelConfig) -> tuple[ModelConfig, str]:
    t = cfg.talker
    detail = (f"{cfg.tts_model_type} {cfg.tts_model_size or '?'}: talker {t.num_hidden_layers} layers, "
              f"hidden {t.hidden_size}; code predictor {t.code_predictor.num_hidden_layers} layers, "
              f"hidden {t.code_predictor.hidden_size}")
    if cfg.speakers:
        detail += f"; {len(cfg.speakers)} speakers"
    return cfg, detail


def _codec_summary(cfg: CodecConfig) -> tuple[CodecConfig, str]:
    d, e = cfg.decoder, cfg.encoder
    return cfg, (f"decoder {d.num_hidden_layers} layers, hidden {d.hidden_size}, {d.num_quantizers} codebooks; "
                 f"encoder {e.num_hidden_layers} layers, hidden {e.hidden_size}")


def _json_object(p: Path) -> tuple[dict, str]:
    d = read_json(p)
    return d, f"{len(d)} keys"


def _vocab(p: Path) -> tuple[dict, str]:
    d = read_json(p)
    if not all(isinstance(v, int) for v in d.values()):
        raise ModelError(f"{p}: expected a JSON object of token -> id")
    return d, f"{len(d)} tokens"


def _merges(p: Path) -> tuple[int, str]:
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"{p}: cannot read ({e})") from None
    merges = [ln for ln in lines if ln and not ln.startswith("#version")]
    bad = next((i for i, ln in enumerate(lines, 1) if ln and not ln.startswith("#version")
                and len(ln.split(" ")) != 2), None)
    if bad is not None:
        raise ModelError(f"{p}: line {bad} is not a merge (two tokens separated by a space)")
    if not merges:
        raise ModelError(f"{p}: no merges")
    return len(merges), f"{len(merges)} merges"


def _tokenizer_config(p: Path) -> tuple[dict, str]:
    d = read_json(p)
    added = d.get("added_tokens_decoder")
    if not isinstance(added, dict) or not added:
        raise ModelError(f"{p}: no added_tokens_decoder")
    return d, f"{len(added)} added tokens"


def _check_weights(report: VerifyReport, root: Path, kind: str, model_cfg: ModelConfig | None,
                   codec_cfg: CodecConfig | None, official: set[str]) -> None:
    if kind == "model":
        _check_one_weights(report, root, "", "config.json", model_cfg,
                           lambda: expected_model_tensors(model_cfg), official)
        _check_one_weights(report, root, "speech_tokenizer", "speech_tokenizer/config.json", codec_cfg,
                           lambda: expected_codec_tensors(codec_cfg), official)
    else:
        _check_one_weights(report, root, "", "config.json", codec_cfg,
                           lambda: expected_codec_tensors(codec_cfg), official)


def _check_one_weights(report: VerifyReport, root: Path, sub: str, cfg_name: str, cfg,
                       expected: Callable[[], dict[str, TensorSpec]], official: set[str]) -> None:
    folder = root / sub if sub else root
    label = (f"{sub}/" if sub else "") + "model.safetensors"
    header_item = f"{label} header"
    tensors_item = f"{label} tensors"
    try:
        files = _weight_files(folder)
        headers = read_headers(files)
    except ModelError as e:
        report.add(header_item, FAIL, _strip_root(str(e), root))
        report.add(tensors_item, SKIP, "header did not parse")
        return
    size = sum(file_size(f) for f in files)
    shards = f" in {len(files)} shards" if len(files) > 1 else ""
    report.add(header_item, OK, f"{len(headers)} tensors{shards}, {size:,} bytes")
    if cfg is None:
        report.add(tensors_item, SKIP, f"{cfg_name} did not parse")
        return
    found = {n: (e.shape, e.dtype) for n, (h, e) in headers.items()}
    spec = expected()
    # Other float dtypes load (cast to the run dtype); only a claimed official file must be exact.
    problems = check_tensor_set(found, spec, label, any_float=label not in official)
    if problems:
        report.add(tensors_item, FAIL, _summarize_tensor_problems(problems, label))
        return
    other = stored_dtypes(found, spec)
    if other is None:
        dtypes = ", ".join(sorted({s.dtype for s in spec.values()}))
        report.add(tensors_item, OK, f"all {len(spec)} tensors match {cfg_name} (names, shapes, {dtypes})")
    else:
        report.add(tensors_item, OK, f"all {len(spec)} tensors match {cfg_name} (names, shapes); stored in {other}: "
                   "loads, cast to the run dtype")


def _summarize_tensor_problems(problems: list[str], label: str, show: int = 5) -> str:
    """Missing/unexpected lines as they are; per-tensor mismatches counted, the first few shown.

    A config that disagrees with its weights (say a changed hidden_size) mismatches hundreds of
    tensors; the first few say enough.
    """
    lines = [p[len(label) + 2:] if p.startswith(label + ": ") else p for p in problems]
    sets = [ln for ln in lines if not ln.startswith("'")]
    mism = [ln for ln in lines if ln.startswith("'")]
    if mism:
        head = f"{len(mism)} tensor(s) with a wrong shape or dtype: " + "; ".join(mism[:show])
        sets.append(head + (f"; … (+{len(mism) - show} more)" if len(mism) > show else ""))
    return "; ".join(sets)


def _weight_files(folder: Path) -> list[Path]:
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file() or not index.is_file():
        return [single]
    shards = _index_shards(index)
    if shards is None:
        raise ModelError(f"{index}: malformed (no weight_map)")
    return [folder / s for s in shards]
