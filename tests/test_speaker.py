"""Speaker encoder front end and network against the official reference (tiny Base checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qwen3tts_cli.io.config import SpeakerEncoderConfig
from qwen3tts_cli.errors import InputError, ModelError
from qwen3tts_cli.voice.speaker import SpeakerEncoder, hz_to_mel, log_mel, mel_filterbank, mel_to_hz, uniform_weights

from clone_goldens import MODELS, golden_checkpoint, load_goldens


@pytest.fixture(scope="module")
def goldens():
    return load_goldens()


@pytest.fixture(scope="module")
def encoders(tiny_checkpoint):
    return {model: SpeakerEncoder.from_folder(golden_checkpoint(tiny_checkpoint, model, "model.safetensors"))
            for model in MODELS}


# -- filterbank ---------------------------------------------------------------------------------

def test_filterbank_matches_librosa(goldens):
    _, ref = goldens
    fb = mel_filterbank(24000, 1024, 128, 0, 12000)
    want = ref["librosa_mel_fb"]
    assert fb.dtype == np.float32 and fb.shape == want.shape == (128, 513)
    assert np.abs(fb - want).max() <= 1e-6


def test_mel_scale_is_slaney():
    # Linear below 1 kHz at 200/3 Hz per mel, 27 mels per factor 6.4 above.
    assert hz_to_mel(1000.0) == pytest.approx(15.0)
    assert hz_to_mel(500.0) == pytest.approx(7.5)
    assert hz_to_mel(6400.0) == pytest.approx(42.0)
    f = np.array([0.0, 123.0, 999.0, 1000.0, 4321.0, 12000.0])
    np.testing.assert_allclose(mel_to_hz(hz_to_mel(f)), f, rtol=1e-12, atol=1e-9)


def test_filterbank_triangles_have_unit_area():
    sr, n_fft = 16000, 4096
    fb = mel_filterbank(sr, n_fft, 40, 0, None).astype(np.float64)
    assert fb.shape == (40, n_fft // 2 + 1) and fb.min() >= 0
    area = fb.sum(1) * sr / n_fft  # Slaney normalisation: each triangle integrates to 1 over Hz
    np.testing.assert_allclose(area[5:], 1.0, rtol=0.02)
    peaks = fb.argmax(1)
    assert np.all(np.diff(peaks) > 0)


# -- log-mel ------------------------------------------------------------------------------------

def test_log_mel_matches_reference(goldens):
    signals, ref = goldens
    for name, wav in signals.items():
        mel = log_mel(wav)
        want = ref[f"mel/{name}"]
        assert mel.dtype == torch.float32 and mel.shape == (len(wav) // 256, 128) == want.shape, name
        # CPUs' FFT kernels round differently (MKL on Intel vs AMD): ~1e-6 in the mel energies,
        # which the log turns into up to 1e-2 in bins near the 1e-5 floor. Energies are compared
        # as energies, and their logs wherever the energy is well above the floor.
        got64, want64 = mel.numpy().astype(np.float64), want.astype(np.float64)
        assert np.abs(np.exp(got64) - np.exp(want64)).max() <= 2e-6, name
        loud = np.exp(want64) > 1e-3
        assert loud.mean() > 0.1 and np.abs(got64 - want64)[loud].max() <= 1e-4, name


def test_log_mel_floor_and_bad_input():
    silent = log_mel(np.zeros(4000, np.float32))
    # sqrt(1e-9) per bin through the filters stays under the 1e-5 floor
    assert torch.all(silent == torch.log(torch.tensor(1e-5)))
    with pytest.raises(InputError):
        log_mel(np.zeros(384, np.float32))
    with pytest.raises(InputError):
        log_mel(np.zeros((2, 4000), np.float32))


# -- network ------------------------------------------------------------------------------------

@pytest.mark.parametrize("model", MODELS)
def test_xvector_matches_reference(model, encoders, goldens):
    signals, ref = goldens
    enc = encoders[model]
    assert enc.cfg.enc_dim == (64 if model.startswith("0.6B") else 96)
    for name, wav in signals.items():
        x = enc.embed(wav)
        want = ref[f"{model}/xvector/{name}"]
        assert x.shape == want.shape == (enc.cfg.enc_dim,)
        assert np.abs(x.numpy() - want).max() <= 1e-4, f"{model}/{name}"


def test_xvector_bad_input(encoders):
    enc = encoders[MODELS[0]]
    with pytest.raises(InputError):
        enc.embed(np.array([0.1, np.inf] * 2000, np.float32))
    with pytest.raises(InputError):
        enc.embed(np.zeros(4000, np.int16))


def test_uniform_pooling_weights_use_the_rounded_count():
    x32 = torch.zeros(1, 4, 301)
    w32 = uniform_weights(x32)
    assert w32.shape == (1, 1, 301) and torch.all(w32 == torch.tensor(1 / 301, dtype=torch.float32))
    # In bf16 the count 301 rounds to 300 before the division, as in the official code.
    w16 = uniform_weights(x32.to(torch.bfloat16))
    assert w16.dtype == torch.bfloat16
    assert torch.all(w16 == torch.tensor(1 / 300).to(torch.bfloat16))
    assert w16.float().sum().item() != pytest.approx(1.0, abs=1e-3)


def test_from_weights_checks_names(encoders):
    enc = encoders[MODELS[0]]
    state = {"speaker_encoder." + k: v for k, v in enc.state_dict().items()}
    again = SpeakerEncoder.from_weights(state, enc.cfg)
    wav = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    assert torch.equal(again.embed(wav), enc.embed(wav))
    del state["speaker_encoder.fc.bias"]
    with pytest.raises(ModelError):
        SpeakerEncoder.from_weights(state, enc.cfg)
    with pytest.raises(ModelError):
        SpeakerEncoder.from_weights({"speaker_encoder." + k: v for k, v in enc.state_dict().items()},
                                    SpeakerEncoderConfig(enc_dim=128, enc_channels=(32, 32, 32, 32, 96),
                                                         enc_attention_channels=16, enc_se_channels=16))


def test_non_base_model_has_no_speaker_encoder(tiny_checkpoint):
    with pytest.raises(ModelError, match="Base"):
        SpeakerEncoder.from_folder(tiny_checkpoint("0.6B-CustomVoice"))
