"""Video LDM's alpha-merged temporal layers (chapter 9): parity with diffusers' modules of the same layout
(``AlphaBlender``, ``TemporalResnetBlock``, ``SpatioTemporalResBlock``, ``TemporalBasicTransformerBlock``,
``TransformerSpatioTemporalModel``) on tiny random weights, saved to safetensors and read through our loader;
the merge formula; the identity at init."""

import pytest
import torch
from safetensors.torch import save_file
from sd_fixtures import randomise_parameters

from minivdm.io.checkpoints import load_into, read_safetensors
from minivdm.nn.frames import clip_length
from minivdm.nn.temporal_merge import (AlphaMerge, SpatioTemporalResBlock, SpatioTemporalTransformer,
                                       TemporalResnetBlock, TemporalTransformerBlock)

diffusers = pytest.importorskip("diffusers")
from diffusers.models.attention import TemporalBasicTransformerBlock  # noqa: E402
from diffusers.models.resnet import AlphaBlender  # noqa: E402
from diffusers.models.resnet import SpatioTemporalResBlock as DiffusersSpatioTemporalResBlock  # noqa: E402
from diffusers.models.resnet import TemporalResnetBlock as DiffusersTemporalResnetBlock  # noqa: E402
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel  # noqa: E402

def randomised(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    return randomise_parameters(module, seed, scale=0.2)


B, T, C, H, W, TEMB, TEXT = 2, 5, 32, 4, 6, 48, 24


def through_our_loader(reference: torch.nn.Module, ours: torch.nn.Module, tmp_path) -> torch.nn.Module:
    """reference's weights saved as safetensors, then loaded into ours by name and shape (strict)."""
    path = tmp_path / "reference.safetensors"
    save_file({key: value.contiguous() for key, value in reference.state_dict().items()}, str(path))
    load_into(ours, read_safetensors(path), strict=True)
    return ours.eval()


def inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    return (torch.randn(B * T, C, H, W, generator=generator), torch.randn(B * T, TEMB, generator=generator),
            torch.randn(B * T, 7, TEXT, generator=generator))


INDICATORS = {"video": torch.zeros(B, T), "some frames are images": torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0.]])}


@pytest.mark.parametrize("indicator", INDICATORS, ids=list(INDICATORS))
def test_alpha_merge_matches_diffusers_alpha_blender(indicator):
    reference = AlphaBlender(alpha=0.3, merge_strategy="learned_with_images")
    ours = AlphaMerge(0.3)
    ours.load_state_dict(reference.state_dict())
    z, z_t = torch.randn(2, B, C, T, H, W)
    image_only = INDICATORS[indicator]
    expected = reference(z, z_t, image_only_indicator=image_only)
    torch.testing.assert_close(ours(z, z_t, image_only), expected, rtol=0, atol=1e-6)
    tokens, tokens_t = torch.randn(2, B * T, H * W, C)
    torch.testing.assert_close(ours(tokens, tokens_t, image_only), reference(tokens, tokens_t, image_only), rtol=0, atol=1e-6)


def test_alpha_merge_is_the_papers_formula():
    merge = AlphaMerge(-0.7)
    z, z_t = torch.randn(2, 3, 2, 4)  # ((B T), N, C) with B = 1, T = 3
    alpha = 1 / (1 + torch.exp(torch.tensor(0.7)))
    torch.testing.assert_close(merge(z, z_t), alpha * z + (1 - alpha) * z_t)
    only_images = torch.ones(1, 3, dtype=torch.bool)
    torch.testing.assert_close(merge(z, z_t, only_images), z, msg="alpha = 1 on image-only frames: the spatial layer alone")


def test_temporal_resnet_block_matches_diffusers(tmp_path):
    reference = randomised(DiffusersTemporalResnetBlock(C, 2 * C, temb_channels=TEMB, eps=1e-6), 0)
    ours = through_our_loader(reference, TemporalResnetBlock(C, 2 * C, TEMB, groups=32, eps=1e-6), tmp_path)
    x = torch.randn(B, C, T, H, W)
    temb = torch.randn(B, T, TEMB)
    with torch.no_grad():
        torch.testing.assert_close(ours(x, temb), reference(x, temb), rtol=0, atol=1e-5)


