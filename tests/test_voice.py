"""Voice prompts: files (round trip, metadata, rejection of foreign files), reference-audio checks,
making a voice (TTS.create_voice / VoiceMaker) and its errors, the ICL cut."""

import json
import math
import struct

import numpy as np
import pytest
import soundfile as sf
import torch
from clone_goldens import golden_checkpoint, load_goldens

from qwen3tts_cli.io.config import ModelConfig
from qwen3tts_cli.errors import InputError
from qwen3tts_cli.voice.clone import FORMAT, VoiceMaker, VoicePrompt, cut_reference, load_voice, save_voice
from qwen3tts_cli.voice.reference import MIN_REF_SECONDS, SILENCE_DBFS, reference_waveform
from qwen3tts_cli.io.weights import TensorSpec, read_header, write_safetensors


def make_voice(mode="icl", hidden=64, size="0b6", frames=7, seed=0) -> VoicePrompt:
    g = torch.Generator().manual_seed(seed)
    codes = torch.randint(0, 2048, (frames, 16), generator=g) if mode == "icl" else None
    return VoicePrompt(mode=mode, xvector=torch.randn(hidden, generator=g), ref_codes=codes,
                       ref_text="Bonjour, ça va? 你好" if mode == "icl" else None, model_size=size,
                       hidden_size=hidden, speaker_encoder_dim=hidden, ref_seconds=3.25)


@pytest.fixture(scope="module")
def base06(tiny_checkpoint):
    return golden_checkpoint(tiny_checkpoint, "0.6B-Base", "model.safetensors")


@pytest.fixture(scope="module")
def maker06(base06):
    return VoiceMaker(base06)


# -- files ------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["icl", "xvector"])
def test_save_load_round_trip(tmp_path, mode):
    v = make_voice(mode)
    path = save_voice(tmp_path / "v.safetensors", v)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v.safetensors"]  # no temp file left
    w = load_voice(path)
    assert w.mode == mode and torch.equal(w.xvector, v.xvector) and w.xvector.dtype == torch.float32
    if mode == "icl":
        assert torch.equal(w.ref_codes, v.ref_codes) and w.ref_codes.dtype == torch.int64
        assert w.ref_text == v.ref_text and w.frames == 7
    else:
        assert w.ref_codes is None and w.ref_text is None and w.frames == 0
    for f in ("model_size", "hidden_size", "speaker_encoder_dim", "num_code_groups", "codebook_size",
              "ref_seconds", "tool_version", "model_type"):
        assert getattr(w, f) == getattr(v, f), f


def test_file_is_plain_safetensors_with_string_metadata(tmp_path):
    from safetensors.torch import load_file

    v = make_voice("icl")
    path = save_voice(tmp_path / "v.safetensors", v)
    h = read_header(path)
    assert h.metadata["format"] == FORMAT and h.metadata["mode"] == "icl"
    assert h.metadata["hidden_size"] == "64" and h.metadata["model_size"] == "0b6"
    assert h.metadata["ref_text"] == v.ref_text
    assert all(isinstance(x, str) for x in h.metadata.values())
    tensors = load_file(str(path))  # the official library reads it too
    assert set(tensors) == {"xvector", "ref_codes"} and torch.equal(tensors["ref_codes"], v.ref_codes)


def test_failed_write_leaves_nothing(tmp_path, monkeypatch):
    import qwen3tts_cli.io.weights as weights

    def boom(_t):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(weights, "_tensor_bytes", boom)
    with pytest.raises(OSError, match="No space left on device") as e:
        save_voice(tmp_path / "v.safetensors", make_voice())
    # A runtime failure (exit 1 on the command line), named after the file the user asked for.
    assert e.value.errno == 28 and e.value.filename == str(tmp_path / "v.safetensors")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError, match="folder does not exist"):
        save_voice(tmp_path / "nope" / "v.safetensors", make_voice())


def _write_raw(path, tensors, metadata):
    specs = {n: TensorSpec(tuple(t.shape), {torch.float32: "F32", torch.int64: "I64"}[t.dtype])
             for n, t in tensors.items()}
    write_safetensors(path, specs, tensors=tensors, metadata=metadata)
    return path


