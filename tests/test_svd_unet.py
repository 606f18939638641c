"""Stable Video Diffusion's U-Net (``minivdm.models.svd_unet``): parity with diffusers'
``UNetSpatioTemporalConditionModel`` on tiny random models saved with ``save_pretrained`` and read through our loader;
the published architecture key for key on the meta device (1524.62 M parameters); config.json keys honoured or refused
by name; bad inputs refused with the expected layout."""

import inspect
from dataclasses import fields

import pytest
import torch
from einops import rearrange
from safetensors.torch import load_file, save_file

from minivdm.configs.svd import HF_IDS, SVD_CONFIGS, SVD_UNET, SVD_XT_UNET, svd_unet_config
from minivdm.io.checkpoints import CheckpointMismatchError
from minivdm.models.svd_unet import SVDUNet, SVDUNetConfig, load_svd_unet
from sd_fixtures import assert_same_keys_and_shapes, perturb_parameters

diffusers = pytest.importorskip("diffusers")
from diffusers import UNetSpatioTemporalConditionModel  # noqa: E402

DOWN, CROSS_DOWN = "DownBlockSpatioTemporal", "CrossAttnDownBlockSpatioTemporal"
UP, CROSS_UP = "UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"
TINY = {
    "one layer per block": dict(  # noqa: C408
        block_out_channels=(32, 64), down_block_types=(CROSS_DOWN, DOWN), up_block_types=(UP, CROSS_UP),
        num_attention_heads=(2, 4), layers_per_block=1),
    "two layers, two transformer blocks, three levels": dict(  # noqa: C408
        block_out_channels=(32, 64, 64), down_block_types=(CROSS_DOWN, CROSS_DOWN, DOWN),
        up_block_types=(UP, CROSS_UP, CROSS_UP), num_attention_heads=2, layers_per_block=2,
        transformer_layers_per_block=2),
    "attention only at the lowest level": dict(  # noqa: C408
        block_out_channels=(32, 64), down_block_types=(DOWN, CROSS_DOWN), up_block_types=(CROSS_UP, UP),
        num_attention_heads=(1, 2), layers_per_block=1),
}
SHARED = dict(sample_size=16, in_channels=8, out_channels=4, cross_attention_dim=32,  # noqa: C408
              addition_time_embed_dim=8, projection_class_embeddings_input_dim=24, num_frames=4)
B, T, H, W = 2, 3, 16, 16


def _saved_random(options: dict, folder, seed: int = 0) -> UNetSpatioTemporalConditionModel:
    """diffusers' model with every parameter moved by normal noise (std 0.2), saved with save_pretrained."""
    torch.manual_seed(seed)
    model = perturb_parameters(UNetSpatioTemporalConditionModel(**SHARED, **options), seed, std=0.2)
    model.save_pretrained(folder)
    return model


def _inputs(seed: int = 1):
    """Two clips with different timesteps, CLIP embeddings and added time ids (fps - 1, motion bucket, noise aug)."""
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(B, T, 8, H, W, generator=generator)  # diffusers' layout
    image_embedding = torch.randn(B, 1, 32, generator=generator)
    added_time_ids = torch.tensor([[6.0, 127.0, 0.02], [24.0, 30.0, 0.5]])
    return sample, torch.tensor([25, 700]), image_embedding, added_time_ids


@pytest.mark.parametrize("case", TINY, ids=list(TINY))
def test_svd_unet_matches_diffusers_through_our_loader(case, tmp_path):
    reference = _saved_random(TINY[case], tmp_path)
    ours = load_svd_unet(tmp_path)
    sample, timestep, image_embedding, added_time_ids = _inputs()
    with torch.no_grad():
        expected = reference(sample, timestep, image_embedding, added_time_ids).sample
        out = ours(rearrange(sample, "b t c h w -> b c t h w"), timestep, image_embedding, added_time_ids)
    out = rearrange(out, "b c t h w -> b t c h w")
    difference = (out - expected).abs().max().item()
    print(f"{case}: max |ours - diffusers| = {difference:.2e} (output mean |x| {expected.abs().mean():.3f})")
    assert expected.abs().mean() > 0.1  # a signal large enough for the tolerance to mean something
    assert difference <= 1e-4
    assert (expected[0] - expected[1]).abs().mean() > 0.1  # the two clips' conditions do lead apart


def test_micro_conditioning_and_one_timestep_for_the_batch(tmp_path):
    """Each added time id changes the prediction, as in diffusers; a scalar timestep serves the whole batch."""
    reference = _saved_random(TINY["one layer per block"], tmp_path, seed=3)
    ours = load_svd_unet(tmp_path)
    sample, _, image_embedding, added_time_ids = _inputs(seed=2)
    video = rearrange(sample, "b t c h w -> b c t h w")
    with torch.no_grad():
        base = ours(video, 500, image_embedding, added_time_ids)
        expected = reference(sample, 500, image_embedding, added_time_ids).sample
        assert (rearrange(base, "b c t h w -> b t c h w") - expected).abs().max() <= 1e-4
        for index in range(3):
            changed = added_time_ids.clone()
            changed[:, index] += 10.0
            assert (ours(video, 500, image_embedding, changed) - base).abs().mean() > 1e-3, f"added time id {index}"


