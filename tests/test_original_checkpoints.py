"""Original single-file Stable Diffusion checkpoints (CompVis/LDM layout) loaded into our U-Net.

The LDM-layout files are written from a random diffusers U-Net through the inverse of our key map,
and each is first read back by diffusers' own converter (``convert_ldm_unet_checkpoint``), which must
reproduce diffusers' state dict key for key and tensor for tensor: that converter, not our map,
is the reference for what the original layout is.
"""

from dataclasses import replace

import pytest
import torch
from diffusers import UNet2DConditionModel as DiffusersUNet
from diffusers.loaders.single_file_utils import convert_ldm_unet_checkpoint
from safetensors.torch import load_file, save_file

from minivdm.configs.stable_diffusion import SD2_DEPTH, SD15, TINY
from minivdm.io.checkpoints import CheckpointMismatchError
from minivdm.models.original_checkpoints import LDM_UNET_PREFIX, ldm_unet_key_map, load_original_unet
from minivdm.models.unet_2d_condition import (
    ATTENTION_DOWN,
    ATTENTION_UP,
    PLAIN_DOWN,
    PLAIN_UP,
    UNet2DConditionConfig,
    UNet2DConditionModel,
)

CONFIGS = {
    "sd1-conv-projection": TINY,
    "sd2-linear-projection-2-layers": replace(TINY, name="tiny-linear", use_linear_projection=True, layers_per_block=2,
                                              attention_head_dim=(2, 2, 4)),
    # SD's four levels; level 1 keeps the width, so its first ResBlock has no skip_connection
    "four-levels": replace(TINY, name="tiny-4-levels", block_out_channels=(32, 32, 64, 64), layers_per_block=2,
                           down_block_types=(ATTENTION_DOWN, ATTENTION_DOWN, ATTENTION_DOWN, PLAIN_DOWN),
                           up_block_types=(PLAIN_UP, ATTENTION_UP, ATTENTION_UP, ATTENTION_UP), attention_head_dim=2),
}
# What else an original file holds besides the U-Net (VAE, text encoder, EMA bookkeeping, schedule buffers)
OTHER_COMPONENTS = {
    "first_stage_model.encoder.conv_in.weight": torch.ones(8, 3, 3, 3),
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight": torch.ones(10, 4),
    "model_ema.decay": torch.tensor(0.9999),
    "betas": torch.linspace(1e-4, 2e-2, 10),
}


def diffusers_kwargs(config: UNet2DConditionConfig) -> dict:
    return {key: value for key, value in config.to_diffusers().items() if key != "_class_name"}


def random_diffusers_unet(config: UNet2DConditionConfig) -> DiffusersUNet:
    torch.manual_seed(0)
    reference = DiffusersUNet(**diffusers_kwargs(config)).eval()
    # norms start at weight 1 / bias 0: make every tensor distinct, so two swapped tensors cannot pass as equal
    with torch.no_grad():
        for parameter in reference.parameters():
            if parameter.ndim == 1:
                parameter.add_(0.1 * torch.randn_like(parameter))
    return reference


def ldm_state_dict(reference: DiffusersUNet, config: UNet2DConditionConfig) -> dict[str, torch.Tensor]:
    """The U-Net part of an original checkpoint, written through the inverse of our key map."""
    key_map = ldm_unet_key_map(config)
    inverse = {ours: ldm for ldm, ours in key_map.items()}
    assert len(inverse) == len(key_map), "two LDM keys map onto one of ours"
    return {LDM_UNET_PREFIX + inverse[key]: tensor.contiguous() for key, tensor in reference.state_dict().items()}


def assert_diffusers_reads_it_back(original: dict, reference: DiffusersUNet, config: UNet2DConditionConfig):
    """The independent check of the layout: diffusers' converter must give back the reference's state dict."""
    expected = reference.state_dict()
    converted = convert_ldm_unet_checkpoint(original, diffusers_kwargs(config))
    assert sorted(converted) == sorted(expected)
    different = [key for key in expected if not torch.equal(converted[key], expected[key])]
    assert not different, f"diffusers' converter puts other tensors at {different[:10]}"


def write_original_checkpoint(tmp_path, config: UNet2DConditionConfig) -> tuple:
    """A random diffusers U-Net and the original single file holding it (plus other components)."""
    reference = random_diffusers_unet(config)
    original = {**ldm_state_dict(reference, config), **OTHER_COMPONENTS}
    # without this, writing and reading through one map would be a round trip that any consistent map passes
    assert_diffusers_reads_it_back(original, reference, config)
    path = tmp_path / "v1-tiny-pruned-emaonly.safetensors"
    save_file(original, str(path))
    return reference, path


@pytest.mark.parametrize("variant", list(CONFIGS))
def test_diffusers_converter_reads_our_ldm_layout_back_exactly(variant):
    config = CONFIGS[variant]
    reference = random_diffusers_unet(config)
    assert_diffusers_reads_it_back({**ldm_state_dict(reference, config), **OTHER_COMPONENTS}, reference, config)


