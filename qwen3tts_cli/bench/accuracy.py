"""Accuracy of a reduced-precision mode (bf16, int8, w8a8) against fp32 on the same checkpoint.

    r = precision_error(load_tts(ckpt, "cpu", "float32"), load_tts(ckpt, "cpu", "w8a8"), frames=50)
"""

from __future__ import annotations

from .speed import DEFAULT_TEXT, NO_EOS, request_options


def precision_error(reference, candidate, text: str = DEFAULT_TEXT, frames: int = 50) -> dict:
    """The reference generates ``frames`` frames greedily (EOS suppressed); both models are then
    fed exactly those codes (``TTS.teacher_force``), so every step compares the two on the same
    context. Reported: max / mean absolute error of the raw talker logits (and their mean
    magnitude), the same for the code predictor, and how often each picks the same code (argmax
    over the audio ids): the per-step greedy code agreement. (Free-running runs are not compared
    code by code: on random weights one differing code sends the two utterances different ways.)"""
    kw = request_options(reference)
    codes = reference.generate_codes(text, greedy=True, seed=0, max_frames=frames, min_new_tokens=NO_EOS, **kw).codes
    a = reference.teacher_force(text, codes, **kw)
    b = candidate.teacher_force(text, codes, **request_options(candidate))
    ta, ca, tb, cb = a.talker_logits, a.cp_logits, b.talker_logits, b.cp_logits
    audio = reference.cfg.talker.vocab_size - 1024  # first-code ids below this are audio codes
    t_err, c_err = (ta - tb).abs(), (ca - cb).abs()
    return {
        "frames": int(codes.shape[0]),
        "talker_logit_max_abs_err": float(t_err.max()),
        "talker_logit_mean_abs_err": float(t_err.mean()),
        "talker_logit_mean_abs": float(ta.abs().mean()),
        "cp_logit_max_abs_err": float(c_err.max()),
        "cp_logit_mean_abs_err": float(c_err.mean()),
        "cp_logit_mean_abs": float(ca.abs().mean()),
        "first_code_agreement": float((ta[:, :audio].argmax(-1) == tb[:, :audio].argmax(-1)).float().mean()),
        "residual_code_agreement": float((ca.argmax(-1) == cb.argmax(-1)).float().mean()),
    }
