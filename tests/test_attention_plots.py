"""Chapter-3 pictures: the perturbation response shows which axes a layer mixes, the attention weights
are the ones the layer really uses, and the figures carry titles and axis labels."""

import pytest
import torch
from einops import rearrange
from torch import nn

from minivdm.nn.relative_position import TemporalAttention, joint_video_image_mask
from minivdm.viz.attention_plots import (
    perturbation_response,
    plot_frame_mask,
    plot_perturbation_response,
    plot_temporal_attention,
    record_inputs,
    temporal_attention_weights,
)

FRAMES = 5


def _temporal_layer(seed: int = 0) -> TemporalAttention:
    torch.manual_seed(seed)
    layer = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=3).eval()
    with torch.no_grad():  # the output projection and biases start at zero: randomise them so every path acts
        layer.attention.to_out[0].weight.normal_(0.0, 0.3)
        layer.bias_b.table.normal_()
    return layer


def _on_video(module: nn.Module):
    def layer_fn(video):
        out = module(rearrange(video, "b c t h w -> (b t) c h w"), FRAMES)
        return rearrange(out, "(b t) c h w -> b c t h w", t=FRAMES)
    return layer_fn


def test_temporal_attention_moves_only_the_nudged_pixel_across_frames():
    features = torch.randn(1, 8, FRAMES, 4, 6)
    response = perturbation_response(_on_video(_temporal_layer()), features, frame=2, pixel=(1, 3))
    assert response.shape == (FRAMES, 4, 6)
    assert (response[:, 1, 3] > 0).all()  # every frame at that pixel
    response[:, 1, 3] = 0
    assert torch.equal(response, torch.zeros_like(response))  # nothing anywhere else


def test_a_per_frame_convolution_stays_inside_the_nudged_frame():
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1)
    layer_fn = lambda video: rearrange(conv(rearrange(video, "b c t h w -> (b t) c h w")),  # noqa: E731
                                       "(b t) c h w -> b c t h w", t=FRAMES)
    response = perturbation_response(layer_fn, torch.randn(1, 3, FRAMES, 6, 6), frame=1, pixel=(3, 3))
    assert [t for t in range(FRAMES) if response[t].any()] == [1]
    assert torch.equal(response[1] > 0, torch.nn.functional.pad(torch.ones(3, 3, dtype=torch.bool), (2, 1, 2, 1)))


def test_attention_weights_are_the_layers_own():
    layer = _temporal_layer()
    x = torch.randn(2 * FRAMES, 8, 3, 3)  # ((B T), C, H, W)
    num_images = 2
    weights = temporal_attention_weights(layer, x, FRAMES, num_images=num_images)
    assert weights.shape == (2, 3, 3, 2, FRAMES, FRAMES)
    torch.testing.assert_close(weights.sum(-1), torch.ones(2, 3, 3, 2, FRAMES))
    assert (weights[..., ~joint_video_image_mask(FRAMES, num_images)] == 0).all()  # masked pairs get no weight
    # the layer's output rebuilt from these weights: x + to_out(A V)
    tokens = layer.norm(rearrange(x, "(b t) c h w -> (b h w) t c", t=FRAMES))
    v = rearrange(layer.attention.to_v(tokens), "n t (heads d) -> n heads t d", heads=2)
    mixed = rearrange(weights, "b h w heads i j -> (b h w) heads i j") @ v
    out = layer.attention.to_out[0](rearrange(mixed, "n heads t d -> n t (heads d)"))
    rebuilt = x + rearrange(out, "(b h w) t c -> (b t) c h w", h=3, w=3, t=FRAMES)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt, layer(x, FRAMES, num_images=num_images), atol=1e-5, rtol=1e-5)


def test_attention_weights_of_a_text_modulated_layer_use_the_recorded_caption():
    torch.manual_seed(0)
    layer = TemporalAttention(channels=8, heads=2, dim_head=4, max_distance=3, condition_dim=4).eval()
    with torch.no_grad():
        layer.modulation.weight.normal_()
    x, condition = torch.randn(FRAMES, 8, 2, 2), torch.randn(FRAMES, 4)
    recorded = record_inputs({"temporal": layer}, lambda: layer(x, FRAMES, condition=condition))
    args, kwargs = recorded["temporal"]
    weights = temporal_attention_weights(layer, args[0], FRAMES, **kwargs)
    torch.testing.assert_close(weights, rearrange(layer.attention_weights(layer.tokens(x, FRAMES, condition), FRAMES),
                                                  "(b h w) heads i j -> b h w heads i j", h=2, w=2))
    other = temporal_attention_weights(layer, x, FRAMES, condition=torch.randn(FRAMES, 4))
    assert (other - weights).abs().max() > 1e-3  # the caption changes where each frame looks
    with pytest.raises(ValueError, match="condition must be"):
        temporal_attention_weights(layer, x, FRAMES)


def test_record_inputs_returns_each_modules_arguments():
    layer = _temporal_layer()
    x = torch.randn(FRAMES, 8, 2, 2)
    recorded = record_inputs({"temporal": layer}, lambda: layer(x, FRAMES, num_images=1))
    args, kwargs = recorded["temporal"]
    assert args[0] is x and args[1] == FRAMES and kwargs == {"num_images": 1}
    with pytest.raises(ValueError, match="not called"):
        record_inputs({"temporal": layer, "unused": nn.Linear(2, 2)}, lambda: layer(x, FRAMES))


def test_bad_pixel_is_rejected():
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        perturbation_response(lambda v: v, torch.zeros(1, 2, 3, 4, 4), frame=3, pixel=(0, 0))


def test_figures_have_titles_and_labels():
    response = torch.zeros(FRAMES, 4, 4)
    response[:, 1, 1] = 1.0
    figure = plot_perturbation_response(response, 2, (1, 1), title="temporal attention")
    assert "temporal attention" in figure._suptitle.get_text() and "[0, 1, 2, 3, 4]" in figure._suptitle.get_text()
    assert figure.axes[0].get_xlabel() and figure.axes[0].get_ylabel()
    layer = _temporal_layer()
    weights = temporal_attention_weights(layer, torch.randn(FRAMES, 8, 2, 2), FRAMES)
    figure = plot_temporal_attention(weights[0, 0, 0, 1], layer.bias_b.table, 1, title="t")
    assert all(axis.get_title() and axis.get_xlabel() and axis.get_ylabel() for axis in figure.axes[:2])
    changes = {"masked": torch.tensor([0, 0, 0, 1.0, 0])}
    figure = plot_frame_mask(joint_video_image_mask(FRAMES, 2), changes, 2, title="m")
    assert all(axis.get_title() and axis.get_xlabel() and axis.get_ylabel() for axis in figure.axes)
