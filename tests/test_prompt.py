import json
from pathlib import Path

import numpy as np
import pytest
import torch

from qwen3tts_cli.engine.prompt import XVECTOR, build_prompt, instruct_text
from qwen3tts_cli.engine.request import SpeechRequest
from qwen3tts_cli.errors import InputError
from qwen3tts_cli.io.config import ModelConfig
from qwen3tts_cli.io.repos import metadata_dir
from qwen3tts_cli.text.tokenizer import TextTokenizer
from qwen3tts_cli.voice.clone import VoicePrompt

META = metadata_dir()
GOLDENS = Path(__file__).parent / "fixtures" / "goldens" / "generator"
TOK = TextTokenizer.from_folder(META / "common" / "text_tokenizer")
LOCAL_TOK = TextTokenizer.from_folder(META / "common" / "text_tokenizer", regex="local-path")

P, B, EO = 151671, 151672, 151673
CPAD, CBOS, THINK, NOTHINK, TBOS, TEOS = 2148, 2149, 2154, 2155, 2156, 2157
ROLE = [151644, 77091, 198]


def cfg_of(name: str) -> ModelConfig:
    return ModelConfig.from_file(META / f"Qwen3-TTS-12Hz-{name}" / "config.json")


class FakeModel:
    """Distinct, reproducible rows per id so a row's sum reveals exactly what it is made of."""

    def __init__(self, hidden: int = 8, dtype=torch.float32):
        g = torch.Generator().manual_seed(0)
        self.f_text = torch.rand(hidden, generator=g, dtype=torch.float64) + 0.1
        self.f_codec = torch.rand(hidden, generator=g, dtype=torch.float64) + 0.1
        self.f_group = torch.rand(16, hidden, generator=g, dtype=torch.float64) + 0.1
        self.dtype = dtype

    def embed_text(self, ids):
        return torch.sin(ids.double()[..., None] * self.f_text * 1e-3).to(self.dtype)

    def embed_codec(self, ids):
        return (torch.cos(ids.double()[..., None] * self.f_codec * 1e-2) + 2).to(self.dtype)

    def embed_frame(self, codes):
        parts = [self.embed_codec(codes[:, 0])]
        parts += [torch.cos(codes[:, g, None].double() * self.f_group[g] * 1e-2).to(self.dtype) for g in range(1, 16)]
        return torch.stack(parts, 1).sum(1)


FAKE = FakeModel()


class FakeVoice(VoicePrompt):
    """A voice for the fake model's 8-wide rows: fits any config (the real check is tested in test_voice)."""

    def check_model(self, cfg) -> None:
        pass


def request(text, xvector=None, ref_codes=None, ref_text=None, **kw) -> SpeechRequest:
    """A request spoken as given; x-vector (and ICL) pieces become its voice."""
    voice = None
    if xvector is not None:
        voice = FakeVoice(mode="icl" if ref_codes is not None else "xvector", xvector=xvector,
                          ref_codes=ref_codes, ref_text=ref_text)
    return SpeechRequest(text, voice=voice, split=False, **kw)


def prompt_of(model, cfg, tokenizer, req: SpeechRequest):
    return build_prompt(model, cfg, tokenizer, req.resolve(cfg), req.text)


def T(i):
    return FAKE.embed_text(torch.tensor([i]))[0]


def C(i):
    return FAKE.embed_codec(torch.tensor([i]))[0]


def expected_row(text_id, codec, xvector=None, frames=None):
    row = torch.zeros(8) if text_id is None else T(text_id)
    if codec == XVECTOR:
        row = row + xvector
    elif isinstance(codec, tuple):
        row = row + frames[codec[1]]
    elif codec is not None:
        row = row + C(codec)
    return row


def check_embeds(prompt, xvector=None, frames=None):
    want = torch.stack([expected_row(t, c, xvector, frames) for t, c in prompt.rows])
    torch.testing.assert_close(prompt.embeds, want, rtol=0, atol=1e-6)
    assert prompt.trailing.shape[0] == len(prompt.trailing_ids)
    torch.testing.assert_close(prompt.trailing, torch.stack([T(i) for i in prompt.trailing_ids]), rtol=0, atol=1e-6)
    torch.testing.assert_close(prompt.pad, T(P), rtol=0, atol=0)


