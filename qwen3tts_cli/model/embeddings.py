"""The talker's input rows (§3.4): a text-track vector T(id), a codec-track vector C(id), and a
whole frame F(codes) = C(c0) + sum_g E_g(c_g) for reference frames of a cloned voice."""

from __future__ import annotations

import torch

from .code_predictor import CodePredictor
from .talker import Talker


class Embeddings:
    def __init__(self, talker: Talker, predictor: CodePredictor):
        self.talker, self.predictor = talker, predictor

    @property
    def device(self) -> torch.device:
        return self.talker.codec_head.weight.device

    def embed_text(self, ids: torch.Tensor) -> torch.Tensor:
        return self.talker.embed_text(ids)

    def embed_codec(self, ids: torch.Tensor) -> torch.Tensor:
        return self.talker.embed_codec(ids)

    def embed_frame(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [K, 16] -> [K, H]: C(c0) + sum_g E_g(c_g), one summation in the model dtype (as the
        code predictor sums a generated frame)."""
        codes = codes.to(self.device)
        embs = [self.talker.embed_codec(codes[:, 0])]
        embs += [emb(codes[:, g + 1]) for g, emb in enumerate(self.predictor.model.codec_embedding)]
        return torch.stack(embs, dim=1).sum(1)
