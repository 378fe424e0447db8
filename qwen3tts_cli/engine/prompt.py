"""Talker prompt construction: from a resolved request to the prefill rows and the trailing text.

Every talker input row is the sum of a text-track vector T(id) (projected text embedding) and a
codec-track vector C(id) (codec embedding), either of which may be absent
(reference-architecture.md §3.4–§3.7). The layout, in order:

    I  instruct segment, text only        T(u_0) ... T(u_{k-1})        (if an instruction is used)
    R  role, text only                    T(<|im_start|>) T(assistant) T(\\n)
    Q  control rows                       P + C(tag) for each tag, P + speaker, B + C(CPAD)
    body                                  non-streaming, streaming or voice-clone ICL (below)

The templated strings are tokenized whole and then sliced, exactly as the reference does, because
leading whitespace in the user's text can merge with the template's newline.

Projections are computed in the same groups as the reference (role, [B, Eo, P], body, ...): a
batched matmul may round a row differently from a single-row one, and the groups cost nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..errors import InputError, ModelError
from ..io.config import ModelConfig
from ..text.tokenizer import TextTokenizer
from .request import ResolvedRequest

# Row descriptions for Prompt.rows: (text id or None, codec part or None). The codec part is a
# codec id, XVECTOR for the raw speaker embedding, or ("frame", k) for reference frame k (ICL).
XVECTOR = "xvector"


def assistant_text(text: str) -> str:
    return f"<|im_start|>assistant\n{text}<|im_end|>\n<|im_start|>assistant\n"


def ref_text_template(text: str) -> str:
    return f"<|im_start|>assistant\n{text}<|im_end|>\n"


def instruct_text(instruct: str) -> str:
    return f"<|im_start|>user\n{instruct}<|im_end|>\n"


@dataclass
class Prompt:
    embeds: torch.Tensor  # [L, H] prefill rows, model dtype
    trailing: torch.Tensor  # [m, H] text rows fed one per generated frame, then `pad` forever
    pad: torch.Tensor  # [H] the tts_pad row P
    token_ids: dict[str, list[int]]
    rows: list[tuple[int | None, Any]]  # what each row of `embeds` is made of (see XVECTOR)
    trailing_ids: list[int]  # text ids of `trailing`
    non_streaming_mode: bool
    mode: str  # custom_voice | voice_design | xvector | icl
    language_id: int | None  # codec id in the tag list, None for the 3-tag "auto" form
    instruct_dropped: bool = False  # 0.6B CustomVoice ignores instructions, as the reference does
    warnings: list[str] = field(default_factory=list)
    text_in_prompt: int = 0  # text ids inside ``embeds``; the rest ride along in ``trailing``
    eos_in_prompt: bool = False  # the end-of-text row is inside ``embeds`` (trailing is padding only)
    track: Any = None  # a feed's text rows (engine.feed.FeedTrack): used instead of ``trailing``

    def trailing_row(self, step: int) -> torch.Tensor:
        """Text row paired with generated frame `step` (0-based)."""
        return self.trailing[step] if step < self.trailing.shape[0] else self.pad


def _device(model) -> torch.device:
    dev = getattr(model, "device", None)
    if isinstance(dev, torch.device):
        return dev
    params = getattr(model, "parameters", None)
    if callable(params):
        for p in params():
            return p.device
    return torch.device("cpu")


def feed_ids_needed(tokenizer: TextTokenizer, plan: ResolvedRequest) -> int:
    """Text ids the streaming layout puts inside the prompt, which a text feed must have before
    the prefill: the first one, or for an ICL clone as many as the reference frames outnumber the
    reference transcript's tokens (the two tracks are aligned row by row, §3.7)."""
    if plan.mode != "icl":
        return 1
    voice = plan.voice
    ref = tokenizer.encode(ref_text_template(voice.ref_text))[3:-2]
    return max(1, int(voice.ref_codes.shape[0]) + 1 - len(ref))


