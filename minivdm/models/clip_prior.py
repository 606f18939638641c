r"""A prior from CLIP text embeddings to CLIP image embeddings (DALL-E 2's idea, Ramesh et al., 2022,
arXiv:2204.06125, Sec. 2.1; Gen-1 uses one to edit by text, Esser et al., 2023, Sec. 3.3).

A caption's embedding u and the embeddings e of the images it describes are close in CLIP space but not
equal (the "modality gap"), so a model conditioned on image embeddings cannot take u as it is. The prior
learns the map u -> e from (caption, image) pairs:

    e_hat = normalize( MLP(u) ),        trained with   L = 1 - <e_hat, e>   (cosine distance),

a deterministic regression prior: it predicts the direction of the images a caption describes, not a sample
among them (DALL-E 2 samples e with a diffusion prior; for content that a caption names completely, as in
the toy world, the mean direction is what an edit needs).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from minivdm.validation import check_tensor


class ClipPrior(nn.Module):
    """``prior(text_embeddings)`` (B, D_text) -> unit image embeddings (B, D_image)."""

    def __init__(self, text_dim: int, image_dim: int, hidden: int = 256):
        super().__init__()
        self.text_dim, self.image_dim = text_dim, image_dim
        self.mlp = nn.Sequential(nn.Linear(text_dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, image_dim))

    def forward(self, text_embeddings: torch.Tensor) -> torch.Tensor:
        check_tensor(text_embeddings, "text_embeddings", ndim=2, layout="(B, D_text)", floating=True)
        if text_embeddings.shape[1] != self.text_dim:
            raise ValueError(f"text_embeddings must be (B, {self.text_dim}) (the CLIP text embedding's width), "
                             f"got {tuple(text_embeddings.shape)}")
        return F.normalize(self.mlp(text_embeddings), dim=-1)


def prior_loss(prior: ClipPrior, text_embeddings: torch.Tensor, image_embeddings: torch.Tensor) -> torch.Tensor:
    """1 - cos(e_hat, e), averaged over the batch."""
    return (1 - (prior(text_embeddings) * F.normalize(image_embeddings, dim=-1)).sum(-1)).mean()
