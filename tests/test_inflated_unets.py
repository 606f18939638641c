"""Make-A-Video's pseudo-3D layers and the two inflations of an image U-Net (chapter 9): each new layer's
formula, identity at init (the inflated model is the image model frame by frame), what the new layers mix,
and that training reaches only them."""

import pytest
import torch
import torch.nn.functional as F

from minivdm.configs.stable_diffusion import TINY
from minivdm.models.make_a_video_unet import MakeAVideoUNet, inflate_for_make_a_video
from minivdm.models.unet_2d_condition import UNet2DConditionModel
from minivdm.models.video_ldm_unet import VideoLDMUNet, inflate_for_video_ldm
from minivdm.nn.frames import clip_length
from minivdm.nn.pseudo3d import Pseudo3DAttention, Pseudo3DConv, TemporalAttention, TemporalConv1d
from minivdm.nn.transformer_2d import Transformer2DModel

INFLATIONS = {"make-a-video": inflate_for_make_a_video, "video-ldm": inflate_for_video_ldm}


def image_unet(dtype=torch.float64) -> UNet2DConditionModel:
    torch.manual_seed(0)
    return UNet2DConditionModel(TINY).to(dtype).eval()


def perturb_new_layers(model, seed: int = 1) -> None:
    """Random values in every added parameter: a model that has trained a little."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if model.is_new(name):
                parameter.add_(0.3 * torch.randn(parameter.shape, generator=generator, dtype=parameter.dtype))


def video_batch(dtype=torch.float64, frames: int = 5):
    generator = torch.Generator().manual_seed(2)
    return (torch.randn(2, 3, frames, 32, 32, generator=generator, dtype=dtype), torch.tensor([0.3, 0.8]),
            torch.randn(2, 6, 64, generator=generator, dtype=dtype))


def frame_by_frame(unet: UNet2DConditionModel, z, t, text):
    frames = [unet(z[:, :, i], t, text) for i in range(z.shape[2])]
    return torch.stack(frames, dim=2)


def test_temporal_conv_starts_as_the_identity_and_is_a_conv_along_time():
    conv = TemporalConv1d(4).double()
    x = torch.randn(2 * 6, 4, 3, 5, dtype=torch.float64)  # (B T), C, H, W with T = 6
    torch.testing.assert_close(conv(x, 6), x, rtol=0, atol=0)
    with torch.no_grad():
        conv.weight.normal_()
        conv.bias.normal_()
    video = x.view(2, 6, 4, 3, 5).permute(0, 2, 1, 3, 4)  # B, C, T, H, W
    expected = F.conv3d(video, conv.weight[:, :, :, None, None], conv.bias, padding=(1, 0, 0))
    torch.testing.assert_close(conv(x, 6), expected.permute(0, 2, 1, 3, 4).reshape_as(x))


def test_pseudo_3d_conv_is_the_image_conv_then_time():
    torch.manual_seed(0)
    image_conv = torch.nn.Conv2d(4, 8, 3, padding=1).double()
    conv = Pseudo3DConv.inflate(image_conv)
    assert conv.weight.dtype == torch.float64 and sorted(name for name, _ in conv.named_parameters()) == \
        ["bias", "temporal.bias", "temporal.weight", "weight"]
    x = torch.randn(3 * 4, 4, 6, 6, dtype=torch.float64)
    torch.testing.assert_close(conv(x, num_frames=4), image_conv(x), rtol=0, atol=0)
    with torch.no_grad():
        conv.temporal.weight.normal_()
    torch.testing.assert_close(conv(x, num_frames=4), conv.temporal(image_conv(x), 4))
    assert not torch.allclose(conv(x, num_frames=4), image_conv(x))


def test_temporal_attention_mixes_only_the_frames_of_one_pixel_in_any_order():
    torch.manual_seed(0)
    attention = TemporalAttention(8, 2).double()
    x = torch.randn(2 * 5, 8, 3, 3, dtype=torch.float64)
    torch.testing.assert_close(attention(x, 5), x, rtol=0, atol=0)
    with torch.no_grad():
        attention.attention.to_out[0].weight.normal_()
    changed = x.clone()
    changed[2, :, 1, 1] += 1.0  # clip 0, frame 3, pixel (1, 1)
    difference = (attention(changed, 5) - attention(x, 5)).abs().amax(dim=1)  # (B T), H, W
    assert difference[0:5, 1, 1].min() > 0, "every frame of that pixel reads the changed frame"
    difference[0:5, 1, 1] = 0
    assert difference.max() == 0, "no other pixel, and no other clip, sees it"
    order = torch.tensor([4, 2, 0, 1, 3])
    shuffled = x.view(2, 5, 8, 3, 3)[:, order].reshape_as(x)
    torch.testing.assert_close(attention(shuffled, 5).view(2, 5, 8, 3, 3), attention(x, 5).view(2, 5, 8, 3, 3)[:, order])


def test_pseudo_3d_attention_holds_the_image_transformer():
    torch.manual_seed(0)
    image = Transformer2DModel(2, 8, 16, 1, 12, norm_num_groups=4).double().eval()
    attention = Pseudo3DAttention.inflate(image)
    x, text = torch.randn(2 * 3, 16, 4, 4, dtype=torch.float64), torch.randn(6, 5, 12, dtype=torch.float64)
    torch.testing.assert_close(attention(x, text, num_frames=3), image(x, text), rtol=0, atol=0)
    with pytest.raises(TypeError, match="Transformer2DModel"):
        Pseudo3DAttention.inflate(attention)


@pytest.mark.parametrize("design", INFLATIONS)
def test_inflated_model_is_the_image_model_frame_by_frame_at_init(design):
    unet = image_unet()
    model = INFLATIONS[design](unet)
    assert model.conv_in.weight.dtype == torch.float64
    z, t, text = video_batch()
    with torch.no_grad():
        expected = frame_by_frame(unet, z, t, text)
        difference = (model(z, t, text) - expected).abs().max().item()
        assert difference <= 1e-6, f"{design}: the inflated model differs from the image model by {difference:.2e}"
        perturb_new_layers(model)
        assert (model(z, t, text) - expected).abs().max() > 1e-3, "the new layers change the output once trained"


@pytest.mark.parametrize("design", INFLATIONS)
def test_new_layers_mix_the_frames(design):
    model = INFLATIONS[design](image_unet())
    perturb_new_layers(model)
    z, t, text = video_batch()
    changed = z.clone()
    changed[:, :, 3] += 0.5
    with torch.no_grad():
        difference = (model(changed, t, text) - model(z, t, text)).abs().amax(dim=(0, 1, 3, 4))
    assert difference[:3].min() > 1e-4, f"{design}: frames 1-3 must read frame 4 (per-frame differences {difference})"


@pytest.mark.parametrize("design", INFLATIONS)
def test_only_the_new_layers_are_trained(design):
    model = INFLATIONS[design](image_unet(torch.float32)).train()
    trainable = model.freeze_image_layers()
    expected_parts = {"make-a-video": (".temporal.",),
                      "video-ldm": (".temporal_res_block.", ".time_mixer.", ".temporal_transformer_blocks.",
                                    ".time_pos_embed.")}[design]
    assert trainable and all(any(part in name for part in expected_parts) for name in trainable)
    assert all(any(part in name for name in trainable) for part in expected_parts), "every kind of new layer trains"
    z, t, text = video_batch(torch.float32)
    model(z, t, text).square().mean().backward()
    reached = {name for name, parameter in model.named_parameters() if parameter.grad is not None}
    assert reached == set(trainable)


def test_video_ldm_keeps_the_image_weights_under_svd_names_and_reports_alphas():
    unet = image_unet(torch.float32)
    model = inflate_for_video_ldm(unet, merge_factor=1.0)
    state = model.state_dict()
    torch.testing.assert_close(state["down_blocks.0.resnets.0.spatial_res_block.conv1.weight"],
                               unet.state_dict()["down_blocks.0.resnets.0.conv1.weight"], rtol=0, atol=0)
    alphas = model.alphas()
    assert "mid_block.resnets.0" in alphas and "mid_block.attentions.0" in alphas
    assert all(abs(alpha - torch.sigmoid(torch.tensor(1.0)).item()) < 1e-7 for alpha in alphas.values())


def test_inflation_and_forward_refuse_bad_input():
    model = inflate_for_make_a_video(image_unet(torch.float32))
    with pytest.raises(TypeError, match="image U-Net"):
        inflate_for_video_ldm(model)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(torch.zeros(2, 3, 32, 32), 0.5, torch.zeros(2, 6, 64))
    with pytest.raises(ValueError, match="one caption per clip"):
        model(torch.zeros(2, 3, 4, 32, 32), 0.5, torch.zeros(3, 6, 64))
    with pytest.raises(TypeError, match="down_block_additional_residuals"):
        model(torch.zeros(1, 3, 4, 32, 32), 0.5, torch.zeros(1, 6, 64), down_block_additional_residuals=[])
    conv = next(module for module in model.modules() if isinstance(module, Pseudo3DConv))
    with pytest.raises(RuntimeError, match="how many"):
        conv(torch.zeros(4, conv.in_channels, 8, 8))
    with clip_length(model, 3), pytest.raises(ValueError, match="multiple"):
        conv(torch.zeros(4, conv.in_channels, 8, 8))
    assert isinstance(model, MakeAVideoUNet) and isinstance(inflate_for_video_ldm(image_unet()), VideoLDMUNet)
