"""SpeechRequest: checked on its own, then against a model's configuration alone (no weights)."""

import dataclasses

import pytest

from qwen3tts_cli.engine.load import model_files
from qwen3tts_cli.engine.request import (DEFAULT_PAUSE, DEFAULT_SPEAKER, DEFAULT_STREAM_SCHEDULE, SpeechRequest,
                                         default_speaker, stream_schedule)
from qwen3tts_cli.errors import RequestError
from qwen3tts_cli.voice.reference import CloneReference


def configs(model: str):
    """config.json and generation_config.json of an official model, from the package's metadata."""
    files = model_files(model)
    return files.model_config(), files.generation()


CV06, CV17, VD17, BASE06 = (configs(m) for m in ("0.6B-CustomVoice", "1.7B-CustomVoice", "1.7B-VoiceDesign",
                                                  "0.6B-Base"))


def refused(field: str, code: str, make):
    with pytest.raises(RequestError) as e:
        make()
    assert (e.value.field, e.value.code) == (field, code), str(e.value)
    return str(e.value)


# -- on its own ------------------------------------------------------------------------------------

def test_defaults_are_the_documented_ones():
    r = SpeechRequest("Hello there.")
    assert r.language == "auto" and r.pause == DEFAULT_PAUSE == 0.25 and r.schedule == DEFAULT_STREAM_SCHEDULE
    assert r.split and r.guard is True and r.seed is None and dict(r.sampling) == {}
    assert DEFAULT_SPEAKER == "ryan" and DEFAULT_STREAM_SCHEDULE == (1, 2, 4, 8)


def test_frozen_and_normalized():
    r = SpeechRequest("Hi.", schedule=[2, 4], sampling={"temperature": 0.7})
    assert r.schedule == (2, 4) and r.sampling["temperature"] == 0.7
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.seed = 3
    with pytest.raises(TypeError):
        r.sampling["top_k"] = 3  # a read-only mapping
    assert stream_schedule(3) == (3,) and stream_schedule(None) == DEFAULT_STREAM_SCHEDULE


@pytest.mark.parametrize("kw, field, code", [
    (dict(text=""), "text", "text_empty"),
    (dict(text=" \n "), "text", "text_empty"),
    (dict(text=" ", split=False), "text", "text_empty"),
    (dict(text=3), "text", "text_type"),
    (dict(text="Hi.", pause=-0.1), "pause", "pause_range"),
    (dict(text="Hi.", max_frames=0), "max_frames", "max_frames_range"),
    (dict(text="Hi.", max_chars=5), "max_chars", "max_chars_range"),
    (dict(text="Hi.", schedule=[2, 0]), "schedule", "schedule_range"),
    (dict(text="Hi.", sampling={"temperature": 0.0}), "sampling", "sampling_invalid"),
    (dict(text="Hi.", sampling={"top_p": 1.5}), "sampling", "sampling_invalid"),
    (dict(text="Hi.", sampling={"top_k": -1}), "sampling", "sampling_invalid"),
    (dict(text="Hi.", sampling={"warmth": 1}), "sampling", "sampling_invalid"),
    (dict(text="Hi.", voice="me.wav"), "voice", "voice_type"),
    (dict(text="Hi \udcff there."), "text", "not_unicode"),  # a byte Python kept from argv or a file
    (dict(text="Hi \ud83d there."), "text", "not_unicode"),  # half of a UTF-16 pair (from JSON)
    (dict(text="Hi.", instruct="Calm \udcc3("), "instruct", "not_unicode"),
    (dict(text="Hi.", speaker="ry\udcffan"), "speaker", "not_unicode"),
])
def test_refused_without_a_model(kw, field, code):
    refused(field, code, lambda: SpeechRequest(**kw))


def test_speaker_and_voice_exclude_each_other():
    ref = CloneReference("me.wav", xvector_only=True)
    msg = refused("speaker", "speaker_and_voice", lambda: SpeechRequest("Hi.", speaker="ryan", voice=ref))
    assert "--" not in msg  # the engine names fields, never a command-line flag


def test_clone_reference_rules():
    assert CloneReference("me.wav", ref_text="Words.").mode == "icl"
    assert CloneReference("me.wav", xvector_only=True).mode == "xvector"
    refused("ref_text", "ref_text_missing", lambda: CloneReference("me.wav"))
    refused("ref_text", "ref_text_missing", lambda: CloneReference("me.wav", ref_text="  "))
    refused("ref_text", "ref_text_missing", lambda: CloneReference("me.wav", ref_text="\x01\x02"))
    refused("ref_text", "ref_text_with_xvector_only", lambda: CloneReference("me.wav", "Words.", True))
    msg = refused("ref_text", "not_unicode", lambda: CloneReference("me.wav", ref_text="W\udcfeords."))
    assert msg == "ref_text holds an invalid character (byte 0xfe that is not UTF-8, at character 2)"


def test_from_options_sorts_fields_from_sampling():
    r = SpeechRequest.from_options("Hi.", speaker="Serena", temperature=0.5, top_k=None, seed=4, language=None)
    assert r.speaker == "Serena" and r.seed == 4 and dict(r.sampling) == {"temperature": 0.5}
    assert r.language == "auto"  # None: the default
    refused("sampling", "sampling_unknown", lambda: SpeechRequest.from_options("Hi.", warmth=2))


def test_chunks_split_long_text_unless_told():
    text = "First sentence here. " * 30
    r = SpeechRequest(text, max_chars=100)
    assert len(r.chunks()) > 3 and all(len(c) <= 100 for c in r.chunks())
    assert SpeechRequest(text, split=False).chunks() == [text]


