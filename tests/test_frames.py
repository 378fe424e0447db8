"""The frame loop (model/frames.py) through TTS.generate_codes: exact frame caps, end tokens, seeds,
the text layouts, and every model variant."""

import pytest
import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.errors import InputError, ModelError

EOS = 2150
MODELS = ["0.6B-Base", "0.6B-CustomVoice", "1.7B-Base", "1.7B-CustomVoice", "1.7B-VoiceDesign"]


@pytest.fixture(scope="module")
def cv(tiny_checkpoint):
    return load_tts(tiny_checkpoint("0.6B-CustomVoice"))


def _gen(tts, **kw):
    args = dict(speaker="ryan", language="english")
    args.update(kw)
    return tts.generate_codes("Hello there, world.", **args)


def test_max_frames_gives_exactly_n_frames(cv):
    for n in (1, 2, 7):
        r = _gen(cv, greedy=True, max_frames=n, return_logits=True)
        assert r.codes.shape == (n, 16) and r.codes.dtype == torch.long
        assert r.stop_reason == "max_frames"
        assert ((r.codes >= 0) & (r.codes < 2048)).all()
        # One talker logits row per first code used (step 0 = prefill), raw fp32.
        assert r.talker_logits.shape == (n, 3072) and r.talker_logits.dtype == torch.float32
        assert r.cp_logits.shape == (n, 15, 2048)
        # Greedy: the emitted first codes are the argmax of the processed logits (no -inf rows).
        assert r.codes[0, 0] == r.talker_logits[0, :2048].argmax()


def test_greedy_deterministic_and_prefix_stable(cv):
    a = _gen(cv, greedy=True, max_frames=6)
    b = _gen(cv, greedy=True, max_frames=6)
    c = _gen(cv, greedy=True, max_frames=3)
    assert torch.equal(a.codes, b.codes)
    assert torch.equal(a.codes[:3], c.codes)


def test_seeded_sampling_reproducible(cv):
    a = _gen(cv, seed=11, max_frames=5)
    b = _gen(cv, seed=11, max_frames=5)
    c = _gen(cv, seed=12, max_frames=5)
    assert torch.equal(a.codes, b.codes)
    assert not torch.equal(a.codes, c.codes)
    assert ((a.codes >= 0) & (a.codes < 2048)).all()


def test_eos_stops_and_is_not_emitted(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"))
    # Make EOS the clear favourite at every step: it is blocked for the first 2 codes only.
    raw_logits = tts.talker.logits
    tts.talker.logits = lambda h: raw_logits(h).index_fill(-1, torch.tensor([EOS]), 1e3)
    for greedy in (True, False):
        r = _gen(tts, greedy=greedy, seed=0, max_frames=50, return_logits=True)
        assert r.stop_reason == "eos"
        assert r.codes.shape == (2, 16)
        assert (r.codes[:, 0] != EOS).all()
        # Logits rows: the 2 emitted frames plus the step that produced EOS.
        assert r.talker_logits.shape[0] == 3
        assert r.talker_logits[2].argmax() == EOS
    # A cap below the EOS point wins.
    assert _gen(tts, greedy=True, max_frames=1).stop_reason == "max_frames"


def test_text_rows_follow_streaming_mode(cv):
    a = _gen(cv, greedy=True, max_frames=4, non_streaming_mode=True)
    b = _gen(cv, greedy=True, max_frames=4, non_streaming_mode=False)
    assert not torch.equal(a.codes, b.codes)


@pytest.mark.parametrize("model", MODELS)
def test_engine_loads_every_variant(tiny_checkpoint, model):
    tts = load_tts(tiny_checkpoint(model))
    kind = {"Base": "base", "CustomVoice": "custom_voice", "VoiceDesign": "voice_design"}[model.split("-")[1]]
    assert tts.model_type == kind
    assert tts.languages[0] == "auto" and "english" in tts.languages
    assert (len(tts.speakers) == 9) == (kind == "custom_voice")
    has_proj = model.startswith("1.7B")
    assert isinstance(tts.predictor.small_to_mtp_projection, torch.nn.Linear) == has_proj
    assert tts.talker.codec_head.weight.dtype == torch.float32
    if kind == "voice_design":
        r = tts.generate_codes("Hi there.", instruct="A warm voice.", greedy=True, max_frames=2)
        assert r.codes.shape == (2, 16)
    elif kind == "base":
        with pytest.raises(InputError):  # voice cloning needs a reference voice (issue #5)
            tts.generate_codes("Hi there.", greedy=True, max_frames=2)


def test_bf16_load_and_generate(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"), dtype="bfloat16")
    assert tts.talker.codec_head.weight.dtype == torch.bfloat16
    r = _gen(tts, greedy=True, max_frames=3, return_logits=True)
    assert r.codes.shape == (3, 16) and r.talker_logits.dtype == torch.float32


def test_validation_errors(cv, tiny_checkpoint):
    with pytest.raises(InputError, match="ryan"):
        _gen(cv, speaker="nobody")
    with pytest.raises(InputError, match="english"):
        _gen(cv, language="klingon")
    r = _gen(cv, speaker="RYAN", language="English", greedy=True, max_frames=1)  # case-insensitive
    assert r.codes.shape == (1, 16)
    # 0.6B CustomVoice ignores instructions, with a warning, like the reference.
    w = _gen(cv, instruct="Whisper.", greedy=True, max_frames=2)
    assert w.warnings and "instruct" in w.warnings[0]
    assert torch.equal(w.codes, _gen(cv, greedy=True, max_frames=2).codes)
    with pytest.raises(InputError, match="max_frames"):
        _gen(cv, max_frames=0)
    with pytest.raises(InputError, match="temperature"):
        _gen(cv, temperature=-1)
    vd = load_tts(tiny_checkpoint("1.7B-VoiceDesign"))
    with pytest.raises(InputError, match="instruction"):
        vd.generate_codes("Hi.")
    with pytest.raises(InputError, match="speaker"):
        vd.generate_codes("Hi.", speaker="ryan", instruct="x")


def test_load_errors(tmp_path, tiny_checkpoint):
    with pytest.raises(ModelError, match="not found"):
        load_tts(tmp_path / "nope")
    with pytest.raises(InputError, match="dtype"):
        load_tts(tiny_checkpoint("0.6B-CustomVoice"), dtype="int3")
