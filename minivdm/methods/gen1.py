r"""Gen-1: editing a video by structure and content (Esser et al., 2023, arXiv:2302.03011).

A video is factored into its **structure** s, what stays when the video is edited (shapes, positions and how
they move), and its **content** c, what the edit changes (colours, textures, style). The model learns

    p(x | s, c),    trained with   L = E || v_theta([z_t ; s], t, c) - v ||^2,

where s = depth maps of the video's own frames and c = the CLIP image embedding of one of its own frames (no
captions needed: any video trains it). To edit, keep the source's s and give c from another image (or from
a text through a prior, ``minivdm.models.clip_prior``), then sample from noise.

**Structure fidelity t_s.** Depth maps carry more than geometry (fine edges hint at texture, and a silhouette
fixes a shape exactly), so a content edit that asks for something else fights the structure. Gen-1 trains on
structure with varying amounts of detail and lets the user choose: here the depth map is blurred t_s times,

    s_{t_s} = up( down^{t_s}(d) ),     down = 2x2 average pooling,  up = bilinear back to the latent size,

so t_s = 0 is the exact depth, and each level halves the resolution the model sees (our concrete choice of
Gen-1's blur schedule; we do not give t_s to the network separately, the blurred map shows its level).
t_s is drawn uniformly from {0, ..., T_s} during training and chosen at inference.

**Guidance on content.** During training c is dropped (replaced by the null content, zeros) 10% of the time;
at sampling, classifier-free guidance pushes away from the content-free prediction with scale w:

    v_hat = v(z_t, s, 0) + w [ v(z_t, s, c) - v(z_t, s, 0) ].

The structure stays in both branches, so guidance strengthens the content, never the geometry.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange

from minivdm.validation import check_tensor, check_video


def blur_structure(depth: torch.Tensor, t_s: int | torch.Tensor) -> torch.Tensor:
    """s_{t_s}: each clip's depth (B, S, T, H, W) pooled 2x2 t_s times, then brought back to H x W bilinearly.
    ``t_s`` is one level for the batch or a (B,) tensor of levels; 0 returns the depth as it is."""
    check_video(depth, "depth")
    height, width = depth.shape[-2:]
    levels = torch.as_tensor(t_s).reshape(-1).long()
    if levels.numel() not in (1, depth.shape[0]) or (levels < 0).any():
        raise ValueError(f"t_s must be an int >= 0 or a (B,) = ({depth.shape[0]},) tensor of them, got {t_s!r}")
    deepest = int(levels.max())
    if min(height, width) < 2**deepest:
        raise ValueError(f"t_s = {deepest} halves a {height}x{width} map below one pixel; the largest level for this "
                         f"size is {int(math.log2(min(height, width)))}")
    levels = levels.expand(depth.shape[0])
    out = depth.clone()
    frames = rearrange(depth, "b s t h w -> b (s t) h w")
    for level in levels.unique().tolist():
        if level == 0:
            continue
        pick = levels == level
        small = F.avg_pool2d(frames[pick], kernel_size=2**level)   # = 2x2 pooling applied ``level`` times
        blurred = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)
        out[pick] = rearrange(blurred, "b (s t) h w -> b s t h w", s=depth.shape[1])
    return out


def depth_to_structure(depth: torch.Tensor, size: tuple[int, int], t_s: int = 0) -> torch.Tensor:
    """The structure input from a clip's depth (B, 1, T, H, W) of any size (a depth estimator's output): resized
    to the latent ``size`` (area averaging), scaled to [-1, 1] by each clip's min and max (over all its frames,
    so that the scaling does not flicker from frame to frame), blurred to level t_s."""
    check_video(depth, "depth")
    if depth.shape[1] != 1:
        raise ValueError(f"depth must be (B, 1, T, H, W), one map per frame, got {tuple(depth.shape)}")
    frames = depth.shape[2]
    resized = F.interpolate(rearrange(depth.float(), "b c t h w -> (b t) c h w"), size=size, mode="area")
    resized = rearrange(resized, "(b t) c h w -> b c t h w", t=frames)
    low = resized.amin(dim=(1, 2, 3, 4), keepdim=True)
    high = resized.amax(dim=(1, 2, 3, 4), keepdim=True)
    scaled = 2 * (resized - low) / (high - low).clamp(min=1e-8) - 1
    return blur_structure(scaled, t_s).to(depth.dtype)


def content_tokens(image_embeddings: torch.Tensor) -> torch.Tensor:
    """c: CLIP image embeddings (B, D) -> one cross-attention token each, (B, 1, D), scaled to norm sqrt(D)
    (e / ||e|| * sqrt(D)): the size, per channel, of the layer-normed text states the cross-attention was
    trained on."""
    check_tensor(image_embeddings, "image_embeddings", ndim=2, layout="(B, D)", floating=True)
    width = image_embeddings.shape[1]
    return (F.normalize(image_embeddings, dim=-1) * math.sqrt(width))[:, None]


def null_content(content: torch.Tensor) -> torch.Tensor:
    """The dropped content of classifier-free guidance: a zero token (cross-attention then adds nothing)."""
    return torch.zeros_like(content)


@torch.no_grad()
def edit_video(model, structure: torch.Tensor, content: torch.Tensor, schedule, times: torch.Tensor, *,
               z_start: torch.Tensor, guidance_scale: float = 3.0, prediction_type: str = "v",
               step_ends: torch.Tensor | None = None) -> torch.Tensor:
    """Sample p(x | s, c) from ``z_start`` (noise, (B, C, T, H, W)) along ``times``: ``model(z_t, t, c, s)`` with
    classifier-free guidance on the content (scale w = ``guidance_scale``; 1 = plain conditional sampling)."""
    from minivdm.diffusion import guided_model, sample

    check_video(structure, "structure")
    check_video(z_start, "z_start")
    batch = z_start.shape[0]
    if structure.shape[0] != batch or content.shape[0] != batch:
        raise ValueError(f"structure, content and z_start need one entry per clip: {structure.shape[0]}, "
                         f"{content.shape[0]} and {batch}")

    def conditioned(z_t, t, c):  # guidance runs both branches in one batch of 2B: the structure goes to both
        return model(z_t, t, c, structure.repeat(z_t.shape[0] // batch, 1, 1, 1, 1))

    if guidance_scale == 1.0:
        model_fn = lambda z_t, t: conditioned(z_t, t, content)  # noqa: E731
    else:
        model_fn = guided_model(conditioned, content, null_content(content), guidance_scale)
    return sample(model_fn, z_start, schedule, times, prediction_type=prediction_type, progress=False,
                  step_ends=step_ends)