@pytest.mark.parametrize("name", sorted(SVD_CONFIGS))
def test_published_architecture_matches_diffusers_key_for_key(name):
    with torch.device("meta"):
        theirs = UNetSpatioTemporalConditionModel.from_config(SVD_CONFIGS[name])
        ours = SVDUNet(svd_unet_config(name))
    count = assert_same_keys_and_shapes(ours, theirs)
    print(f"{name}: {count:,} parameters")
    assert count == 1_524_623_082
    assert round(count / 1e6, 2) == 1524.62


def test_every_norm_has_diffusers_epsilon():
    """diffusers' SVD blocks differ in their GroupNorm epsilon (1e-6 or 1e-5), too little to show in an output at a
    tolerance of 1e-4 on activations of unit scale: compared norm by norm instead."""
    options = TINY["two layers, two transformer blocks, three levels"]
    with torch.device("meta"):
        theirs = UNetSpatioTemporalConditionModel(**SHARED, **options)
        ours = SVDUNet(SVDUNetConfig(**SHARED, **options))

    def epsilons(model):
        return {name: module.eps for name, module in model.named_modules()
                if isinstance(module, (torch.nn.GroupNorm, torch.nn.LayerNorm))}

    their_eps, our_eps = epsilons(theirs), epsilons(ours)
    assert len(our_eps) > 50 and our_eps == {name: their_eps[name] for name in our_eps}
    assert set(our_eps.values()) == {1e-5, 1e-6}


def test_config_fields_are_diffusers_arguments_with_their_defaults():
    parameters = inspect.signature(UNetSpatioTemporalConditionModel.__init__).parameters
    ours = {field.name: field.default for field in fields(SVDUNetConfig) if field.name != "name"}
    assert set(ours) == set(parameters) - {"self"}
    assert ours == {key: parameters[key].default for key in ours}
    # the published files are diffusers' defaults, but for the frame count (SVD) and sample_size
    assert {key: value for key, value in SVD_XT_UNET.items() if key not in ("_class_name", "sample_size")} == {
        key: list(value) if isinstance(value, tuple) else value for key, value in ours.items() if key != "sample_size"}
    assert {key for key in SVD_XT_UNET if SVD_UNET[key] != SVD_XT_UNET[key]} == {"num_frames"}
    assert HF_IDS["svd-xt"] == "stabilityai/stable-video-diffusion-img2vid-xt"


def test_config_round_trips_and_reads_diffusers_shorthands():
    config = svd_unet_config("svd")
    assert (config.num_frames, config.sample_size, config.num_added_time_ids) == (14, 96, 3)
    assert SVDUNetConfig.from_diffusers(config.to_diffusers(), name="svd") == config
    shorthand = {**SVD_XT_UNET, "num_attention_heads": 8, "layers_per_block": [2, 2, 2, 2],
                 "cross_attention_dim": [1024] * 4}
    read = SVDUNetConfig.from_diffusers(shorthand)
    assert (read.heads_per_block(), read.layers_per_block, read.cross_attention_dim) == ((8, 8, 8, 8), 2, 1024)


@pytest.mark.parametrize("key, value", [
    ("a_future_option", 1), ("dropout", 0.1), ("layers_per_block", [2, 2, 2, 1]),
    ("transformer_layers_per_block", [[1, 1], [1, 1], [1, 1], [1, 1]]), ("cross_attention_dim", [1024, 768, 768, 768]),
    ("down_block_types", ["DownBlock3D"] * 4), ("sample_size", "96"), ("_class_name", "UNet2DConditionModel")])
def test_config_keys_minivdm_does_not_implement_are_refused_by_name(key, value):
    with pytest.raises(ValueError, match=key):
        SVDUNetConfig.from_diffusers({**SVD_XT_UNET, key: value})


def test_load_names_the_key_a_checkpoint_gets_wrong(tmp_path):
    _saved_random(TINY["one layer per block"], tmp_path)
    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("add_embedding.linear_1.weight")
    save_file(state, weights)
    with pytest.raises(CheckpointMismatchError, match="add_embedding.linear_1.weight"):
        load_svd_unet(tmp_path)


TINY_MODEL = SVDUNetConfig(**{**SHARED, **TINY["one layer per block"]})


@pytest.mark.parametrize("sample_shape, text_shape, ids_shape, match", [
    ((B, 8, H, W), (B, 1, 32), (B, 3), r"sample must be \(B, C, T, H, W\)"),
    ((B, T, 8, H, W), (B, 1, 32), (B, 3), r"C = 8 .* 'b t c h w -> b c t h w'"),
    ((B, 8, T, 15, W), (B, 1, 32), (B, 3), r"H and W of sample \(B, C, T, H, W\) must be divisible by 2"),
    ((B, 8, T, H, W), (B, 32), (B, 3), r"encoder_hidden_states must be \(B, L, cross_attention_dim\)"),
    ((B, 8, T, H, W), (B, 1, 24), (B, 3), r"encoder_hidden_states must be \(B, L, D\) = \(2, L, 32\)"),
    ((B, 8, T, H, W), (B, 1, 32), (B,), r"added_time_ids must be \(B, N\)"),
    ((B, 8, T, H, W), (B, 1, 32), (B, 2), r"added_time_ids must be \(B, N\) = \(2, 3\): \(fps - 1, motion_bucket_id"),
    ((B, 8, T, H, W), (B, 1, 32), (1, 3), r"added_time_ids must be \(B, N\) = \(2, 3\)")])
def test_bad_inputs_are_refused_with_the_expected_layout(sample_shape, text_shape, ids_shape, match):
    model = SVDUNet(TINY_MODEL)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*sample_shape), 10, torch.randn(*text_shape), torch.ones(*ids_shape))
