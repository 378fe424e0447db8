"""Runtime switches: read from the environment once, at load, then carried by the loaded model."""

import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model import linear
from qwen3tts_cli.model.layers import Attention, RMSNorm
from qwen3tts_cli.model.linear import PackedLinear
from qwen3tts_cli.runtime import ENV_NAMES, RuntimeSettings


def test_from_env_defaults_on_and_each_switch_turns_off():
    assert RuntimeSettings.from_env({}) == RuntimeSettings(True, True, True, True)
    for field, name in ENV_NAMES.items():
        for off in ("0", "false", "No", " off "):
            assert getattr(RuntimeSettings.from_env({name: off}), field) is False, (name, off)
        assert getattr(RuntimeSettings.from_env({name: "1"}), field) is True


def _packed(tts) -> int:
    return sum(isinstance(m, PackedLinear) for m in tts.talker.modules())


def test_env_is_read_once_at_load(tiny_checkpoint, monkeypatch):
    folder = tiny_checkpoint("0.6B-CustomVoice")
    monkeypatch.setattr(linear, "MIN_PACKED_ELEMENTS", 0)  # the tiny model's products are small
    monkeypatch.setenv("QWEN3TTS_CPU_KERNELS", "0")
    monkeypatch.setenv("QWEN3TTS_FLASH_ATTN", "0")
    plain = load_tts(folder)
    assert plain.runtime == RuntimeSettings(cpu_kernels=False, flash_attn=False)
    monkeypatch.setenv("QWEN3TTS_CPU_KERNELS", "1")
    monkeypatch.delenv("QWEN3TTS_FLASH_ATTN")
    fast = load_tts(folder)
    # One process, two models with their own settings; the first kept what it was loaded with.
    assert plain.runtime.cpu_kernels is False and fast.runtime.cpu_kernels is True
    assert not any(m.flash_attn for m in plain.talker.modules() if isinstance(m, Attention))
    assert all(m.flash_attn for m in fast.talker.modules() if isinstance(m, Attention))
    assert plain.decoder.runtime is plain.runtime and fast.decoder.runtime is fast.runtime
    # Both give the same greedy codes (oneDNN products round differently, not differently enough).
    assert _packed(plain) == 0 and _packed(fast) > 0
    a = plain.generate_codes("Hello there.", speaker="ryan", greedy=True, max_frames=6).codes
    b = fast.generate_codes("Hello there.", speaker="ryan", greedy=True, max_frames=6).codes
    assert torch.equal(a, b)


def test_explicit_settings_win_over_the_environment(tiny_checkpoint, monkeypatch):
    monkeypatch.setenv("QWEN3TTS_CPU_KERNELS", "0")
    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"), runtime=RuntimeSettings())
    assert tts.runtime.cpu_kernels and not any(n.fused for n in tts.talker.modules() if isinstance(n, RMSNorm))