def text_ids(text):
    return TOK.encode(text)


def build(model_name, **kw):
    return prompt_of(FAKE, cfg_of(model_name), TOK, request(**kw))


def test_custom_voice_non_streaming_layout():
    text = "Hello world."
    t = text_ids(text)
    p = build("1.7B-CustomVoice", text=text, speaker="Ryan", language="English")
    assert p.non_streaming_mode and p.mode == "custom_voice" and p.language_id == 2050
    expect = [(i, None) for i in ROLE]
    expect += [(P, THINK), (P, TBOS), (P, 2050), (P, TEOS), (P, 3061), (B, CPAD)]
    expect += [(i, CPAD) for i in t] + [(EO, CPAD), (P, CBOS)]
    assert p.rows == expect
    assert p.embeds.shape == (11 + len(t), 8)
    assert p.trailing_ids == [P]
    assert p.token_ids["target"] == ROLE + t + [151645, 198] + ROLE
    assert p.token_ids["text"] == t
    check_embeds(p)


def test_custom_voice_streaming_layout():
    text = "Hello world, again."
    t = text_ids(text)
    p = build("0.6B-CustomVoice", text=text, speaker="vivian", language="auto", non_streaming_mode=False)
    assert not p.non_streaming_mode and p.language_id is None
    expect = [(i, None) for i in ROLE]
    expect += [(P, NOTHINK), (P, TBOS), (P, TEOS), (P, 3065), (B, CPAD), (t[0], CBOS)]
    assert p.rows == expect
    assert p.trailing_ids == t[1:] + [EO]
    check_embeds(p)


def test_single_token_text_streaming():
    p = build("0.6B-CustomVoice", text="Hi", speaker="ryan", non_streaming_mode=False)
    assert p.rows[-1] == (text_ids("Hi")[0], CBOS) and len(text_ids("Hi")) == 1
    assert p.trailing_ids == [EO]
    check_embeds(p)


@pytest.mark.parametrize("speaker,language,lang_id", [
    ("dylan", "auto", 2074), ("Dylan", "Chinese", 2074), ("dylan", "english", 2050),
    ("eric", "auto", 2062), ("eric", "chinese", 2062), ("eric", "japanese", 2058),
    ("serena", "chinese", 2055), ("serena", "auto", None),
])
def test_language_tags_and_dialect_override(speaker, language, lang_id):
    p = build("0.6B-CustomVoice", text="你好。", speaker=speaker, language=language)
    spk = cfg_of("0.6B-CustomVoice").talker.spk_id[speaker.lower()]
    n = 5 if lang_id is None else 6
    control = [c for t, c in p.rows[3:3 + n]]
    assert [t for t, c in p.rows[3:3 + n]] == [P] * (n - 1) + [B]
    if lang_id is None:
        assert control == [NOTHINK, TBOS, TEOS, spk, CPAD]
    else:
        assert control == [THINK, TBOS, lang_id, TEOS, spk, CPAD]
    assert p.language_id == lang_id


def test_instruct_segment_first_on_1_7b():
    instruct = "Speak in a cheerful tone."
    p = build("1.7B-CustomVoice", text="Good news!", speaker="aiden", instruct=instruct)
    ins = TOK.encode(instruct_text(instruct))
    assert ins[:3] == [151644, 872, 198] and ins[-2:] == [151645, 198]
    assert p.token_ids["instruct"] == ins
    assert p.rows[:len(ins)] == [(i, None) for i in ins]
    assert p.rows[len(ins):len(ins) + 3] == [(i, None) for i in ROLE]
    assert not p.instruct_dropped and p.warnings == []
    check_embeds(p)


def test_instruct_dropped_on_0_6b():
    p = build("0.6B-CustomVoice", text="Good news!", speaker="aiden", instruct="Whisper.")
    q = build("0.6B-CustomVoice", text="Good news!", speaker="aiden")
    assert p.instruct_dropped and p.warnings and "instruct" not in p.token_ids
    assert p.rows == q.rows
    torch.testing.assert_close(p.embeds, q.embeds, rtol=0, atol=0)