def build_prompt(model, cfg: ModelConfig, tokenizer: TextTokenizer, plan: ResolvedRequest,
                 text: str | Sequence[int]) -> Prompt:
    """Prefill rows and trailing text rows for one chunk ``text`` of a resolved request
    (reference-architecture.md §3.5–§3.7); a Base model's voice is ``plan.voice``, a VoicePrompt.
    ``text`` may also be its text ids (a text feed's, already tokenized).

    `model` needs `embed_text(ids) -> [..., H]` and `embed_codec(ids) -> [..., H]`; ICL also needs
    `embed_frame(codes [K, 16]) -> [K, H]` (the 16-term codebook sum of each frame).
    """
    tk = cfg.talker
    mode, speaker, instruct, language_id = plan.mode, plan.speaker, plan.instruct, plan.language_id
    non_streaming = plan.non_streaming
    voice = plan.voice
    device = _device(model)

    def ids_tensor(ids: list[int]) -> torch.Tensor:
        return torch.tensor(ids, dtype=torch.long, device=device)

    def T(ids: list[int]) -> torch.Tensor:
        return model.embed_text(ids_tensor(ids))

    def C(ids: list[int]) -> torch.Tensor:
        return model.embed_codec(ids_tensor(ids))

    if isinstance(text, str):
        target = tokenizer.encode(assistant_text(text))
        text_ids = target[3:-5]
    else:
        text_ids = [int(i) for i in text]
        frame = tokenizer.encode(assistant_text(""))
        target = frame[:3] + text_ids + frame[3:]
    if not text_ids:
        raise InputError("text has no tokens to speak")
    token_ids: dict[str, list[int]] = {"target": target, "text": text_ids}

    segments: list[torch.Tensor] = []
    rows: list[tuple[int | None, Any]] = []

    if instruct is not None:
        ins = tokenizer.encode(instruct_text(instruct))
        token_ids["instruct"] = ins
        segments.append(T(ins))
        rows += [(i, None) for i in ins]

    segments.append(T(target[:3]))
    rows += [(i, None) for i in target[:3]]

    # Tag list: 3-tag "nothink" form for auto, 4-tag "think" form with a language id (a dialect
    # speaker's dialect included: ResolvedRequest.language_id).
    if language_id is None:
        tags = [tk.codec_nothink_id, tk.codec_think_bos_id, tk.codec_think_eos_id]
    else:
        tags = [tk.codec_think_id, tk.codec_think_bos_id, language_id, tk.codec_think_eos_id]

    bos_eos_pad = T([cfg.tts_bos_token_id, cfg.tts_eos_token_id, cfg.tts_pad_token_id])
    B, Eo, P = bos_eos_pad[0], bos_eos_pad[1], bos_eos_pad[2]
    pad_id, bos_id, eos_id = cfg.tts_pad_token_id, cfg.tts_bos_token_id, cfg.tts_eos_token_id

    control = [C(tags)]
    control_rows: list[Any] = list(tags)
    if mode == "custom_voice":
        control.append(C([tk.spk_id[speaker]]))
        control_rows.append(tk.spk_id[speaker])
    elif mode in ("xvector", "icl"):
        xv = voice.xvector.to(device=device, dtype=P.dtype).reshape(1, -1)
        if xv.shape[1] != P.shape[0]:
            raise InputError(f"speaker embedding has {xv.shape[1]} values, this model needs {P.shape[0]}")
        control.append(xv)
        control_rows.append(XVECTOR)
    codec_pad_bos = C([tk.codec_pad_id, tk.codec_bos_id])
    control.append(codec_pad_bos[:1])
    control_rows.append(tk.codec_pad_id)
    control_codec = torch.cat(control, dim=0)
    text_track = torch.cat([P.expand(control_codec.shape[0] - 1, -1), B[None]], dim=0)
    segments.append(text_track + control_codec)
    rows += [(pad_id, c) for c in control_rows[:-1]] + [(bos_id, tk.codec_pad_id)]

    if mode == "icl":
        body, body_rows, trailing, trailing_ids = _icl_body(
            model, tokenizer, voice, text_ids, T, C, Eo, P, cfg, non_streaming, token_ids)
        in_trailing = len(trailing_ids) - 1 if trailing_ids[-1] == eos_id else 0
        text_in_prompt = max(0, len(text_ids) - in_trailing)
    elif non_streaming:
        n = len(text_ids)
        text_rows = torch.cat([T(text_ids), Eo[None]], dim=0)
        body = torch.cat([text_rows + C([tk.codec_pad_id] * (n + 1)), (P + codec_pad_bos[1])[None]], dim=0)
        body_rows = [(i, tk.codec_pad_id) for i in text_ids + [eos_id]] + [(pad_id, tk.codec_bos_id)]
        trailing, trailing_ids = P[None], [pad_id]
        text_in_prompt = len(text_ids)
    else:
        body = T(text_ids[:1]) + codec_pad_bos[1:]
        body_rows = [(text_ids[0], tk.codec_bos_id)]
        rest = text_ids[1:]
        trailing = torch.cat([T(rest), Eo[None]], dim=0) if rest else Eo[None]
        trailing_ids = rest + [eos_id]
        text_in_prompt = 1
    segments.append(body)
    rows += body_rows

    embeds = torch.cat(segments, dim=0)
    assert embeds.shape[0] == len(rows)
    return Prompt(embeds=embeds, trailing=trailing, pad=P, token_ids=token_ids, rows=rows,
                  trailing_ids=trailing_ids, non_streaming_mode=non_streaming, mode=mode,
                  language_id=language_id, instruct_dropped=plan.instruct_dropped,
                  warnings=list(plan.warnings), text_in_prompt=text_in_prompt,
                  eos_in_prompt=trailing_ids[-1] != eos_id)


