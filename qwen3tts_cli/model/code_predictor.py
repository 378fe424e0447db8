"""The code predictor ("sub-talker", §4): from the talker's hidden state and the first code of a
frame it predicts the 15 residual codes, one small decoder pass per group.

Parameter names equal the checkpoint names under ``talker.code_predictor.``. ``E_k``
(``model.codec_embedding[k-1]``) embeds group k; ``lm_head[k-1]`` predicts group k. Positions
restart at 0 every frame; the 16-slot static cache is simply overwritten (reads stop at the
current position), so nothing is reallocated or cleared between frames.
"""

from __future__ import annotations

import torch
from torch import nn

from ..io.config import CodePredictorConfig, TalkerConfig
from .layers import KVCache, RMSNorm, attention_mask, decoder_stack, rope_cos_sin
from .sampling import pick


class CodePredictorModel(nn.Module):
    def __init__(self, cfg: CodePredictorConfig, talker_hidden: int):
        super().__init__()
        # Embeddings are talker-wide: they are also summed into the talker's next input.
        self.codec_embedding = nn.ModuleList(
            nn.Embedding(cfg.vocab_size, talker_hidden) for _ in range(cfg.num_code_groups - 1))
        self.layers = decoder_stack(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class CodePredictor(nn.Module):
    def __init__(self, talker_cfg: TalkerConfig):
        super().__init__()
        cfg = talker_cfg.code_predictor
        self.cfg = cfg
        self.n_groups = talker_cfg.num_code_groups
        self.model = CodePredictorModel(cfg, talker_cfg.hidden_size)
        self.lm_head = nn.ModuleList(
            nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False) for _ in range(self.n_groups - 1))
        if cfg.hidden_size != talker_cfg.hidden_size:
            self.small_to_mtp_projection = nn.Linear(talker_cfg.hidden_size, cfg.hidden_size, bias=True)
        else:
            self.small_to_mtp_projection = nn.Identity()
        self.max_batch = 0
        self.cache_version = 0  # bumped whenever the cache buffers are replaced (CUDA graphs hold them)

    def setup_cache(self, max_batch: int, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> None:
        ref = self.model.codec_embedding[0].weight  # float in every mode (w8a8 quantizes the heads)
        device = torch.device(device) if device is not None else ref.device
        dtype = dtype or ref.dtype
        cache = self.model.layers[0].self_attn.kv_cache
        if (cache is not None and max_batch <= self.max_batch and cache.k_cache.device == device
                and cache.k_cache.dtype == dtype):
            return
        self.max_batch = max_batch
        self.cache_version += 1
        for layer in self.model.layers:
            a = layer.self_attn
            a.kv_cache = KVCache(max_batch, self.n_groups, a.n_kv_heads, a.head_dim, dtype, device)
        pos = torch.arange(self.n_groups, device=device)
        self._pos = pos
        self._prefill_mask = attention_mask(pos[:2], pos[:2])
        self._cos, self._sin = rope_cos_sin(pos, self.cfg.head_dim, self.cfg.rope_theta, dtype)

    def forward(self, x: torch.Tensor, start: int) -> torch.Tensor:
        """x [B, L, talker_H] at positions start..start+L-1 -> final-normed hidden [B, L, cp_H]."""
        L = x.shape[1]
        x = self.small_to_mtp_projection(x)
        input_pos = self._pos[start:start + L]
        cos, sin = self._cos[start:start + L], self._sin[start:start + L]
        mask = self._prefill_mask if (start == 0 and L == 2) else (
            None if L == 1 else attention_mask(input_pos, self._pos[:start + L]))
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, input_pos, start + L)
        return self.model.norm(x)

    @torch.inference_mode()
    def predict(self, past_hidden: torch.Tensor, c0_emb: torch.Tensor, do_sample: bool = False,
                temperature: float = 0.9, top_k: int = 50, top_p: float = 1.0,
                generator: torch.Generator | None = None, return_logits: bool = False,
                forced: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """One frame's residual codes, without host syncs.

        past_hidden [B, H]: the talker's final-normed state at the position that produced c0;
        c0_emb [B, H]: the talker's codec embedding of c0.
        Returns codes [B, G-1], the frame embedding F = C(c0) + sum_g E_g(c_g) [B, H] (one summation
        in the model dtype, as the reference) and, if asked, fp32 logits [B, G-1, V].
        ``forced`` [B, G-1]: teacher forcing, these codes instead of the picks (logits still computed).
        """
        self.setup_cache(past_hidden.shape[0], past_hidden.device, past_hidden.dtype)
        h = self(torch.stack((past_hidden, c0_emb), dim=1), 0)[:, -1]
        codes, embs, logits_out = [], [c0_emb], []
        for g in range(1, self.n_groups):
            if g > 1:
                h = self(embs[-1][:, None], g)[:, -1]
            logits = self.lm_head[g - 1](h)
            if return_logits:
                logits_out.append(logits.float())
            c = pick(logits, do_sample, temperature, top_k, top_p, generator) if forced is None else forced[:, g - 1]
            codes.append(c)
            embs.append(self.model.codec_embedding[g - 1](c))
        frame = torch.stack(embs, dim=1).sum(1)
        return (torch.stack(codes, dim=1), frame,
                torch.stack(logits_out, dim=1) if return_logits else None)