def test_voice_design_has_no_speaker_slot():
    instruct = "A deep calm voice."
    p = build("1.7B-VoiceDesign", text="Welcome.", instruct=instruct, language="english")
    n_ins = len(TOK.encode(instruct_text(instruct)))
    assert p.non_streaming_mode
    assert [c for _, c in p.rows[n_ins + 3:n_ins + 8]] == [THINK, TBOS, 2050, TEOS, CPAD]
    assert p.rows[n_ins + 7][0] == B
    check_embeds(p)


def test_xvector_clone_defaults_to_streaming():
    xv = torch.linspace(-1, 1, 8, dtype=torch.float64)
    p = build("0.6B-Base", text="Clone me.", language="english", xvector=xv)
    assert p.mode == "xvector" and not p.non_streaming_mode
    assert [c for _, c in p.rows[3:9]] == [THINK, TBOS, 2050, TEOS, XVECTOR, CPAD]
    check_embeds(p, xvector=xv.float())


@pytest.mark.parametrize("non_streaming", [True, False])
@pytest.mark.parametrize("frames", [2, 40])
def test_icl_layouts(non_streaming, frames):
    xv = torch.linspace(-1, 1, 8)
    codes = (torch.arange(frames * 16).reshape(frames, 16) * 37) % 2048
    ref_text = "This is the reference."
    text = "And this is new."
    p = build("1.7B-Base", text=text, xvector=xv, ref_codes=codes, ref_text=ref_text,
              non_streaming_mode=non_streaming)
    assert p.mode == "icl"
    r = TOK.encode(f"<|im_start|>assistant\n{ref_text}<|im_end|>\n")[3:-2]
    x = r + text_ids(text) + [EO]
    y = [CBOS] + [("frame", k) for k in range(frames)]
    head = [(i, None) for i in ROLE] + [(P, NOTHINK), (P, TBOS), (P, TEOS), (P, XVECTOR), (B, CPAD)]
    if non_streaming:
        body = [(i, CPAD) for i in x] + [(P, c) for c in y]
        trailing = [P]
    elif len(x) > len(y):
        body = list(zip(x[:len(y)], y))
        trailing = x[len(y):]
    else:
        body = list(zip(x + [P] * (len(y) - len(x)), y))
        trailing = [P]
    assert p.rows == head + body
    assert p.trailing_ids == trailing
    check_embeds(p, xvector=xv, frames=FAKE.embed_frame(codes))


def test_leading_whitespace_merges_with_template():
    p = build("0.6B-CustomVoice", text="\n\nHello", speaker="ryan")
    whole = TOK.encode("<|im_start|>assistant\n\n\nHello<|im_end|>\n<|im_start|>assistant\n")
    assert p.token_ids["target"] == whole
    assert p.rows[2][0] == whole[2] != 198  # the role's newline token absorbed the user's newlines
    assert p.token_ids["text"] == whole[3:-5]


def test_custom_voice_speaks_as_the_default_speaker_unless_told():
    p = build("0.6B-CustomVoice", text="Hi.")
    q = build("0.6B-CustomVoice", text="Hi.", speaker="ryan")
    assert p.rows == q.rows and request("Hi.").resolve(cfg_of("0.6B-CustomVoice")).speaker_defaulted


def test_model_dtype_is_kept():
    model = FakeModel(dtype=torch.bfloat16)
    p = prompt_of(model, cfg_of("0.6B-CustomVoice"), TOK, request("Hi there.", speaker="ryan"))
    assert p.embeds.dtype == p.trailing.dtype == p.pad.dtype == torch.bfloat16
    want = (model.embed_text(torch.tensor([P])) + model.embed_codec(torch.tensor([NOTHINK])))[0]
    assert torch.equal(p.embeds[3], want)


