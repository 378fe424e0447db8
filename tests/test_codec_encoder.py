"""Codec encoder (Mimi) against the official reference: identical codes on tiny checkpoints."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch

from qwen3tts_cli.codec.encoder import CodecEncoder, nearest_code
from qwen3tts_cli.io.config import CodecConfig
from qwen3tts_cli.errors import InputError, ModelError
from qwen3tts_cli.io.weights import expected_codec_tensors, load_safetensors, write_safetensors

from clone_goldens import META, MODELS, golden_checkpoint, load_goldens


@pytest.fixture(scope="module")
def goldens():
    return load_goldens()


@pytest.fixture(scope="module")
def encoders(tiny_checkpoint):
    return {model: CodecEncoder.from_folder(golden_checkpoint(tiny_checkpoint, model, "speech_tokenizer/model.safetensors"))
            for model in MODELS}


@pytest.mark.parametrize("model", MODELS)
def test_codes_identical_to_reference(model, encoders, goldens):
    signals, ref = goldens
    enc = encoders[model]
    latent = {}
    hook = enc.downsample.register_forward_hook(lambda _m, _i, o: latent.__setitem__("x", o[0].numpy().copy()))
    try:
        for name, wav in signals.items():
            codes = enc.encode(wav)
            want = ref[f"{model}/codes/{name}"].astype(np.int64)
            assert codes.dtype == torch.int64
            assert codes.shape == (math.ceil(len(wav) / 1920), 16) == want.shape, name
            assert np.array_equal(codes.numpy(), want), f"{model}/{name}: {(codes.numpy() != want).sum()} codes differ"
            np.testing.assert_allclose(latent["x"], ref[f"{model}/latent/{name}"], rtol=0, atol=1e-5)
    finally:
        hook.remove()


def test_the_two_checkpoints_have_different_codecs(goldens):
    _, ref = goldens
    a, b = (ref[f"{m}/codes/voice"] for m in MODELS)
    assert (a != b).mean() > 0.5


@pytest.mark.parametrize("n", [1, 959, 1919, 1920, 1921, 3840, 5761])
def test_frame_count_is_ceil_of_hop(n, encoders):
    enc = encoders[MODELS[0]]
    wav = np.random.default_rng(n).standard_normal(n).astype(np.float32) * 0.1
    codes = enc.encode(wav)
    assert codes.shape == (-(-n // 1920), 16)
    assert int(codes.min()) >= 0 and int(codes.max()) < 2048


def test_torch_input_and_prefix_causality(encoders, goldens):
    # Causal convs and attention: a prefix cut on the frame grid gives the same first frames.
    signals, _ = goldens
    enc = encoders[MODELS[0]]
    wav = torch.from_numpy(signals["voice"])
    full = enc.encode(wav)
    head = enc.encode(wav[: 20 * 1920])
    assert torch.equal(head, full[:20])


@pytest.mark.parametrize("bad", [
    np.zeros((2, 4000), np.float32),                 # not mono
    np.zeros(0, np.float32),                         # empty
    np.zeros(4000, np.int16),                        # integer samples
    np.array([0.0, np.nan] * 2000, np.float32),      # NaN
    [0.0] * 4000,                                    # not an array
])
def test_bad_input_is_input_error(bad, encoders):
    with pytest.raises(InputError):
        encoders[MODELS[0]].encode(bad)


def test_nearest_code_matches_cdist_bit_for_bit():
    # Points halfway between codebook rows make near-ties, where only cdist's own rounding
    # (the augmented matrix product) reproduces its choice.
    g = torch.Generator().manual_seed(0)
    e = torch.randn(2048, 16, generator=g)
    i, j = torch.randint(0, 2048, (2, 4096), generator=g)
    x = torch.cat([(e[i] + e[j]) / 2 + 1e-6 * torch.randn(4096, 16, generator=g), torch.randn(512, 16, generator=g)])
    ours = nearest_code(x, e)
    official = torch.cdist(x[None], e[None], p=2)[0].argmin(-1)
    assert torch.equal(ours, official)
    # and it is a nearest neighbour up to rounding
    d = torch.cdist(x.double(), e.double())
    assert torch.allclose(d.gather(1, ours[:, None])[:, 0], d.min(1).values, atol=1e-3)


def test_loads_only_what_encoding_needs(encoders):
    enc = encoders[MODELS[0]]
    names = set(enc.state_dict())
    assert len(enc.quantizer.acoustic_residual_vector_quantizer.layers) == 15
    assert len(enc.quantizer.semantic_residual_vector_quantizer.layers) == 1
    assert not any(n.startswith("decoder.") or "output_proj" in n or n.endswith("initialized") for n in names)
    assert "encoder.layers.0.conv.weight" in names and "downsample.conv.weight" in names
    assert all(t.dtype == torch.float32 for t in enc.state_dict().values())


def test_missing_tensor_is_model_error(tiny_checkpoint, tmp_path):
    src = tiny_checkpoint(MODELS[0], META["checkpoints"][MODELS[0]]["seed"]) / "speech_tokenizer"
    dst = tmp_path / "tok"
    shutil.copytree(src, dst)
    cfg = CodecConfig.from_file(dst / "config.json")
    specs = expected_codec_tensors(cfg)
    tensors = load_safetensors(dst / "model.safetensors")
    drop = "encoder.encoder_transformer.layers.0.mlp.fc1.weight"
    specs = {k: v for k, v in specs.items() if k != drop}
    tensors = {k: v.clone() for k, v in tensors.items() if k != drop}
    write_safetensors(dst / "model.safetensors", specs, tensors=tensors)
    with pytest.raises(ModelError, match="missing"):
        CodecEncoder.from_folder(dst)
    with pytest.raises(ModelError):
        CodecEncoder.from_folder(tmp_path / "nowhere")
