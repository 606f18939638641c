"""The from-scratch Stable Diffusion U-Net: exact published architectures, parity with diffusers
through our loader, and the whole text-to-image loop reproducing StableDiffusionPipeline."""

from dataclasses import replace

import pytest
import torch
from diffusers import UNet2DConditionModel as DiffusersUNet

from minivdm.configs.stable_diffusion import CONFIGS, SD15, SD2_DEPTH, TINY
from minivdm.models.unet_2d_condition import UNet2DConditionConfig, UNet2DConditionModel
from sd_fixtures import TINY_UNET, make_tiny_sd_pipeline

PUBLISHED_PARAMETERS_M = {"sd15": 859.52, "sd14": 859.52, "sd2-depth": 865.91}


def diffusers_kwargs(config: UNet2DConditionConfig) -> dict:
    return {key: value for key, value in config.to_diffusers().items() if key != "_class_name"}


@pytest.mark.parametrize("name", ["sd15", "sd14", "sd2-depth"])
def test_full_scale_config_matches_diffusers_exactly_on_meta(name):
    config = CONFIGS[name]
    with torch.device("meta"):
        ours, theirs = UNet2DConditionModel(config), DiffusersUNet(**diffusers_kwargs(config))
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert round(count / 1e6, 2) == PUBLISHED_PARAMETERS_M[name]
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert set(ours_state) == set(theirs_state), "key map must cover 100% of the published state dict"
    assert all(ours_state[key].shape == theirs_state[key].shape for key in theirs_state)


@pytest.mark.parametrize("variant", ["sd1-conv-projection", "sd2-linear-projection", "depth-5-channels"])
def test_parity_with_diffusers_through_our_loader(tmp_path, variant):
    config = {"sd1-conv-projection": TINY, "sd2-linear-projection": replace(TINY, use_linear_projection=True, attention_head_dim=(2, 2, 4)),
              "depth-5-channels": replace(TINY, in_channels=5, use_linear_projection=True)}[variant]
    torch.manual_seed(0)
    reference = DiffusersUNet(**diffusers_kwargs(config)).eval()
    reference.save_pretrained(tmp_path / "unet")
    ours = UNet2DConditionModel.from_pretrained(tmp_path)
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, config.in_channels, 32, 32, generator=g)
    context = torch.randn(2, 7, config.cross_attention_dim, generator=g)
    timesteps = torch.tensor([3, 870])
    with torch.no_grad():
        assert (ours(sample, timesteps, context) - reference(sample, timesteps, context).sample).abs().max() <= 1e-4


def test_loader_refuses_a_checkpoint_with_a_renamed_key(tmp_path):
    from safetensors.torch import load_file, save_file

    torch.manual_seed(0)
    DiffusersUNet(**diffusers_kwargs(TINY)).save_pretrained(tmp_path / "unet")
    weights = tmp_path / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(str(weights))
    state["mid_block.attentions.0.proj_inn.weight"] = state.pop("mid_block.attentions.0.proj_in.weight")
    save_file(state, str(weights))
    with pytest.raises(ValueError, match=r"mid_block\.attentions\.0\.proj_in\.weight"):
        UNet2DConditionModel.from_pretrained(tmp_path)


def test_every_diffusers_option_is_honoured_or_fixed():
    # nothing diffusers can write into config.json loads as something else: each init option is one of
    # our fields (honoured) or fixed at the one value we implement (refused at any other)
    import inspect

    from minivdm.models.unet_2d_condition import UNET_2D_FIXED_OPTIONS

    options = set(inspect.signature(DiffusersUNet.__init__).parameters) - {"self"}
    ours = set(UNet2DConditionConfig.__dataclass_fields__) - {"name"}
    assert options == ours | set(UNET_2D_FIXED_OPTIONS)
    defaults = {k: p.default for k, p in inspect.signature(DiffusersUNet.__init__).parameters.items()}
    assert all(defaults[key] == value for key, value in UNET_2D_FIXED_OPTIONS.items())


