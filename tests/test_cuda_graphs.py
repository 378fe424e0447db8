"""The static-buffer frame step that CUDA graphs replay: run eagerly on the CPU it must give the
frames of the normal loop; on CUDA (skipped here without one) the replays must too."""

import pytest
import torch

from qwen3tts_cli.engine import load_tts
from qwen3tts_cli.model import cuda_graphs
from qwen3tts_cli.model.cuda_graphs import use_cuda_graphs
from qwen3tts_cli.model.frames import Row, generate

EOS = 2150
TEXT = "Hello there, world."
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module", params=["0.6B-CustomVoice", "1.7B-VoiceDesign"])
def tts(request, tiny_checkpoint):
    return load_tts(tiny_checkpoint(request.param))


@pytest.fixture(autouse=True)
def small_buckets(monkeypatch):
    # Several cache buckets within a few frames, so the bucket switch and masking are exercised.
    monkeypatch.setattr(cuda_graphs, "BUCKET", 4)


def _prompt(tts, text=TEXT):
    kw = dict(speaker="ryan") if tts.model_type == "custom_voice" else dict(instruct="A calm voice.")
    return tts.prompt(text, language="english", **kw)


def _run(tts, prompt, settings, n, seed=None, **kw):
    """(codes, stop reason, talker logits, cp logits) of one prompt through the frame loop."""
    row = Row(prompt, n, seed)
    for _ in generate(tts.talker, tts.predictor, [row], settings, EOS, record_logits=True, **kw):
        pass
    r = row.result()
    return r.codes, r.stop_reason, r.talker_logits, r.cp_logits


def _assert_same(a, b, tol=1e-4):
    assert torch.equal(a[0], b[0]) and a[1] == b[1]
    assert a[2].shape == b[2].shape and (a[2] - b[2]).abs().max() <= tol
    assert a[3].shape == b[3].shape and (a[3] - b[3]).abs().max() <= tol


@pytest.mark.parametrize("greedy", [True, False])
def test_static_step_equals_eager_loop(tts, greedy):
    settings = tts.sampling(greedy=greedy)
    p = _prompt(tts)
    # 10 frames cross at least two 4-slot buckets past the prompt.
    want = _run(tts, p, settings, 10, seed=5, cuda_graphs=False)
    got = _run(tts, p, settings, 10, seed=5, static=True)
    _assert_same(got, want)
    assert got[0].shape == (10, 16) and got[1] == "max_frames"
    # The step is reused across calls (same caches and settings) and still starts afresh.
    step = tts.talker._static_step
    again = _run(tts, p, settings, 10, seed=5, static=True)
    assert tts.talker._static_step is step
    _assert_same(again, got, tol=0)


def test_static_step_eos_and_cap(tts, monkeypatch):
    raw = tts.talker.logits
    monkeypatch.setattr(tts.talker, "logits", lambda h: raw(h).index_fill(-1, torch.tensor([EOS]), 1e3))
    settings = tts.sampling(greedy=True)
    p = _prompt(tts)
    got = _run(tts, p, settings, 30, static=True)
    assert got[1] == "eos" and got[0].shape == (2, 16) and got[2].shape[0] == 3
    _assert_same(got, _run(tts, p, settings, 30, cuda_graphs=False))
    one = _run(tts, p, settings, 1, static=True)
    assert one[1] == "max_frames" and one[0].shape == (1, 16)


@pytest.mark.parametrize("greedy", [True, False])
def test_static_batch_equals_eager_batch(tts, greedy):
    settings = tts.sampling(greedy=greedy)
    prompts = [_prompt(tts, t) for t in ("Hi.", "A much longer line of text for the second row.", TEXT)]
    caps, seeds = [4, 7, 6], [1, 2, 1]

    def run(**kw):
        rows = [Row(p, c, s) for p, c, s in zip(prompts, caps, seeds)]
        for _ in generate(tts.talker, tts.predictor, rows, settings, EOS, record_logits=True, **kw):
            pass
        return [r.result() for r in rows]

    want, got = run(cuda_graphs=False), run(static=True)
    for g, w in zip(got, want):
        _assert_same((g.codes, g.stop_reason, g.talker_logits, g.cp_logits),
                     (w.codes, w.stop_reason, w.talker_logits, w.cp_logits))
    assert [g.frames for g in got] == caps


def test_graphs_only_on_cuda():
    cpu = torch.device("cpu")
    assert not use_cuda_graphs(cpu) and not use_cuda_graphs(cpu, True)
    if CUDA:
        dev = torch.device("cuda")
        assert use_cuda_graphs(dev) and not use_cuda_graphs(dev, False)
    assert cuda_graphs.cache_room(1) == 4 and cuda_graphs.cache_room(4) == 4 and cuda_graphs.cache_room(5) == 8


@pytest.mark.skipif(not CUDA, reason="needs CUDA")
def test_cuda_graph_replay_equals_eager(tiny_checkpoint):
    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"), device="cuda", dtype="float32")
    settings = tts.sampling(greedy=True)
    p = _prompt(tts)
    want = _run(tts, p, settings, 20, cuda_graphs=False)
    got = _run(tts, p, settings, 20, cuda_graphs=True)
    _assert_same(got, want, tol=1e-3)
    assert len(tts.talker._static_step.graphs) >= 2
    seeded = [_run(tts, p, tts.sampling(), 12, seed=7, cuda_graphs=True)[0] for _ in range(2)]
    assert torch.equal(*seeded)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("greedy", [True, False])
