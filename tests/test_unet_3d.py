"""ModelScope's 3D U-Net: the published architecture key for key, diffusers' numbers, and the
factorised space-time property (temporal layers start as the identity, then really mix frames)."""

from dataclasses import replace

import pytest
import torch
from diffusers import UNet3DConditionModel as DiffusersUNet3D
from einops import rearrange
from diffusers.models.resnet import TemporalConvLayer as DiffusersTemporalConvLayer
from diffusers.models.transformers.transformer_temporal import TransformerTemporalModel as DiffusersTransformerTemporal
from safetensors.torch import load_file
from sd_fixtures import assert_same_keys_and_shapes

from minivdm.configs.modelscope import CONFIGS, HF_IDS, MODELSCOPE_T2V, TINY_3D
from minivdm.io.checkpoints import load_into
from minivdm.models.unet_3d_condition import UNet3DConditionConfig, UNet3DConditionModel
from minivdm.nn.temporal import TemporalConvLayer, TransformerTemporalModel

TINY_SHAPE = (2, TINY_3D.in_channels, 4, 16, 16)  # (B, C, T, H, W)


def _diffusers_kwargs(config: UNet3DConditionConfig) -> dict:
    kwargs = config.to_diffusers()
    kwargs.pop("_class_name")
    return kwargs


def _randomise_zero_initialised(model: torch.nn.Module) -> None:
    """Give the temporal layers' last projections random weights, so that the temporal path does something."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if ".conv4." in name or "proj_out" in name:
                parameter.normal_(0.0, 0.05)


def _inputs(seed: int = 1):
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(*TINY_SHAPE, generator=generator)
    text = torch.randn(TINY_SHAPE[0], 7, TINY_3D.cross_attention_dim, generator=generator)
    return sample, torch.tensor([10, 700]), text


@pytest.fixture(scope="module")
def trained_pair(tmp_path_factory):
    """diffusers' tiny 3D U-Net with random weights (temporal layers included), saved and loaded into ours."""
    torch.manual_seed(0)
    theirs = DiffusersUNet3D(**_diffusers_kwargs(TINY_3D)).eval()
    _randomise_zero_initialised(theirs)
    folder = tmp_path_factory.mktemp("tiny_unet_3d")
    theirs.save_pretrained(folder)
    ours = UNet3DConditionModel(TINY_3D).eval()
    report = load_into(ours, load_file(folder / "diffusion_pytorch_model.safetensors"))
    assert report.ok(), report
    return ours, theirs


@pytest.mark.parametrize("config", [MODELSCOPE_T2V, TINY_3D], ids=lambda config: config.name)
def test_architecture_matches_diffusers_key_for_key(config):
    with torch.device("meta"):
        ours = UNet3DConditionModel(config)
        theirs = DiffusersUNet3D(**_diffusers_kwargs(config))
    our_count = assert_same_keys_and_shapes(ours, theirs)
    if config is MODELSCOPE_T2V:
        assert round(our_count / 1e6, 2) == 1411.23


def test_modelscope_config_is_diffusers_default_and_round_trips():
    with torch.device("meta"):
        default = DiffusersUNet3D()  # diffusers' defaults are ModelScope's U-Net (but sample_size=None)
    loaded = UNet3DConditionConfig.from_diffusers({**dict(default.config), "sample_size": 32}, name="modelscope-t2v")
    assert loaded == MODELSCOPE_T2V
    for config in CONFIGS.values():
        assert UNet3DConditionConfig.from_diffusers(config.to_diffusers(), name=config.name) == config
    assert HF_IDS == {"modelscope-t2v": "ali-vilab/text-to-video-ms-1.7b"}


@pytest.mark.parametrize("key, value", [("act_fn", "gelu"), ("num_attention_heads", 8), ("time_cond_proj_dim", 256),
                                        ("downsample_padding", 0), ("attention_head_dim", [64, 64, 64, 64]),
                                        ("norm_num_groups", None), ("_class_name", "UNet2DConditionModel"),
                                        ("layers_per_block", [1, 2, 2, 2]), ("transformer_layers_per_block", 2),
                                        ("mid_block_scale_factor", 2)])