def test_a_config_saved_by_diffusers_reads_back_as_the_same_architecture(tmp_path):
    import json

    with torch.device("meta"):
        DiffusersUNet(**diffusers_kwargs(TINY)).save_config(tmp_path)  # every option, at diffusers' values
    assert UNet2DConditionConfig.from_diffusers(json.loads((tmp_path / "config.json").read_text()), name="tiny") == TINY


@pytest.mark.parametrize("key, value", [
    ("class_embed_type", "timestep"), ("timestep_post_act", "silu"), ("time_embedding_act_fn", "gelu"),
    ("transformer_layers_per_block", [1, 2, 2]), ("conv_in_kernel", 1), ("resnet_time_scale_shift", "scale_shift"),
    ("dropout", 0.1), ("only_cross_attention", [False, True, False]), ("center_input_sample", True),
    ("layers_per_block", [1, 2, 2]), ("a_future_option", 3), ("use_linear_projection", 1), ("sample_size", [32, 16]),
])
def test_options_we_do_not_implement_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=key):
        UNet2DConditionConfig.from_diffusers({**diffusers_kwargs(TINY), key: value})


def test_per_block_lists_of_one_value_read_as_that_value():
    config = UNet2DConditionConfig.from_diffusers({**diffusers_kwargs(TINY), "layers_per_block": [2, 2, 2],
                                                   "transformer_layers_per_block": [1, 1, 1]}, name=TINY.name)
    assert config == replace(TINY, layers_per_block=2)


def test_bad_input_names_the_expected_layout():
    model = UNet2DConditionModel(TINY)
    context = torch.randn(1, 4, 64)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        model(torch.randn(3, 32, 32), 1, context)
    with pytest.raises(ValueError, match="3 channels"):
        model(torch.randn(1, 4, 32, 32), 1, context)
    with pytest.raises(ValueError, match=r"\(B, L, 64\)"):
        model(torch.randn(1, 3, 32, 32), 1, torch.randn(1, 4, 32))
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 3, 30, 30), 1, context)
    with pytest.raises(ValueError, match=r"with the B of sample \(2, 3, 32, 32\)"):
        model(torch.randn(2, 3, 32, 32), 1, context)  # one caption for two samples
    with pytest.raises(ValueError, match=r"timestep must be a scalar or have shape \(B,\) = \(2,\)"):
        model(torch.randn(2, 3, 32, 32), torch.tensor([1, 2, 3]), context.expand(2, -1, -1))
    with pytest.raises(ValueError, match="timestep must be finite"):
        model(torch.randn(1, 3, 32, 32), float("nan"), context)
    with pytest.raises(TypeError, match=r"sample is torch.float64 but the model's weights are torch.float32"):
        model(torch.randn(1, 3, 32, 32, dtype=torch.float64), 1, context.double())
    with pytest.raises(TypeError, match=r"encoder_hidden_states is torch.float16"):
        model(torch.randn(1, 3, 32, 32), 1, context.half())


def test_our_text_to_image_loop_reproduces_stable_diffusion_pipeline(tmp_path):
    from minivdm.methods.text_to_image import load_components, text_to_image

    pipe = make_tiny_sd_pipeline(tmp_path)
    prompts = ["a red circle", "a blue square"]
    expected = pipe(prompts, num_inference_steps=20, guidance_scale=7.5, generator=torch.Generator().manual_seed(0),
                    output_type="pt").images
    unet, vae, text_encoder, tokenizer, settings = load_components(tmp_path)
    assert isinstance(unet, UNet2DConditionModel)
    images = text_to_image(unet, vae, text_encoder, tokenizer, settings, prompts, num_steps=20, guidance_scale=7.5,
                           generator=torch.Generator().manual_seed(0), progress=False)
    assert images.shape == expected.shape == (2, 3, 16, 16)
    assert (images - expected).abs().max() <= 1e-3
    assert (images[0] - images[1]).abs().max() > 1e-3  # the prompt matters