@pytest.mark.parametrize("variant", list(CONFIGS))
def test_from_single_file_matches_diffusers_and_ignores_other_components(tmp_path, variant):
    config = CONFIGS[variant]
    reference, path = write_original_checkpoint(tmp_path, config)
    ours = load_original_unet(path, config)
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(2, config.in_channels, 16, 16, generator=g)
    context = torch.randn(2, 7, config.cross_attention_dim, generator=g)
    timesteps = torch.tensor([3, 870])
    with torch.no_grad():
        difference = (ours(sample, timesteps, context) - reference(sample, timesteps, context).sample).abs().max()
    assert difference <= 1e-5


def test_a_renamed_key_is_named_and_nothing_loads(tmp_path):
    _, path = write_original_checkpoint(tmp_path, TINY)
    state = load_file(str(path))
    renamed = state.pop(LDM_UNET_PREFIX + "middle_block.1.proj_in.weight")
    state[LDM_UNET_PREFIX + "middle_block.1.proj_inn.weight"] = renamed
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError) as raised:
        load_original_unet(path, TINY)
    message = str(raised.value)
    assert "mid_block.attentions.0.proj_in.weight" in message  # missing, in our names
    assert "middle_block.1.proj_inn.weight" in message  # unexpected, in the file's names
    assert LDM_UNET_PREFIX + "middle_block.1.proj_in.weight" in message  # missing, in the file's names


def test_a_missing_upsampler_is_named(tmp_path):
    _, path = write_original_checkpoint(tmp_path, TINY)
    state = load_file(str(path))
    del state[LDM_UNET_PREFIX + "output_blocks.3.2.conv.weight"]
    save_file(state, str(path))
    with pytest.raises(CheckpointMismatchError, match=r"up_blocks\.1\.upsamplers\.0\.conv\.weight") as raised:
        load_original_unet(path, TINY)
    assert LDM_UNET_PREFIX + "output_blocks.3.2.conv.weight" in str(raised.value)


def test_an_sd2_file_with_an_sd1_config_is_refused_by_shape(tmp_path):
    linear = CONFIGS["sd2-linear-projection-2-layers"]
    _, path = write_original_checkpoint(tmp_path, linear)
    with pytest.raises(CheckpointMismatchError, match=r"proj_in\.weight: \(64, 64\) vs \(64, 64, 1, 1\)"):
        load_original_unet(path, replace(linear, use_linear_projection=False))


def test_pickle_is_refused_by_default(tmp_path):
    reference = random_diffusers_unet(TINY)
    path = tmp_path / "v1-tiny.ckpt"
    torch.save(ldm_state_dict(reference, TINY), path)
    with pytest.raises(ValueError, match="pickle"):
        load_original_unet(path, TINY)


def test_a_file_without_an_ldm_unet_gets_a_clear_error(tmp_path):
    reference = random_diffusers_unet(TINY)
    path = tmp_path / "diffusers_layout.safetensors"
    save_file({key: tensor.contiguous() for key, tensor in reference.state_dict().items()}, str(path))
    with pytest.raises(ValueError, match=r"no key starts with 'model\.diffusion_model\.'.*from_pretrained"):
        load_original_unet(path, TINY)
    with pytest.raises(ValueError, match="is a folder"):
        load_original_unet(tmp_path, TINY)
    with pytest.raises(TypeError, match="UNet2DConditionConfig"):
        load_original_unet(path, diffusers_kwargs(TINY))


@pytest.mark.parametrize("config", [SD15, SD2_DEPTH], ids=lambda config: config.name)
def test_key_map_covers_the_full_scale_model_exactly_on_meta(config):
    key_map = ldm_unet_key_map(config)
    with torch.device("meta"):
        model_keys = set(UNet2DConditionModel(config).state_dict())
    targets = list(key_map.values())
    assert len(set(targets)) == len(targets), "two LDM keys map onto one of ours"
    assert set(targets) == model_keys


def test_key_map_matches_keys_of_the_published_v1_5_file():
    # keys as they appear in v1-5-pruned-emaonly.safetensors (without model.diffusion_model.)
    key_map = ldm_unet_key_map(SD15)
    assert key_map["input_blocks.1.1.proj_in.weight"] == "down_blocks.0.attentions.0.proj_in.weight"
    assert key_map["input_blocks.3.0.op.weight"] == "down_blocks.0.downsamplers.0.conv.weight"
    assert key_map["input_blocks.4.0.skip_connection.weight"] == "down_blocks.1.resnets.0.conv_shortcut.weight"
    assert key_map["middle_block.2.in_layers.0.weight"] == "mid_block.resnets.1.norm1.weight"
    assert key_map["output_blocks.2.1.conv.weight"] == "up_blocks.0.upsamplers.0.conv.weight"
    assert key_map["output_blocks.5.2.conv.weight"] == "up_blocks.1.upsamplers.0.conv.weight"
    assert key_map["output_blocks.11.1.proj_out.bias"] == "up_blocks.3.attentions.2.proj_out.bias"
    assert key_map["time_embed.2.weight"] == "time_embedding.linear_2.weight"
    assert key_map["out.2.weight"] == "conv_out.weight"
    assert len(key_map) == 686