def _icl_body(model, tokenizer, voice, text_ids, T, C, Eo, P, cfg, non_streaming, token_ids):
    """Voice-clone ICL body: reference transcript + target text against the reference frames."""
    tk = cfg.talker
    pad_id, eos_id = cfg.tts_pad_token_id, cfg.tts_eos_token_id
    codes = torch.as_tensor(voice.ref_codes).to(dtype=torch.long, device=P.device)
    groups = tk.num_code_groups
    if codes.ndim != 2 or codes.shape[1] != groups or codes.shape[0] == 0:
        raise InputError(f"reference codes must have shape [frames, {groups}], got {list(codes.shape)}")
    if int(codes.min()) < 0 or int(codes.max()) >= tk.code_predictor.vocab_size:
        raise InputError(f"reference codes must lie in 0..{tk.code_predictor.vocab_size - 1}")
    if not hasattr(model, "embed_frame"):
        raise ModelError("this model object cannot embed reference frames (no embed_frame)")

    ref = tokenizer.encode(ref_text_template(voice.ref_text))
    token_ids["ref"] = ref
    ref_ids = ref[3:-2]
    x_ids = ref_ids + text_ids
    X = torch.cat([T(x_ids), Eo[None]], dim=0)
    x_ids = x_ids + [eos_id]
    K = codes.shape[0]
    Y = torch.cat([C([tk.codec_bos_id]), model.embed_frame(codes)], dim=0)
    y_rows: list[Any] = [tk.codec_bos_id] + [("frame", k) for k in range(K)]

    if non_streaming:
        body = torch.cat([X + C([tk.codec_pad_id] * X.shape[0]), Y + P], dim=0)
        rows = [(i, tk.codec_pad_id) for i in x_ids] + [(pad_id, y) for y in y_rows]
        return body, rows, P[None], [pad_id]
    nx, ny = X.shape[0], Y.shape[0]
    if nx > ny:
        rows = [(x_ids[j], y_rows[j]) for j in range(ny)]
        return X[:ny] + Y, rows, X[ny:], x_ids[ny:]
    X = torch.cat([X, P.expand(ny - nx, -1)], dim=0)
    x_ids = x_ids + [pad_id] * (ny - nx)
    rows = [(x_ids[j], y_rows[j]) for j in range(ny)]
    return X + Y, rows, P[None], [pad_id]
