import pytest
import torch

from qwen3tts_cli.io.config import GenerationConfig
from qwen3tts_cli.errors import InputError
from qwen3tts_cli.model.sampling import FirstCodeSampler, SamplingSettings, make_generator, pick, warp

V, EOS = 3072, 2150
GREEDY = SamplingSettings(do_sample=False, repetition_penalty=1.05)


def sampler(settings=GREEDY, seed=0):
    return FirstCodeSampler(settings, V, EOS, 1, "cpu", make_generator(seed, "cpu"))


def test_settings_resolution_and_greedy():
    gen = GenerationConfig(temperature=0.7, top_k=20)
    s = SamplingSettings.resolve(gen, top_k=None, top_p=0.8)
    assert (s.temperature, s.top_k, s.top_p, s.do_sample) == (0.7, 20, 0.8, True)
    g = SamplingSettings.resolve(gen, greedy=True)
    assert not g.do_sample and not g.subtalker_dosample
    with pytest.raises(InputError, match="temperature"):
        SamplingSettings.resolve(gen, temperature=0)
    with pytest.raises(InputError, match="top_p"):
        SamplingSettings.resolve(gen, top_p=1.5)
    with pytest.raises(InputError, match="unknown sampling option"):
        SamplingSettings.resolve(gen, beam_width=3)


def test_eos_blocked_for_two_steps_then_allowed():
    s = sampler()
    logits = torch.zeros(1, V)
    logits[0, EOS] = 100.0
    logits[0, 7] = 1.0
    assert s(logits).item() == 7
    assert s(logits).item() == 7
    assert s(logits).item() == EOS


def test_suppression_of_control_ids_except_eos():
    s = sampler()
    s.steps = 2  # past the min-length block
    for banned in (2048, 2148, 2149, 3000, 3071):
        logits = torch.zeros(1, V)
        logits[0, banned] = 50.0
        logits[0, 3] = 1.0
        assert s.process(logits)[0, banned] == float("-inf")
        assert s(logits).item() == 3
    x = s.process(torch.zeros(1, V))
    assert torch.isinf(x[0, 2048:]).sum().item() == 1023 and torch.isfinite(x[0, :2048]).all()


def test_repetition_penalty_on_distinct_previous_codes():
    s = sampler()
    base = torch.linspace(-3, 3, V)[None]
    # No penalty at the first step.
    assert torch.equal(s.process(base)[0, :2048], base[0, :2048])
    s.seen[0, [10, 2000]] = True
    s.steps = 3
    out = s.process(base)[0]
    assert out[10] == base[0, 10] * 1.05  # negative logit: multiplied
    assert out[2000] == base[0, 2000] / 1.05  # positive: divided
    assert out[11] == base[0, 11]
    # A code generated twice is penalized once (a set, as the reference's scatter).
    s2 = sampler()
    logits = torch.full((1, V), -5.0)
    logits[0, 42] = 2.0
    for _ in range(3):
        assert s2(logits).item() == 42
    assert s2.process(logits)[0, 42] == pytest.approx(2.0 / 1.05)


def test_greedy_applies_penalty_before_argmax():
    s = sampler()
    logits = torch.full((1, V), -10.0)
    logits[0, 5], logits[0, 6] = 1.04, 1.0
    assert s(logits).item() == 5
    # 5 is now penalized: 1.04 / 1.05 < 1.0.
    assert s(logits).item() == 6


def test_top_k_keeps_ties():
    x = torch.tensor([[5.0, 4.0, 4.0, 4.0, 1.0, 0.0]])
    out = warp(x, 1.0, 2, 1.0)
    assert torch.isfinite(out).tolist() == [[True, True, True, True, False, False]]


def test_top_p_keeps_smallest_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    out = warp(probs.log(), 1.0, 0, 0.8)
    assert torch.isfinite(out).tolist() == [[True, True, False, False]]
    out = warp(probs.log(), 1.0, 0, 0.01)  # at least one token survives
    assert torch.isfinite(out).tolist() == [[True, False, False, False]]


def test_temperature_divides():
    x = torch.tensor([[1.0, 2.0]])
    assert torch.equal(warp(x, 0.5, 0, 1.0), x / 0.5)


def test_seeded_sampling_is_reproducible_and_follows_distribution():
    logits = torch.log(torch.tensor([[0.6, 0.3, 0.1]])).expand(4000, 3).contiguous()
    a = pick(logits, True, 1.0, 0, 1.0, make_generator(123, "cpu"))
    b = pick(logits, True, 1.0, 0, 1.0, make_generator(123, "cpu"))
    c = pick(logits, True, 1.0, 0, 1.0, make_generator(124, "cpu"))
    assert torch.equal(a, b) and not torch.equal(a, c)
    freq = torch.bincount(a, minlength=3).float() / 4000
    torch.testing.assert_close(freq, torch.tensor([0.6, 0.3, 0.1]), atol=0.03, rtol=0)
    # top-k 1 sampling is the argmax.
    assert (pick(logits, True, 1.0, 1, 1.0, make_generator(0, "cpu")) == 0).all()


def test_first_code_sampling_never_picks_suppressed_or_early_eos():
    st = SamplingSettings(do_sample=True, temperature=5.0, top_k=0, top_p=1.0, repetition_penalty=1.05)
    s = sampler(st, seed=7)
    logits = torch.zeros(1, V)
    ids = [s(logits).item() for _ in range(2)]
    assert all(i < 2048 for i in ids)


def test_every_64_bit_seed_is_its_own_stream():
    from qwen3tts_cli.model.sampling import MAX_SEED, make_generator

    def draws(seed, device="cpu"):
        return torch.rand(8, generator=make_generator(seed, device))

    # The CPU generator keeps 32 bits of a plain manual_seed: 1 and 2**32 + 1 would draw the same.
    seeds = [0, 1, 2**32 - 1, 2**32, 2**32 + 1, 2**33 + 1, 2**63, MAX_SEED]
    streams = [draws(s) for s in seeds]
    assert all(not torch.equal(a, b) for i, a in enumerate(streams) for b in streams[i + 1:])
    assert torch.equal(draws(2**32 + 1), streams[4])  # reproducible
    assert torch.equal(draws(7), torch.rand(8, generator=torch.Generator().manual_seed(7)))  # small seeds: as before
    g = make_generator(2**40 + 5, "cpu")
    assert g.initial_seed() == 2**40 + 5
    for bad in (-1, MAX_SEED + 1):
        with pytest.raises(ValueError, match="seed must be in"):
            make_generator(bad, "cpu")