def test_from_diffusers_refuses_unsupported_options(key, value):
    with pytest.raises(ValueError, match=key):
        UNet3DConditionConfig.from_diffusers({**MODELSCOPE_T2V.to_diffusers(), key: value})


def test_every_diffusers_option_is_honoured_or_fixed():
    import inspect

    from minivdm.models.unet_3d_condition import UNET_3D_FIXED_OPTIONS

    parameters = inspect.signature(DiffusersUNet3D.__init__).parameters
    assert set(parameters) - {"self"} == set(UNet3DConditionConfig.__dataclass_fields__) - {"name"} | set(UNET_3D_FIXED_OPTIONS)
    assert all(parameters[key].default == value for key, value in UNET_3D_FIXED_OPTIONS.items())
    with pytest.raises(ValueError, match="a_future_option.*does not know"):
        UNet3DConditionConfig.from_diffusers({**MODELSCOPE_T2V.to_diffusers(), "a_future_option": 1})


def test_matches_diffusers_numerically(trained_pair):
    ours, theirs = trained_pair
    sample, timestep, text = _inputs()
    with torch.no_grad():
        expected = theirs(sample, timestep, text).sample
        actual = ours(sample, timestep, text)
    assert actual.shape == sample.shape
    assert (actual - expected).abs().max().item() <= 1e-4
    with torch.no_grad():  # a scalar timestep is broadcast over the batch, as in diffusers
        assert torch.allclose(ours(sample, 500, text), theirs(sample, 500, text).sample, atol=1e-4)


@pytest.mark.parametrize("layer", ["conv", "attention"])
def test_temporal_layers_match_diffusers(layer):
    torch.manual_seed(0)
    if layer == "conv":
        theirs, ours = DiffusersTemporalConvLayer(16, 16, norm_num_groups=4).eval(), TemporalConvLayer(16, 4).eval()
    else:
        theirs = DiffusersTransformerTemporal(num_attention_heads=2, attention_head_dim=8, in_channels=16, norm_num_groups=4).eval()
        ours = TransformerTemporalModel(2, 8, 16, 1, 4).eval()
    _randomise_zero_initialised(theirs)
    ours.load_state_dict(theirs.state_dict(), strict=True)
    features = torch.randn(2 * 5, 16, 3, 3)  # ((B T), C, H, W) with T = 5
    with torch.no_grad():
        expected = theirs(features, num_frames=5)
        expected = getattr(expected, "sample", expected)
        assert torch.allclose(ours(features, 5), expected, atol=1e-6)


def test_temporal_layers_start_as_identity():
    model = UNet3DConditionModel(TINY_3D)
    zero_at_init = [name for name, _ in model.named_parameters()
                    if ".conv4.3." in name or (".proj_out." in name and ("temp_attentions" in name or name.startswith("transformer_in.")))]
    assert len(zero_at_init) == 2 * (12 + 7)  # weight + bias of 12 temporal convs and 7 temporal attentions (transformer_in too)
    assert all(not model.get_parameter(name).any() for name in zero_at_init)
    features = torch.randn(2 * 4, 32, 4, 4)
    assert torch.equal(model.transformer_in(features, 4), features)
    assert torch.equal(model.down_blocks[0].temp_convs[0](features, 4), features)


def _frame_effects(model: UNet3DConditionModel):
    """(change in the last frame's output when only the first frame's input changes, permutation error)."""
    sample, timestep, text = _inputs()
    perturbed = sample.clone()
    perturbed[:, :, 0] = torch.randn_like(perturbed[:, :, 0])
    order = torch.tensor([2, 0, 3, 1])
    with torch.no_grad():
        out = model(sample, timestep, text)
        leak = (model(perturbed, timestep, text)[:, :, -1] - out[:, :, -1]).abs().max().item()
        permutation_error = (model(sample[:, :, order], timestep, text) - out[:, :, order]).abs().max().item()
    return leak, permutation_error


