import json
import shutil
import time
import unicodedata
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3tts_cli.errors import InputError, ModelError
from qwen3tts_cli.io.repos import metadata_dir
from qwen3tts_cli.text.tokenizer import SPLIT_REGEXES, TextTokenizer, build_tokenizer

FOLDER = metadata_dir() / "common" / "text_tokenizer"
GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "generator"


@pytest.fixture(scope="module")
def qwen2():
    return TextTokenizer.from_folder(FOLDER)


@pytest.fixture(scope="module")
def local():
    return TextTokenizer.from_folder(FOLDER, regex="local-path")


def test_template_ids(qwen2, local):
    for tok in (qwen2, local):
        assert tok.encode("<|im_start|>assistant\n") == [151644, 77091, 198]
        assert tok.encode("<|im_start|>user\n") == [151644, 872, 198]


def test_regex_variants_differ_on_camel_case(qwen2, local):
    text = "HelloWorld iPhone McDonald's"
    assert qwen2.regex == "qwen2"
    assert qwen2.encode(text) == [9707, 10134, 12167, 30914, 594]
    assert local.encode(text) == [9707, 10134, 600, 6939, 4483, 18234, 594]


@pytest.mark.parametrize("text", ["Hello world, this is a simple test.", "今天天气很好，我们去公园散步吧。",
                                  "NASA and the FBI", "I can't believe it!", "안녕하세요"])
def test_regex_variants_agree_on_plain_text(qwen2, local, text):
    assert qwen2.encode(text) == local.encode(text)


def test_local_path_regex_splits_slash_after_punctuation(qwen2, local):
    # "[\r\n/]*": after punctuation and a newline, a slash stays in the same piece
    assert qwen2.encode("a.\n/b") == [64, 624, 3470]
    assert local.encode("a.\n/b") == [64, 624, 14, 65]


def test_added_tokens_are_matched_before_bpe(qwen2):
    cfg = json.loads((FOLDER / "tokenizer_config.json").read_text())
    added = {int(k): v["content"] for k, v in cfg["added_tokens_decoder"].items()}
    assert len(added) == 33 and min(added) == 151643 and max(added) == 151675
    for token_id, content in added.items():
        assert qwen2.encode(content) == [token_id]
        assert qwen2.token_to_id(content) == token_id
    assert qwen2.encode("a<tts_pad><think>b") == [64, 151671, 151667, 65]
    assert qwen2.decode(torch.tensor([64, 151671, 65])) == "a<tts_pad>b"
    assert qwen2.decode([64, 151671, 65], skip_special_tokens=True) == "ab"
    assert qwen2.vocab_size == 151676


def test_no_bos_eos_added(qwen2):
    ids = qwen2.encode("x")
    assert len(ids) == 1 and ids[0] < 151643


def test_nfc_normalization(qwen2):
    composed = "caf\u00e9 \u00c5ngstr\u00f6m"
    decomposed = unicodedata.normalize("NFD", composed)
    assert decomposed != composed
    assert qwen2.encode(decomposed) == qwen2.encode(composed)
    assert qwen2.decode(qwen2.encode(decomposed)) == composed


def test_leading_newline_merges_with_template(qwen2):
    # Why prompts tokenize the whole templated string: "\n" + "\n\n" is one token.
    whole = qwen2.encode("<|im_start|>assistant\n\n\nHi")
    assert whole[:2] == [151644, 77091] and len(whole) == 4
    assert whole[2] != 198


@settings(max_examples=150, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=60))
def test_decode_round_trip(qwen2, local, text):
    nfc = unicodedata.normalize("NFC", text)
    assert qwen2.decode(qwen2.encode(text)) == nfc
    assert local.decode(local.encode(text)) == nfc


def test_cached_per_folder_and_regex(qwen2, local):
    assert TextTokenizer.from_folder(FOLDER) is qwen2
    assert TextTokenizer.from_folder(str(FOLDER) + "/") is qwen2
    assert TextTokenizer.from_folder(FOLDER, regex="local-path") is local
    t0 = time.perf_counter()
    TextTokenizer.from_folder(FOLDER)
    assert time.perf_counter() - t0 < 0.01
    assert 0 < qwen2.build_seconds < 10


def test_unknown_regex_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="unknown tokenizer regex 'mistral'; valid: local-path, qwen2"):
        TextTokenizer.from_folder(FOLDER, regex="mistral")
    assert sorted(SPLIT_REGEXES) == ["local-path", "qwen2"]
    shutil.copy(FOLDER / "vocab.json", tmp_path / "vocab.json")
    with pytest.raises(ModelError, match="merges.txt"):
        TextTokenizer.from_folder(tmp_path)


def test_bad_added_token_id(tmp_path):
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(FOLDER / name, tmp_path / name)
    cfg = json.loads((FOLDER / "tokenizer_config.json").read_text())
    entry = cfg["added_tokens_decoder"].pop("151671")
    cfg["added_tokens_decoder"]["151999"] = entry
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelError, match="id"):
        build_tokenizer(tmp_path)


def test_goldens_prompt_ids_match_reference_tokenizer(qwen2, local):
    """The reference (local folder) tokenized with the local-path regex; see the goldens' JSON."""
    from qwen3tts_cli.engine.prompt import assistant_text, instruct_text

    files = sorted(GOLDENS.glob("*.json"))
    assert files, "generator goldens are missing"
    for f in files:
        g = json.loads(f.read_text(encoding="utf-8"))
        assert g["regex"] == "local-path"
        ids = local.encode(assistant_text(g["request"]["text"]))
        assert ids == g["target_ids"], g["case"]
        assert (qwen2.encode(assistant_text(g["request"]["text"])) == ids) == g["regexes_agree"], g["case"]
        if g["instruct_ids"]:
            assert local.encode(instruct_text(g["request"]["instruct"])) == g["instruct_ids"]