def test_captured_frame_body_needs_no_host(tiny_checkpoint, batch, greedy):
    # What a CUDA graph records must not read a value back to the host (.item(), a Python branch
    # on a tensor, nonzero), nor touch a host tensor: either fails the capture or is frozen into
    # it. The meta device has no data, so any of those raises here, without a GPU.
    tts = load_tts(tiny_checkpoint("1.7B-VoiceDesign"))
    meta = torch.device("meta")
    tts.talker.to(meta)
    tts.predictor.to(meta)
    settings = tts.sampling(greedy=greedy, subtalker_top_p=0.9)  # the sort path too
    tts.talker.setup_cache(batch, 8, meta, torch.float32)
    tts.predictor.setup_cache(batch, meta, torch.float32)
    step = cuda_graphs.StaticFrameStep(tts.talker, tts.predictor, batch, settings, meta, torch.float32,
                                       batched=batch > 1, capture=False)
    with torch.inference_mode():
        for kv_len in (4, 8):  # two buckets
            step._body(kv_len)
    assert step.codes.device == meta and step.codes.shape == (batch, 15)
    assert step.logits.shape == (batch, tts.cfg.talker.vocab_size)


@pytest.mark.parametrize("greedy", [True, False])
def test_captured_lane_frame_needs_no_host(tiny_checkpoint, greedy):
    # The continuous batch's frame (LaneStep: first-code sampling with per-lane EOS blocks, the
    # code predictor, the talker step at per-lane positions) on the meta device, as above.
    from qwen3tts_cli.model.continuous import Lanes

    tts = load_tts(tiny_checkpoint("0.6B-CustomVoice"))
    meta = torch.device("meta")
    tts.talker.to(meta)
    tts.predictor.to(meta)
    settings = tts.sampling(greedy=greedy, top_p=0.8, subtalker_top_p=0.9, repetition_penalty=1.1)
    lanes = Lanes(4, tts.cfg.talker.hidden_size, tts.cfg.talker.vocab_size, meta, torch.float32)
    tts.talker.setup_cache(4, 8, meta, torch.float32)
    tts.predictor.setup_cache(4, meta, torch.float32)
    step = cuda_graphs.LaneStep(tts.talker, tts.predictor, lanes, EOS, capture=False)
    with torch.inference_mode():
        for n, kv_len in ((1, 4), (4, 8)):  # lane buckets and KV buckets
            step._body(n, kv_len, settings)
    assert step.codes.device == meta and step.codes.shape == (4, 15) and step.z.shape == (4,)


def test_new_caches_mean_new_graphs_even_at_the_old_addresses(tts, monkeypatch):
    # The caching allocator can hand a freed cache's address to its replacement: graphs captured
    # over the old buffers must not be reused then, so the key holds the caches' versions too.
    settings = tts.sampling(greedy=True)
    dev, dt = tts.talker.codec_head.weight.device, tts.talker.codec_head.weight.dtype
    monkeypatch.setattr(torch.Tensor, "data_ptr", lambda self: 0)  # every buffer "at the same address"
    tts.talker.setup_cache(1, 8, dev, dt)
    tts.predictor.setup_cache(1, dev, dt)
    step = cuda_graphs.frame_step(tts.talker, tts.predictor, 1, settings, dev, dt, False, capture=False)
    assert cuda_graphs.frame_step(tts.talker, tts.predictor, 1, settings, dev, dt, False, capture=False) is step
    tts.talker.grow_cache(tts.talker.max_seq + 8)
    grown = cuda_graphs.frame_step(tts.talker, tts.predictor, 1, settings, dev, dt, False, capture=False)
    assert grown is not step
    tts.predictor.setup_cache(tts.predictor.max_batch + 1, dev, dt)  # a bigger batch: a new cache
    assert cuda_graphs.frame_step(tts.talker, tts.predictor, 1, settings, dev, dt, False, capture=False) is not grown


def test_fused_ops_shrink_the_captured_frame(tiny_checkpoint):
    # scripts/frame_ops.py counts what the graph records (on meta, as bf16 on CUDA runs it): with
    # the fused ops every RMSNorm is one call and each layer pass makes 4 products instead of 7.
    import importlib.util
    from pathlib import Path

    from qwen3tts_cli.io.config import GenerationConfig, ModelConfig

    path = Path(__file__).resolve().parents[1] / "scripts" / "frame_ops.py"
    spec = importlib.util.spec_from_file_location("frame_ops", path)
    frame_ops = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(frame_ops)
    folder = tiny_checkpoint("0.6B-CustomVoice")
    cfg, gen = ModelConfig.from_file(folder / "config.json"), GenerationConfig.from_file(folder / "generation_config.json")
    passes = cfg.talker.num_hidden_layers + 15 * cfg.talker.code_predictor.num_hidden_layers
    norms = 4 * passes + 1 + 15  # per layer: input, q, k, post; final norms of the talker and 15 passes
    fused, plain = (frame_ops.count(cfg, gen, f, greedy=True) for f in (True, False))
    assert fused["rms_norm"] == norms and "rsqrt" not in fused and "pow" not in fused
    assert plain["rsqrt"] == norms and "rms_norm" not in plain
    # The codec head, each pass's head, and (1.7B) each pass's input projection.
    other = 1 + 15 + 15 * (cfg.talker.code_predictor.hidden_size != cfg.talker.hidden_size)
    assert plain["linear"] - other == 7 * passes and fused["linear"] - other == 4 * passes
    assert sum(fused.values()) < 0.5 * sum(plain.values())