def test_at_init_each_frame_is_denoised_on_its_own():
    torch.manual_seed(0)
    model = UNet3DConditionModel(TINY_3D).eval()
    sample, timestep, text = _inputs()
    with torch.no_grad():
        clip = model(sample, timestep, text)
        frame_by_frame = torch.cat([model(sample[:, :, [t]], timestep, text) for t in range(sample.shape[2])], dim=2)
    assert torch.allclose(clip, frame_by_frame, atol=1e-5)
    leak, permutation_error = _frame_effects(model)
    assert leak < 1e-5 and permutation_error < 1e-5  # frames do not interact; reordering them reorders the output


def test_trained_temporal_layers_mix_frames(trained_pair):
    ours, _ = trained_pair
    leak, permutation_error = _frame_effects(ours)
    assert leak > 1e-3  # the first frame's content reaches the last frame
    assert permutation_error > 1e-3  # the temporal convolutions know which frame comes first


def test_temporal_attention_alone_ignores_frame_order_but_mixes_frames():
    torch.manual_seed(0)
    attention = TransformerTemporalModel(2, 8, 16, 1, 4).eval()
    _randomise_zero_initialised(attention)
    video = torch.randn(2, 16, 5, 3, 3)  # (B, C, T, H, W)
    order = torch.tensor([4, 2, 0, 1, 3])
    changed = video.clone()
    changed[:, :, 0] += 1.0

    def run(clip):  # the U-Net holds videos as ((B T), C, H, W)
        folded = attention(rearrange(clip, "b c t h w -> (b t) c h w"), 5)
        return rearrange(folded, "(b t) c h w -> b c t h w", t=5)

    with torch.no_grad():
        out, out_permuted, out_changed = run(video), run(video[:, :, order]), run(changed)
    assert torch.allclose(out_permuted, out[:, :, order], atol=1e-5)  # no positional embedding over frames
    assert (out_changed[:, :, -1] - out[:, :, -1]).abs().max() > 1e-3


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="up_block_types"):
        UNet3DConditionModel(replace(TINY_3D, up_block_types=("UpBlock3D", "CrossAttnDownBlock3D")))
    with pytest.raises(ValueError, match="multiple of attention_head_dim"):
        UNet3DConditionModel(replace(TINY_3D, attention_head_dim=12))


def test_rejects_bad_input():
    model = UNet3DConditionModel(replace(TINY_3D, layers_per_block=1))
    sample, timestep, text = _inputs()
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        model(sample[:, :, 0], timestep, text)  # an image batch, not a video
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\) with C=3"):
        model(sample[:, :2], timestep, text)
    with pytest.raises(ValueError, match=r"divisible by 2"):
        model(sample[..., :15], timestep, text)
    with pytest.raises(ValueError, match=r"\(B, L, 32\)"):
        model(sample, timestep, text[..., :16])
    with pytest.raises(ValueError, match=r"\(B, L, 32\)"):
        model(sample, timestep, text[:1])
    with pytest.raises(ValueError, match=r"\(B, L, cross_attention_dim\)"):
        model(sample, timestep, text[0])
    with pytest.raises(TypeError, match="floating"):
        model(sample.long(), timestep, text)
    with pytest.raises(TypeError, match="sample is torch.float64 but the model's weights are torch.float32"):
        model(sample.double(), timestep, text.double())
    with pytest.raises(ValueError, match=r"timestep must be a scalar or have shape \(B,\)"):
        model(sample, torch.arange(sample.shape[0] + 1), text)
    with pytest.raises(ValueError, match="timestep must be finite"):
        model(sample, torch.full((sample.shape[0],), float("inf")), text)
    with pytest.raises(ValueError, match=r"\(\(B T\), C, H, W\)"):
        model.transformer_in(torch.randn(7, 32, 4, 4), num_frames=4)
    with pytest.raises(ValueError, match=r"\(\(B T\), C, H, W\)"):
        model.down_blocks[0].temp_convs[0](torch.randn(2, 32, 4, 4, 4), num_frames=2)
