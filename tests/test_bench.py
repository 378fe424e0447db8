"""`qwen3tts bench` and the bench module: fields, their values, and the error paths."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from qwen3tts_cli.bench.accuracy import precision_error
from qwen3tts_cli.bench.speed import copy_bandwidth, load_random, weight_bytes_per_frame
from qwen3tts_cli.cli.main import app
from qwen3tts_cli.io.config import ModelConfig
from qwen3tts_cli.engine import load_tts

runner = CliRunner()
MODEL = "0.6B-CustomVoice"


@pytest.fixture(scope="module")
def folder(tiny_checkpoint):
    return tiny_checkpoint(MODEL)


@pytest.fixture(scope="module")
def report(folder):
    res = runner.invoke(app, ["bench", "-m", str(folder), "--frames", "4", "--warmup", "2", "--json"])
    assert res.exit_code == 0, res.output
    return json.loads(res.stdout)


def _expected_bytes(cfg: ModelConfig) -> int:
    """Weight bytes per frame from the config alone (fp32): talker step + 15 predictor passes."""
    t, c = cfg.talker, cfg.talker.code_predictor

    def layers(n, h, ffn, heads, kv, hd):
        attn = h * heads * hd * 2 + 2 * h * kv * hd + 2 * hd  # q, o, k, v, q/k norms
        return n * (attn + 3 * h * ffn + 2 * h)

    talker = layers(t.num_hidden_layers, t.hidden_size, t.intermediate_size, t.num_attention_heads,
                    t.num_key_value_heads, t.head_dim) + t.hidden_size + t.vocab_size * t.hidden_size
    per_pass = layers(c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads,
                      c.num_key_value_heads, c.head_dim) + c.hidden_size
    groups = t.num_code_groups - 1
    return 4 * (talker + groups * per_pass + groups * c.vocab_size * c.hidden_size)


def test_json_has_every_field_with_sane_values(report, folder):
    r = report
    assert r["device"] == "cpu" and r["dtype"] == "float32" and r["quantize"] is None
    assert r["frames"] == 4 and r["batch"] == 1
    m = r["ms_per_frame"]
    for part in ("talker", "code_predictor", "codec"):
        assert m[part] > 0
    assert m["host"] >= 0
    # The parts are measured inside the same window as the frame time: their sums fit in it. In
    # the window of n frames: n - 2 talker steps and n - 1 code-predictor calls (bench/speed.py).
    # (Averages may not add up: the counts differ, and one slow step moves one average only.)
    n = r["frames"]
    window = (n - 1) * m["talker_and_code_predictor"]
    assert (n - 2) * m["talker"] + (n - 1) * m["code_predictor"] <= window * (1 + 1e-9) + 1e-3
    assert r["frames_per_s"] == pytest.approx(1000 / m["talker_and_code_predictor"])
    assert r["xrt"] == pytest.approx(80 / (m["talker_and_code_predictor"] + m["codec"]))
    assert r["e2e_s"] > r["generate_s"] > 0
    assert r["ttfa_ms"] > 0 and r["load_s"] > 0 and r["capture_s"] == 0
    assert r["peak_rss_mb"] > 50 and r["peak_cuda_mb"] == 0
    assert r["copy_gb_s"] > 0.1
    assert r["weight_bytes_per_frame"] == _expected_bytes(ModelConfig.from_file(folder / "config.json"))
    assert r["floor_ms_per_frame"] == pytest.approx(r["weight_bytes_per_frame"] / r["copy_gb_s"] / 1e6)
    assert 0 < r["floor_fraction"] == pytest.approx(r["floor_ms_per_frame"] / m["talker_and_code_predictor"])


def test_report_without_json_goes_to_stderr(folder):
    res = runner.invoke(app, ["bench", "-m", str(folder), "--frames", "3", "--warmup", "2"])
    assert res.exit_code == 0, res.output
    assert res.stdout == ""
    assert "frames/s" in res.stderr and "x real time" in res.stderr


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without CUDA")
def test_cuda_without_cuda_exits_2(folder):
    res = runner.invoke(app, ["bench", "-m", str(folder), "--device", "cuda", "--json"])
    assert res.exit_code == 2
    assert "CUDA is not available" in res.stderr and res.stdout == ""


@pytest.mark.parametrize("args, message", [
    (["--frames", "2"], "--frames"),
    (["--batch", "0"], "--batch"),
    (["--dtype", "int4"], "unknown dtype"),
])
def test_bad_options_exit_2(folder, args, message):
    res = runner.invoke(app, ["bench", "-m", str(folder), *args])
    assert res.exit_code == 2 and message in res.stderr


def test_random_weights_equal_the_checkpoint_of_the_same_seed(folder):
    """In memory, from the config alone: the same tensors make_checkpoint writes with that seed."""
    random = load_random(str(folder), torch.device("cpu"), torch.float32, None, seed=0)
    loaded = load_tts(folder, "cpu", "float32")
    for a, b in ((random.talker, loaded.talker), (random.predictor, loaded.predictor)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys()
        for k in sa:
            assert torch.equal(sa[k], sb[k]), k
    codec_a, codec_b = random.decoder.state_dict(), loaded.decoder.state_dict()
    assert all(torch.equal(codec_a[k], codec_b[k]) for k in codec_b)
    assert weight_bytes_per_frame(random) == weight_bytes_per_frame(loaded)


def test_random_weights_cli_with_an_official_name_needs_no_files():
    """A known repo's real config from the packaged metadata (0.6B at full size would take GBs;
    its shapes are checked without building the weights)."""
    from qwen3tts_cli.engine import model_files

    files = model_files(MODEL)
    assert files.config.is_file() and (files.tokenizer / "vocab.json").is_file() and files.codec_config.is_file()
    assert files.model_config().talker.hidden_size == 1024 and files.generation().max_new_tokens > 0


def test_random_weights_cli_on_a_tiny_config(folder):
    res = runner.invoke(app, ["bench", "-m", str(folder), "--random-weights", "--frames", "3", "--warmup", "2",
                              "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["random_weights"] is True and r["frames_per_s"] > 0


def test_random_weights_unknown_name_exits_2():
    res = runner.invoke(app, ["bench", "-m", "no-such-model", "--random-weights"])
    assert res.exit_code == 2 and "official model" in res.stderr


def test_batch_reports_aggregate_speed(folder):
    res = runner.invoke(app, ["bench", "-m", str(folder), "--frames", "3", "--warmup", "2", "--batch", "2",
                              "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["batch"] == 2 and r["frames_per_s"] > 0 and r["ms_per_frame"]["codec"] > 0


def test_int8_mode_runs(folder):
    res = runner.invoke(app, ["bench", "-m", str(folder), "--dtype", "int8", "--frames", "3", "--warmup", "2",
                              "--json"])
    assert res.exit_code == 0, res.output
    r = json.loads(res.stdout)
    assert r["dtype"] == "bfloat16" and r["quantize"] == "int8"
    # int8 linears + bf16 rest: well under half the fp32 bytes of the same model.
    fp32 = _expected_bytes(ModelConfig.from_file(folder / "config.json"))
    assert r["weight_bytes_per_frame"] < 0.5 * fp32


def test_copy_bandwidth_is_positive():
    assert copy_bandwidth(torch.device("cpu"), mib=16, repeats=2) > 1e8


def test_precision_error_of_identical_models_is_zero(folder):
    a = load_tts(folder, "cpu", "float32")
    b = load_tts(folder, "cpu", "float32")
    r = precision_error(a, b, frames=4)
    assert r["frames"] == 4 and r["talker_logit_mean_abs"] > 0.1
    assert r["talker_logit_max_abs_err"] == 0 and r["cp_logit_max_abs_err"] == 0
    assert r["first_code_agreement"] == 1.0 and r["residual_code_agreement"] == 1.0


def test_teacher_forcing_reproduces_the_greedy_run(folder):
    """Fed its own greedy codes, a model's logits are those of the free run (same argmaxes)."""
    tts = load_tts(folder, "cpu", "float32")
    run = tts.generate_codes("Teacher forcing.", speaker="ryan", greedy=True, max_frames=5, return_logits=True)
    forced = tts.teacher_force("Teacher forcing.", run.codes, speaker="ryan")
    t, c = forced.talker_logits, forced.cp_logits
    assert t.shape[0] == c.shape[0] == run.frames == 5
    torch.testing.assert_close(t[:run.talker_logits.shape[0]], run.talker_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(c, run.cp_logits, rtol=1e-5, atol=1e-5)
    assert torch.equal(c.argmax(-1), run.codes[:, 1:]) and torch.equal(forced.codes, run.codes)
    # Other codes fed in give other logits from the second step on: the run follows the codes given.
    other = tts.teacher_force("Teacher forcing.", (run.codes + 1) % 2048, speaker="ryan")
    assert torch.equal(other.talker_logits[0], t[0]) and not torch.equal(other.talker_logits[1:], t[1:])


@pytest.mark.parametrize("mode", ["int8", "w8a8"])
def test_quantized_modes_stay_close_to_fp32(folder, mode):
    ref = load_tts(folder, "cpu", "float32")
    q = load_tts(folder, "cpu", mode)
    assert q.quantize == mode
    r = precision_error(ref, q, frames=6)
    # Teacher-forced: small relative logit error, and most greedy picks unchanged.
    assert r["talker_logit_mean_abs_err"] < 0.05 * r["talker_logit_mean_abs"]
    assert r["cp_logit_mean_abs_err"] < 0.05 * r["cp_logit_mean_abs"]
    assert r["first_code_agreement"] >= 0.8 and r["residual_code_agreement"] >= 0.8