# -- against a model's configuration ---------------------------------------------------------------

def test_custom_voice_defaults():
    plan = SpeechRequest("Hello there.").resolve(*CV06)
    assert plan.speaker == "ryan" and plan.speaker_defaulted and plan.mode == "custom_voice"
    assert plan.language == "auto" and plan.language_id is None and plan.non_streaming
    assert plan.max_frames == CV06[1].max_new_tokens and plan.sampling.temperature == CV06[1].temperature
    assert plan.chunks == ("Hello there.",) and plan.seed(0) is None and plan.guard is not None
    chosen = SpeechRequest("Hi.", speaker="Serena", language="English", seed=7, max_frames=9).resolve(*CV06)
    assert (chosen.speaker, chosen.language, chosen.seed(2), chosen.max_frames) == ("serena", "english", 9, 9)
    assert not chosen.speaker_defaulted and chosen.language_id == CV06[0].talker.codec_language_id["english"]


def test_default_speaker_rule():
    assert default_speaker(["anna", "ryan"]) == "ryan"
    assert default_speaker(["zed", "anna"]) == "anna" and default_speaker([]) is None


def test_dialect_speaker_takes_its_dialect_tag():
    tk = CV06[0].talker
    dialect = next(s for s, d in tk.spk_is_dialect.items() if d)
    plan = SpeechRequest("你好。", speaker=dialect).resolve(*CV06)
    assert plan.language_id == tk.codec_language_id[str(tk.spk_is_dialect[dialect]).lower()]
    assert SpeechRequest("Hi.", speaker=dialect, language="english").resolve(*CV06).language_id == \
        tk.codec_language_id["english"]


def test_instructions_by_model():
    dropped = SpeechRequest("Hi.", instruct="Whisper.").resolve(*CV06)
    assert dropped.instruct is None and dropped.instruct_dropped and "ignores instructions" in dropped.warnings[0]
    kept = SpeechRequest("Hi.", instruct="Whisper.").resolve(*CV17)
    assert kept.instruct == "Whisper." and not kept.instruct_dropped and kept.warnings == ()
    assert SpeechRequest("Hi.", instruct="A deep voice.").resolve(*VD17).mode == "voice_design"
    refused("instruct", "instruct_required", lambda: SpeechRequest("Hi.").resolve(*VD17))
    refused("instruct", "instruct_unsupported",
            lambda: SpeechRequest("Hi.", instruct="x", voice=CloneReference("a.wav", xvector_only=True)).resolve(*BASE06))


def test_voices_fit_only_base_models():
    ref = CloneReference("me.wav", ref_text="What I say.")
    plan = SpeechRequest("Hi.", voice=ref).resolve(*BASE06)
    assert plan.mode == "icl" and not plan.non_streaming and plan.speaker is None  # the official clone layout
    xv = SpeechRequest("Hi.", voice=CloneReference("me.wav", xvector_only=True)).resolve(*BASE06)
    assert xv.mode == "xvector"
    err = refused("voice", "voice_unsupported", lambda: SpeechRequest("Hi.", voice=ref).resolve(*CV06))
    assert "custom_voice" in err
    refused("voice", "voice_required", lambda: SpeechRequest("Hi.").resolve(*BASE06))
    refused("speaker", "speaker_unsupported", lambda: SpeechRequest("Hi.", speaker="ryan").resolve(*BASE06))
    refused("speaker", "speaker_unsupported", lambda: SpeechRequest("Hi.", speaker="ryan", instruct="x").resolve(*VD17))


def test_unknown_names_list_the_valid_ones():
    msg = refused("speaker", "speaker_unknown", lambda: SpeechRequest("Hi.", speaker="bob").resolve(*CV06))
    assert "aiden" in msg and "vivian" in msg
    msg = refused("language", "language_unknown", lambda: SpeechRequest("Hi.", language="klingon").resolve(*CV06))
    assert "english" in msg


def test_text_layout_and_caps():
    streaming = SpeechRequest("Hi.", non_streaming_mode=False).resolve(*CV06)
    assert not streaming.non_streaming
    guarded = SpeechRequest("Hi.", max_frames=5000).resolve(*CV06)
    assert guarded.row_cap(0) < 5000  # one past the runaway guard's budget for "Hi."
    assert SpeechRequest("Hi.", max_frames=5000, guard=False).resolve(*CV06).row_cap(0) == 5000


def test_truncation_notes():
    plan = SpeechRequest("First one here. Second one here.", max_chars=20).resolve(*CV06)
    assert len(plan.chunks) == 2 and plan.truncation("eos", None) is None
    assert f"limit of {CV06[1].max_new_tokens} frames" in plan.truncation("max_frames", None)
    assert plan.chunk_label(1, "cut") == "chunk 2 of 2: cut"
    own_cap = SpeechRequest("One.", max_frames=3).resolve(*CV06)
    assert own_cap.truncation("max_frames", None) is None and own_cap.chunk_label(0, "cut") == "cut"


def test_seed_range():
    assert SpeechRequest("Hi.", seed=2**64 - 1).seed == 2**64 - 1
    for bad in (-1, 2**64, 1.5, True):
        refused("seed", "seed_range", lambda: SpeechRequest("Hi.", seed=bad))
    plan = SpeechRequest("One sentence here. Two sentences here.", max_chars=20, seed=2**64 - 1).resolve(*CV06)
    assert plan.seed(0) == 2**64 - 1 and plan.seed(1) == 0  # chunk seeds wrap around
