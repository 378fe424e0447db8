"""The talker: a Qwen3 decoder over summed text-track + codec-track embeddings (§3).

Parameter names equal the checkpoint names under ``talker.`` so loading is a direct mapping.
The talker never looks tokens up inside ``forward``: the caller builds every input row with
``embed_text`` / ``embed_codec``. MRoPE reduces to plain 1-D RoPE for every TTS input (§3.3).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import nn

from ..io.config import TalkerConfig
from .layers import CacheSpan, KVCache, RMSNorm, attention_mask, decoder_stack, rope_cos_sin


class TextProjection(nn.Module):
    def __init__(self, text_hidden: int, hidden: int):
        super().__init__()
        self.linear_fc1 = nn.Linear(text_hidden, text_hidden, bias=True)
        self.linear_fc2 = nn.Linear(text_hidden, hidden, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear_fc2(F.silu(self.linear_fc1(x)))


class TalkerModel(nn.Module):
    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.text_embedding = nn.Embedding(cfg.text_vocab_size, cfg.text_hidden_size)
        self.codec_embedding = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = decoder_stack(cfg)
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)


class Talker(nn.Module):
    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        self.model = TalkerModel(cfg)
        self.text_projection = TextProjection(cfg.text_hidden_size, cfg.hidden_size)
        self.codec_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        self.max_batch = 0
        self.max_seq = 0
        self.cache_version = 0  # bumped whenever the cache buffers are replaced (CUDA graphs hold them)

    # -- input rows ----------------------------------------------------------------------------
    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.text_projection(self.model.text_embedding(ids))

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        return self.model.codec_embedding(ids)

    # -- cache ---------------------------------------------------------------------------------
    def setup_cache(self, max_batch: int, max_seq: int, device: torch.device | str | None = None,
                    dtype: torch.dtype | None = None) -> None:
        """(Re)allocate the static KV cache; keeps the current one if it is already large enough."""
        ref = self.codec_head.weight
        device = torch.device(device) if device is not None else ref.device
        dtype = dtype or ref.dtype
        if (max_batch <= self.max_batch and max_seq <= self.max_seq
                and self.model.layers[0].self_attn.kv_cache.k_cache.device == device
                and self.model.layers[0].self_attn.kv_cache.k_cache.dtype == dtype):
            return
        self.max_batch, self.max_seq = max_batch, max_seq
        self.cache_version += 1
        for layer in self.model.layers:
            a = layer.self_attn
            a.kv_cache = KVCache(max_batch, max_seq, a.n_kv_heads, a.head_dim, dtype, device)

    def grow_cache(self, max_seq: int) -> None:
        """Enlarge the cache to ``max_seq`` keeping what is written (generation of unknown length)."""
        if max_seq <= self.max_seq:
            return
        for layer in self.model.layers:
            a = layer.self_attn
            old = a.kv_cache
            new = KVCache(self.max_batch, max_seq, a.n_kv_heads, a.head_dim, old.k_cache.dtype, old.k_cache.device)
            new.k_cache[:, :, :self.max_seq].copy_(old.k_cache)
            new.v_cache[:, :, :self.max_seq].copy_(old.v_cache)
            a.kv_cache = new
        self.max_seq = max_seq
        self.cache_version += 1

    # -- network -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None = None,
                left_pad: torch.Tensor | None = None, masked: bool = False) -> torch.Tensor:
        """x [B, L, H] at cache slots ``input_pos`` [L] -> final-normed hidden [B, L, H].

        Writes keys/values into the static cache. ``kv_len`` (a host int, e.g. last position + 1)
        limits attention to the filled part of the cache; None attends over the whole buffer.
        ``masked``: kv_len is only an upper bound (CUDA-graph buckets), so slots after the query
        are masked on the device.

        ``left_pad`` [B] (a left-padded batch, §3.8): row b's first left_pad[b] slots are padding.
        Its RoPE positions are slot - left_pad[b], so its first real row has position 0 exactly as
        when it runs alone, and it never attends to its padding slots.
        """
        L = x.shape[1]
        if input_pos.dim() == 2:
            return self._forward_rows(x, input_pos, kv_len)
        if left_pad is None:
            cos, sin = rope_cos_sin(input_pos, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        else:
            cos, sin = rope_cos_sin(input_pos[None] - left_pad[:, None], self.cfg.head_dim,
                                    self.cfg.rope_theta, x.dtype)
            cos, sin = cos[:, None], sin[:, None]  # [B, 1, L, D]: one set of angles per row
        if L == 1 and kv_len is not None and left_pad is None and not masked:
            mask = None  # a single query at the newest position sees every filled slot
        else:
            k_pos = torch.arange(kv_len if kv_len is not None else self.max_seq, device=x.device)
            mask = attention_mask(input_pos, k_pos)
            if left_pad is not None:
                real = k_pos[None, None, :] >= left_pad[:, None, None]
                # A padding query would see no key at all (a NaN row); let it see itself instead.
                mask = (mask[None] & real) | (input_pos[None, :, None] == k_pos[None, None, :])
                mask = mask[:, None]  # [B, 1, L, Lk]
            # The queries are the newest slots of a filled prefix: flash-attn can run it (CUDA).
            B = x.shape[0]
            end = (input_pos[-1:] + 1).to(torch.int32).expand(B).contiguous()
            mask = CacheSpan(mask, end, None if left_pad is None else left_pad.to(torch.int32))
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, input_pos, kv_len)
        return self.model.norm(x)

    def _forward_rows(self, x: torch.Tensor, input_pos: torch.Tensor, kv_len: int | None) -> torch.Tensor:
        """``forward`` with ``input_pos`` [B, L]: every row at its own cache slots, which are also
        its RoPE positions; row b sees its slots up to each query's own (causal per row)."""
        cos, sin = rope_cos_sin(input_pos, self.cfg.head_dim, self.cfg.rope_theta, x.dtype)
        cos, sin = cos[:, None], sin[:, None]  # [B, 1, L, D]
        k_pos = torch.arange(kv_len if kv_len is not None else self.max_seq, device=x.device)
        mask = (k_pos[None, None, :] <= input_pos[:, :, None])[:, None]  # [B, 1, L, Lk]
        mask = CacheSpan(mask, (input_pos[:, -1] + 1).to(torch.int32), None)
        for layer in self.model.layers:
            x = layer(x, cos, sin, mask, input_pos, kv_len)
        return self.model.norm(x)

    @contextlib.contextmanager
    def cache_rows(self, start: int, stop: int):
        """Run calls on cache rows start..stop-1 only (as rows 0..): a request that joins a running
        batch is prefilled into its own row."""
        saved = [layer.self_attn.kv_cache for layer in self.model.layers]
        try:
            for layer, cache in zip(self.model.layers, saved):
                layer.self_attn.kv_cache = cache.rows(start, stop)
            yield
        finally:
            for layer, cache in zip(self.model.layers, saved):
                layer.self_attn.kv_cache = cache

    def logits(self, h: torch.Tensor) -> torch.Tensor:
        return self.codec_head(h)