@pytest.mark.parametrize("model,kw,match", [
    ("0.6B-CustomVoice", dict(text="", speaker="ryan"), "empty"),
    ("0.6B-CustomVoice", dict(text=" \n\t ", speaker="ryan"), "empty"),
    ("0.6B-CustomVoice", dict(text="Hi.", speaker="bob"), "unknown speaker 'bob'.*aiden.*vivian"),
    ("0.6B-CustomVoice", dict(text="Hi.", speaker="ryan", language="klingon"),
     "unknown language 'klingon'.*auto.*english"),
    ("0.6B-CustomVoice", dict(text="Hi.", speaker="ryan", language="beijing_dialect"), "unknown language"),
    ("1.7B-VoiceDesign", dict(text="Hi.", speaker="ryan", instruct="x"), "only CustomVoice"),
    ("1.7B-VoiceDesign", dict(text="Hi."), "needs an instruction"),
    ("1.7B-VoiceDesign", dict(text="Hi.", instruct="  "), "needs an instruction"),
    ("0.6B-Base", dict(text="Hi."), "reference voice"),
    ("0.6B-Base", dict(text="Hi.", xvector=torch.zeros(8), instruct="x"), "no instruction"),
    ("0.6B-Base", dict(text="Hi.", xvector=torch.zeros(8), ref_codes=torch.zeros(3, 16, dtype=torch.long)),
     "transcript"),
    ("0.6B-Base", dict(text="Hi.", xvector=torch.zeros(7)), "speaker embedding has 7"),
    ("0.6B-Base", dict(text="Hi.", xvector=torch.zeros(8), ref_text="r",
                       ref_codes=torch.zeros(3, 15, dtype=torch.long)), "shape"),
    ("1.7B-CustomVoice", dict(text="Hi.", xvector=torch.zeros(8)), "only Base"),
    ("1.7B-CustomVoice", dict(text="Hi.", speaker="ryan", xvector=torch.zeros(8)), "one or the other"),
])
def test_invalid_requests(model, kw, match):
    with pytest.raises(InputError, match=match):
        build(model, **kw)


# -- against the official reference's goldens ------------------------------------------------------

def golden_cases(size=None):
    return sorted(p.stem for p in GOLDENS.glob("*.json")
                  if size is None or json.loads(p.read_text(encoding="utf-8"))["size"] == size)


def load_golden(name):
    g = json.loads((GOLDENS / f"{name}.json").read_text(encoding="utf-8"))
    return g, np.load(GOLDENS / f"{name}.npz")


def request_of(g):
    r = g["request"]
    return request(r["text"], speaker=r["speaker"], language=r["language"], instruct=r["instruct"],
                   non_streaming_mode=r["non_streaming_mode"])


def test_goldens_present():
    assert len(golden_cases()) >= 10


@pytest.mark.parametrize("name", golden_cases())
def test_prompt_ids_and_row_counts_match_reference(name):
    g, arrays = load_golden(name)
    cfg = cfg_of(g["model"])
    p = prompt_of(FAKE, cfg, LOCAL_TOK, request_of(g))  # the reference's tokenizer: local-path regex
    assert p.token_ids["target"] == g["target_ids"]
    assert p.token_ids.get("instruct") == g["instruct_ids"]
    assert p.instruct_dropped == g["instruct_dropped"]
    assert p.embeds.shape[0] == arrays["prefill_embeds"].shape[0]
    assert p.trailing.shape[0] == arrays["trailing"].shape[0]
    # every text id the reference embedded (in any group) appears in our rows, and vice versa
    # (the reference also embeds t_0 alone in non-streaming mode, then discards that row)
    ours = {t for t, _ in p.rows if t is not None} | set(p.trailing_ids)
    theirs = {i for call in g["text_lookups"] for i in call}
    assert ours == theirs


@pytest.mark.parametrize("name", golden_cases("tiny"))
def test_prompt_embeds_match_reference(name, tiny_tts):
    """Rows built with the engine's talker equal the reference's prefill inputs (fp32)."""
    g, arrays = load_golden(name)
    assert g["size"] == "tiny" and g["seed"] == 0
    tts = tiny_tts(g["model"])
    p = prompt_of(tts.embeddings, tts.cfg, TextTokenizer.from_folder(tts.folder, regex=g["regex"]), request_of(g))
    assert p.embeds.dtype == torch.float32
    np.testing.assert_allclose(p.embeds.numpy(), arrays["prefill_embeds"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(p.trailing.numpy(), arrays["trailing"], rtol=0, atol=1e-5)
    np.testing.assert_allclose(p.pad.numpy(), arrays["pad"], rtol=0, atol=1e-5)