@pytest.mark.parametrize("indicator", INDICATORS, ids=list(INDICATORS))
def test_spatio_temporal_res_block_matches_diffusers(tmp_path, indicator):
    reference = randomised(DiffusersSpatioTemporalResBlock(C, 2 * C, temb_channels=TEMB, eps=1e-6, merge_factor=0.2), 2)
    ours = through_our_loader(reference, SpatioTemporalResBlock(C, 2 * C, TEMB, groups=32, eps=1e-6), tmp_path)
    x, temb, _ = inputs()
    with torch.no_grad():
        expected = reference(x, temb, image_only_indicator=INDICATORS[indicator])
        torch.testing.assert_close(ours(x, temb, num_frames=T, image_only=INDICATORS[indicator]), expected, rtol=0, atol=1e-5)
        with clip_length(ours, T):  # the way an inflated U-Net tells it T
            torch.testing.assert_close(ours(x, temb, image_only=INDICATORS[indicator]), expected, rtol=0, atol=1e-5)


def test_temporal_transformer_block_matches_diffusers(tmp_path):
    heads, dim_head = 2, C // 2
    reference = randomised(TemporalBasicTransformerBlock(C, C, heads, dim_head, cross_attention_dim=TEXT), 3)
    ours = through_our_loader(reference, TemporalTransformerBlock(C, heads, dim_head, TEXT), tmp_path)
    tokens = torch.randn(B * T, H * W, C)
    context = torch.randn(B * H * W, 7, TEXT)
    with torch.no_grad():
        torch.testing.assert_close(ours(tokens, T, context), reference(tokens, T, context), rtol=0, atol=1e-5)


@pytest.mark.parametrize("indicator", INDICATORS, ids=list(INDICATORS))
def test_spatio_temporal_transformer_matches_diffusers(tmp_path, indicator):
    heads = 2
    reference = randomised(TransformerSpatioTemporalModel(heads, C // heads, C, num_layers=2, cross_attention_dim=TEXT), 4)
    ours = through_our_loader(reference, SpatioTemporalTransformer(heads, C // heads, C, 2, TEXT, 32, True), tmp_path)
    x, _, text = inputs(5)
    with torch.no_grad():
        expected = reference(x, text, image_only_indicator=INDICATORS[indicator]).sample
        torch.testing.assert_close(ours(x, text, num_frames=T, image_only=INDICATORS[indicator]), expected, rtol=0, atol=1e-5)


def test_identity_at_init_for_any_alpha():
    torch.manual_seed(0)
    x, temb, text = inputs(6)
    block = randomised(SpatioTemporalResBlock(C, 2 * C, TEMB), 7)
    transformer = randomised(SpatioTemporalTransformer(2, C // 2, C, 1, TEXT), 8)
    spatial_block = block.spatial_res_block
    with torch.no_grad():
        block.reset_temporal_to_identity()
        transformer.reset_temporal_to_identity()
        block.time_mixer.mix_factor.fill_(-2.0)  # mostly temporal: still the image layer at init
        transformer.time_mixer.mix_factor.fill_(-2.0)
        torch.testing.assert_close(block(x, temb, num_frames=T), spatial_block(x, temb), rtol=0, atol=1e-6)
        image_transformer = super(SpatioTemporalTransformer, transformer).forward
        torch.testing.assert_close(transformer(x, text, num_frames=T), image_transformer(x, text), rtol=0, atol=1e-6)


def test_bad_input_is_refused_by_name():
    block = SpatioTemporalResBlock(C, C, TEMB)
    x, temb, _ = inputs()
    with pytest.raises(RuntimeError, match="num_frames"):
        block(x, temb)
    with pytest.raises(ValueError, match="multiple"):
        block(x, temb, num_frames=3)
    with pytest.raises(ValueError, match=r"image_only must be \(B, T\)"):
        block(x, temb, num_frames=T, image_only=torch.zeros(T, B))
    with pytest.raises(ValueError, match="one shape"):
        AlphaMerge()(torch.zeros(2, 3), torch.zeros(3, 2))