def test_load_rejects_foreign_and_corrupt_files(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_voice(tmp_path / "missing.safetensors")
    npy = tmp_path / "codes.npy"
    np.save(npy, np.zeros((3, 16), np.int64))
    with pytest.raises(InputError, match="not a voice file"):
        load_voice(npy)
    # A valid safetensors file that is not a voice (e.g. a checkpoint).
    other = _write_raw(tmp_path / "model.safetensors", {"w": torch.zeros(4)}, {"format": "pt"})
    with pytest.raises(InputError, match="not a qwen3tts voice file"):
        load_voice(other)
    good = make_voice("icl").metadata()
    newer = _write_raw(tmp_path / "newer.safetensors", {"xvector": torch.zeros(64), "ref_codes": torch.zeros(2, 16,
                       dtype=torch.int64)}, dict(good, format_version="99"))
    with pytest.raises(InputError, match="newer"):
        load_voice(newer)
    short = _write_raw(tmp_path / "short.safetensors", {"xvector": torch.zeros(32), "ref_codes": torch.zeros(
                       2, 16, dtype=torch.int64)}, good)
    with pytest.raises(InputError, match="corrupt voice file .xvector"):
        load_voice(short)
    missing = _write_raw(tmp_path / "missing_codes.safetensors", {"xvector": torch.zeros(64)}, good)
    with pytest.raises(InputError, match="corrupt voice file .tensors"):
        load_voice(missing)
    bad_codes = _write_raw(tmp_path / "bad_codes.safetensors", {"xvector": torch.zeros(64), "ref_codes": torch.full(
                           (2, 16), 5000, dtype=torch.int64)}, good)
    with pytest.raises(InputError, match="outside 0..2047"):
        load_voice(bad_codes)
    nan = _write_raw(tmp_path / "nan.safetensors", {"xvector": torch.full((64,), math.nan)},
                     make_voice("xvector").metadata())
    with pytest.raises(InputError, match="NaN"):
        load_voice(nan)
    # Truncated file: the header claims more than there is.
    trunc = tmp_path / "trunc.safetensors"
    trunc.write_bytes(save_voice(tmp_path / "ok.safetensors", make_voice()).read_bytes()[:-10])
    with pytest.raises(InputError, match="truncated"):
        load_voice(trunc)
    # Header JSON that is not an object of the right shape.
    junk = tmp_path / "junk.safetensors"
    head = json.dumps({"__metadata__": {"format": FORMAT}}).encode()
    junk.write_bytes(struct.pack("<Q", len(head)) + head)
    with pytest.raises(InputError, match="corrupt voice file"):
        load_voice(junk)


def test_voice_prompt_invariants():
    with pytest.raises(InputError, match="mode"):
        VoicePrompt(mode="clone", xvector=torch.zeros(4), ref_codes=None, ref_text=None)
    with pytest.raises(InputError, match="reference codes"):
        VoicePrompt(mode="icl", xvector=torch.zeros(4), ref_codes=None, ref_text="hi")
    with pytest.raises(InputError, match="transcript"):
        VoicePrompt(mode="icl", xvector=torch.zeros(4), ref_codes=torch.zeros(2, 16, dtype=torch.long), ref_text=" ")


def test_check_model_rejects_other_sizes_and_types(tiny_checkpoint):
    cfg06 = ModelConfig.from_file(tiny_checkpoint("0.6B-Base") / "config.json")
    cfg17 = ModelConfig.from_file(tiny_checkpoint("1.7B-Base", 1) / "config.json")
    cfgcv = ModelConfig.from_file(tiny_checkpoint("0.6B-CustomVoice") / "config.json")
    v = make_voice(hidden=cfg06.talker.hidden_size, size=cfg06.tts_model_size)
    v.check_model(cfg06)
    with pytest.raises(InputError, match=r"made for 0\.6B-Base.*this model is 1\.7B-Base"):
        v.check_model(cfg17)
    with pytest.raises(InputError, match="Base models"):
        v.check_model(cfgcv)
    # Same hidden size but another model size is still refused (different speaker encoder).
    with pytest.raises(InputError, match="made for 1.7B-Base"):
        make_voice(hidden=cfg06.talker.hidden_size, size="1b7").check_model(cfg06)


# -- reference audio -------------------------------------------------------------------------

def tone(seconds, db, sr=24000):
    # A sine's RMS is its amplitude / sqrt(2).
    amp = 10 ** (db / 20) * math.sqrt(2)
    return (amp * np.sin(2 * np.pi * 200 * np.arange(int(seconds * sr)) / sr)).astype(np.float32)


def test_reference_checks_length_and_silence():
    assert MIN_REF_SECONDS == 1.0 and SILENCE_DBFS == -60.0
    wav, sr = reference_waveform((tone(1.0, -20), 24000))
    assert sr == 24000 and wav.shape == (24000,)
    with pytest.raises(InputError, match="too short"):
        reference_waveform((tone(0.99, -20), 24000))
    reference_waveform((tone(1.5, SILENCE_DBFS + 1), 24000))
    with pytest.raises(InputError, match="silent"):
        reference_waveform((tone(1.5, SILENCE_DBFS - 1), 24000))
    with pytest.raises(InputError, match="silent .RMS level -inf"):
        reference_waveform((np.zeros(48000, np.float32), 24000))
    with pytest.raises(InputError, match="NaN"):
        reference_waveform((np.full(48000, np.nan, np.float32), 24000))
    with pytest.raises(InputError, match="no samples"):
        reference_waveform((np.zeros(0, np.float32), 24000))
    with pytest.raises(InputError, match="sample rate"):
        reference_waveform((tone(1.0, -20), 0))
    with pytest.raises(InputError, match="float samples"):
        reference_waveform((np.zeros((2, 3, 4), np.float32), 24000))
    with pytest.raises(InputError, match="file path or"):
        reference_waveform(tone(1.0, -20))


def test_reference_file_is_mixed_to_mono(tmp_path):
    left, right = tone(1.2, -20, 48000), tone(1.2, -30, 48000)
    sf.write(tmp_path / "st.flac", np.stack([left, right], 1), 48000)
    wav, sr = reference_waveform(tmp_path / "st.flac")
    assert sr == 48000 and wav.shape == left.shape
    assert np.abs(wav - (left + right) / 2).max() < 1e-4  # FLAC is 16-bit
    arr, _ = reference_waveform((np.stack([left, right], 1), 48000))
    assert np.allclose(arr, (left + right) / 2, atol=1e-7)
    (tmp_path / "bad.wav").write_bytes(b"RIFF....not audio")
    with pytest.raises(InputError, match="cannot read audio"):
        reference_waveform(tmp_path / "bad.wav")
    sf.write(tmp_path / "empty.wav", np.zeros(0, np.float32), 24000)
    with pytest.raises(InputError, match="no samples"):
        reference_waveform(tmp_path / "empty.wav")


# -- making voices ----------------------------------------------------------------------------

def test_create_matches_the_front_end_goldens(maker06):
    signals, ref = load_goldens()
    icl = maker06.create((signals["voice"], 24000), ref_text="Some words.")
    assert icl.mode == "icl" and icl.ref_text == "Some words."
    assert icl.xvector.dtype == torch.float32 and icl.xvector.shape == (64,)
    assert np.abs(icl.xvector.numpy() - ref["0.6B-Base/xvector/voice"]).max() <= 1e-4
    assert np.array_equal(icl.ref_codes.numpy(), ref["0.6B-Base/codes/voice"].astype(np.int64))
    assert icl.model_size == "0b6" and icl.model_type == "base"
    assert icl.hidden_size == 64 and icl.speaker_encoder_dim == 64 and abs(icl.ref_seconds - 96123 / 24000) < 1e-6
    xv = maker06.create((signals["voice"], 24000), xvector_only=True)
    assert xv.mode == "xvector" and xv.ref_codes is None and xv.ref_text is None
    assert torch.equal(xv.xvector, icl.xvector)


def test_create_resamples_other_rates(maker06, tmp_path):
    from qwen3tts_cli.io.resample import resample

    signals, _ = load_goldens()
    wav44 = resample(signals["voice"], 24000, 44100)
    sf.write(tmp_path / "v44.wav", np.stack([wav44, wav44], 1), 44100, subtype="FLOAT")
    from_file = maker06.create(tmp_path / "v44.wav", ref_text="Some words.")
    direct = maker06.create((resample(wav44, 44100, 24000), 24000), ref_text="Some words.")
    assert torch.equal(from_file.xvector, direct.xvector) and torch.equal(from_file.ref_codes, direct.ref_codes)
    assert from_file.ref_codes.shape == (-(-len(resample(wav44, 44100, 24000)) // 1920), 16)


def test_create_errors(maker06, tiny_checkpoint):
    ok = (tone(2.0, -20), 24000)
    with pytest.raises(InputError, match=r"transcript of the reference audio \(ref_text\), or xvector_only"):
        maker06.create(ok)
    with pytest.raises(InputError, match="ref_text"):
        maker06.create(ok, ref_text="   ")
    with pytest.raises(InputError, match="not both"):
        maker06.create(ok, ref_text="hello", xvector_only=True)
    with pytest.raises(InputError, match="too short"):
        maker06.create((tone(0.5, -20), 24000), xvector_only=True)
    with pytest.raises(InputError, match="needs a Base model; this model is custom_voice"):
        VoiceMaker(tiny_checkpoint("0.6B-CustomVoice")).create(ok, xvector_only=True)
    # Nothing was loaded for requests that fail their checks.
    fresh = VoiceMaker(maker06.folder)
    with pytest.raises(InputError):
        fresh.create((np.zeros(48000, np.float32), 24000), xvector_only=True)
    assert fresh._speaker is None and fresh._codec is None


def test_cut_reference_uses_the_reference_formula():
    # 1 reference frame + 48 generated: int(1/49 * 49*1920) is 1919, not 1920 (float rounding),
    # so the official output keeps one reference sample; ours must too.
    audio = np.arange(49 * 1920, dtype=np.float32)
    out = cut_reference(audio, 1, 49)
    assert out.shape == (48 * 1920 + 1,) and out[0] == 1919
    assert cut_reference(audio, 0, 49).shape == audio.shape
    assert cut_reference(np.arange(10 * 1920, dtype=np.float32), 4, 10)[0] == 4 * 1920


# -- the engine -------------------------------------------------------------------------------

def test_engine_voice_validation(tiny_checkpoint, base06):
    from qwen3tts_cli.engine import load_tts

    tts = load_tts(base06, dtype="float32")
    assert tts._voice_maker is None  # nothing of the encoders loaded with the talker
    with pytest.raises(InputError, match="Base model needs a reference voice"):
        tts.synthesize("Hello.", max_frames=2)
    signals, _ = load_goldens()
    voice = tts.create_voice((signals["chirp"], 24000), xvector_only=True)
    with pytest.raises(InputError, match="give one or the other"):
        tts.generate_codes("Hello.", speaker="ryan", voice=voice, max_frames=2)
    with pytest.raises(InputError, match="built-in speakers"):
        tts.generate_codes("Hello.", speaker="ryan", max_frames=2)
    other = make_voice("xvector", hidden=96, size="1b7")
    with pytest.raises(InputError, match="made for 1.7B-Base"):
        tts.generate_codes("Hello.", voice=other, max_frames=2)
    p = tts.prompt("Hello.", voice=voice)
    row = [i for i, r in enumerate(p.rows) if r[1] == "xvector"]
    assert p.mode == "xvector" and len(row) == 1
    assert torch.allclose(p.embeds[row[0]] - p.pad, voice.xvector, atol=1e-5)  # P + x-vector, unprojected
    cv = load_tts(tiny_checkpoint("0.6B-CustomVoice"), dtype="float32")
    with pytest.raises(InputError, match="only Base models clone voices"):
        cv.generate_codes("Hello.", voice=voice, max_frames=2)
    with pytest.raises(InputError, match="needs a Base model"):
        cv.create_voice((signals["chirp"], 24000), xvector_only=True)


def test_icl_synthesis_decodes_reference_in_front(base06):
    from qwen3tts_cli.engine import load_tts

    tts = load_tts(base06, dtype="float32")
    signals, _ = load_goldens()
    voice = tts.create_voice((signals["chirp"], 24000), ref_text="A rising tone.")
    saved_and_loaded = voice  # the same object path as --voice; files are covered above
    r = tts.synthesize("Hello there.", voice=saved_and_loaded, greedy=True, max_frames=3)
    full = tts.decode_streamed(r.codes, ref_codes=voice.ref_codes)
    assert r.audio.shape == (r.frames * 1920,)
    assert np.array_equal(r.audio, full[voice.frames * 1920:])
