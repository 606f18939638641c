"""I2VGen-XL's U-Net (``minivdm.models.i2vgen_xl_unet``): parity with diffusers' ``I2VGenXLUNet`` on tiny random
models (every weight moved, so no zero-initialised layer hides a wrong branch) saved with ``save_pretrained`` and read
through our loader; each condition (fps, image latent, CLIP embedding, text) changes the prediction as in diffusers;
the published architecture key for key on the meta device (1420.47 M parameters); config.json keys honoured or
refused by name; bad inputs refused with the expected layout."""

import inspect
import json
from dataclasses import fields

import pytest
import torch

from minivdm.configs.i2vgen_xl import HF_IDS, I2VGEN_XL, I2VGEN_XL_PARAMETERS, I2VGEN_XL_UNET
from minivdm.models.i2vgen_xl_unet import I2VGenXLUNet, I2VGenXLUNetConfig, load_i2vgen_xl_unet
from sd_fixtures import assert_same_keys_and_shapes, perturb_parameters

diffusers = pytest.importorskip("diffusers")
from diffusers import I2VGenXLUNet as DiffusersI2VGenXLUNet  # noqa: E402

DOWN, CROSS_DOWN, UP, CROSS_UP = "DownBlock3D", "CrossAttnDownBlock3D", "UpBlock3D", "CrossAttnUpBlock3D"
TINY = {
    "two levels, one layer": dict(  # noqa: C408
        block_out_channels=(32, 64), down_block_types=(CROSS_DOWN, DOWN), up_block_types=(UP, CROSS_UP),
        layers_per_block=1),
    "three levels, two layers, attention below the top": dict(  # noqa: C408
        block_out_channels=(32, 32, 64), down_block_types=(DOWN, CROSS_DOWN, CROSS_DOWN),
        up_block_types=(CROSS_UP, CROSS_UP, UP), layers_per_block=2),
}
SHARED = dict(sample_size=16, in_channels=4, out_channels=4, cross_attention_dim=32,  # noqa: C408
              attention_head_dim=16, norm_num_groups=4)
B, T, H, W, L = 2, 3, 16, 16, 5


def _saved_random(options: dict, folder, seed: int = 0) -> DiffusersI2VGenXLUNet:
    """diffusers' model with every parameter moved by normal noise (std 0.1), saved with save_pretrained."""
    torch.manual_seed(seed)
    model = perturb_parameters(DiffusersI2VGenXLUNet(**SHARED, **options), seed, std=0.1)
    model.save_pretrained(folder)
    return model


def _inputs(seed: int = 1) -> dict:
    """Two clips with different timesteps, frame rates, image latents, CLIP embeddings and captions."""
    generator = torch.Generator().manual_seed(seed)
    return dict(  # noqa: C408
        sample=torch.randn(B, 4, T, H, W, generator=generator),  # (B, C, T, H, W) in diffusers too
        timestep=torch.tensor([25, 700]),
        fps=torch.tensor([8, 16]),
        image_latents=torch.randn(B, 4, T, H, W, generator=generator),
        image_embeddings=torch.randn(B, 32, generator=generator),
        encoder_hidden_states=torch.randn(B, L, 32, generator=generator))


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny_i2vgen_xl")
    reference = _saved_random(TINY["two levels, one layer"], folder, seed=3)
    return load_i2vgen_xl_unet(folder), reference, folder


@pytest.mark.parametrize("case", TINY, ids=list(TINY))
def test_i2vgen_xl_unet_matches_diffusers_through_our_loader(case, tmp_path):
    reference = _saved_random(TINY[case], tmp_path)
    ours = load_i2vgen_xl_unet(tmp_path)
    inputs = _inputs()
    with torch.no_grad():
        expected = reference(**inputs).sample
        out = ours(**inputs)
    difference = (out - expected).abs().max().item()
    print(f"{case}: max |ours - diffusers| = {difference:.2e} (output mean |x| {expected.abs().mean():.3f})")
    assert out.shape == expected.shape == (B, 4, T, H, W)
    assert expected.abs().mean() > 0.1  # a signal large enough for the tolerance to mean something
    assert difference <= 1e-4
    assert (expected[0] - expected[1]).abs().mean() > 0.05  # the two clips' conditions do lead apart


@pytest.mark.parametrize("condition", ["fps", "first frame of image_latents", "later frame of image_latents",
                                       "image_embeddings", "encoder_hidden_states"])
def test_each_condition_changes_the_prediction_as_in_diffusers(tiny_pair, condition):
    """Every path of the conditioning reaches the output: change one input, ours and diffusers move together."""
    ours, reference, _ = tiny_pair
    inputs = _inputs(seed=2)
    changed = {key: value.clone() for key, value in inputs.items()}
    if condition == "fps":
        changed["fps"] = changed["fps"] + 10
    elif condition == "first frame of image_latents":  # reaches both the context tokens and the concatenated latent
        changed["image_latents"][:, :, 0] += 1.0
    elif condition == "later frame of image_latents":  # reaches only the concatenated latent
        changed["image_latents"][:, :, -1] += 1.0
    else:
        changed[condition] = changed[condition] + 1.0
    with torch.no_grad():
        base, moved = ours(**inputs), ours(**changed)
        expected = reference(**changed).sample
    assert (moved - base).abs().mean() > 1e-3, condition
    assert (moved - expected).abs().max() <= 1e-4


def test_one_timestep_and_one_fps_for_the_batch(tiny_pair):
    ours, reference, _ = tiny_pair
    inputs = {**_inputs(), "timestep": 500, "fps": torch.tensor([12])}
    with torch.no_grad():
        expected = reference(**inputs).sample
        assert (ours(**inputs) - expected).abs().max() <= 1e-4
        assert (ours(**{**inputs, "fps": 12}) - expected).abs().max() <= 1e-4
        # diffusers' pipeline passes the CLIP embedding with one token axis: (B, 1, D)
        one_token = {**inputs, "image_embeddings": inputs["image_embeddings"][:, None]}
        assert (ours(**one_token) - expected).abs().max() <= 1e-4


def test_published_architecture_matches_diffusers_key_for_key():
    with torch.device("meta"):
        theirs = DiffusersI2VGenXLUNet.from_config(I2VGEN_XL_UNET)
        ours = I2VGenXLUNet(I2VGEN_XL)
    count = assert_same_keys_and_shapes(ours, theirs)
    print(f"i2vgen-xl: {count:,} parameters")
    assert count == I2VGEN_XL_PARAMETERS
    assert round(count / 1e6, 2) == 1420.47


def test_config_fields_are_diffusers_arguments_with_their_defaults():
    parameters = inspect.signature(DiffusersI2VGenXLUNet.__init__).parameters
    ours = {field.name: field.default for field in fields(I2VGenXLUNetConfig) if field.name != "name"}
    assert set(ours) == set(parameters) - {"self"}
    assert ours == {key: parameters[key].default for key in ours}
    assert I2VGEN_XL_UNET == I2VGEN_XL.to_diffusers()  # the published config is diffusers' defaults
    assert I2VGenXLUNetConfig.from_diffusers(I2VGEN_XL.to_diffusers(), name="i2vgen-xl") == I2VGEN_XL
    shorthand = {**I2VGEN_XL_UNET, "attention_head_dim": [64] * 4, "num_attention_heads": 64, "sample_size": 32}
    read = I2VGenXLUNetConfig.from_diffusers(shorthand)
    assert (read.attention_head_dim, read.num_attention_heads, read.sample_size) == (64, 64, 32)
    assert HF_IDS == {"i2vgen-xl": "ali-vilab/i2vgen-xl"}


@pytest.mark.parametrize("key, value", [
    ("a_future_option", 1), ("num_attention_heads", 8), ("attention_head_dim", [64, 64, 32, 32]),
    ("norm_num_groups", None), ("down_block_types", [CROSS_DOWN, CROSS_DOWN, CROSS_DOWN, "DownBlock2D"]),
    ("_class_name", "UNet3DConditionModel"), ("layers_per_block", 2.5), ("sample_size", "64")])
def test_from_diffusers_refuses_unsupported_options_by_name(key, value):
    with pytest.raises(ValueError, match=key):
        I2VGenXLUNetConfig.from_diffusers({**I2VGEN_XL_UNET, key: value})


def test_loader_refuses_an_unknown_config_key_by_name(tiny_pair, tmp_path):
    _, reference, folder = tiny_pair
    reference.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "a_future_option": 1}))
    with pytest.raises(ValueError, match="a_future_option.*does not know"):
        load_i2vgen_xl_unet(tmp_path)


def test_rejects_bad_input(tiny_pair):
    ours, _, _ = tiny_pair
    inputs = _inputs()

    def call(**changes):
        return ours(**{**inputs, **changes})

    sample = inputs["sample"]
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        call(sample=sample[:, :, 0])  # an image batch, not a video
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\) with C = 4.*'b t c h w -> b c t h w'"):
        call(sample=sample.transpose(1, 2))  # (B, T, C, H, W)
    with pytest.raises(ValueError, match=r"divisible by 2"):
        call(sample=sample[..., :15], image_latents=inputs["image_latents"][..., :15])
    with pytest.raises(ValueError, match=r"image_latents must be .*\(2, 4, 3, 16, 16\)"):
        call(image_latents=inputs["image_latents"][:, :, :1])
    with pytest.raises(ValueError, match=r"image_latents must be \(B, C, T, H, W\)"):
        call(image_latents=inputs["image_latents"][:, :, 0])
    with pytest.raises(ValueError, match=r"image_embeddings must be .*\(B, D\) = \(2, 32\)"):
        call(image_embeddings=inputs["image_embeddings"][:, :16])
    with pytest.raises(ValueError, match=r"image_embeddings must be .*\(B, D\)"):
        call(image_embeddings=inputs["image_embeddings"][:, None].expand(B, 2, 32))
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be .*\(B, L, D\) = \(2, L, 32\)"):
        call(encoder_hidden_states=inputs["encoder_hidden_states"][:1])
    with pytest.raises(ValueError, match=r"fps must be a scalar or have shape \(B,\)"):
        call(fps=torch.tensor([8, 16, 24]))
    with pytest.raises(TypeError, match="fps must be a number"):
        call(fps="8")
    with pytest.raises(TypeError, match="image_latents is torch.float64 but the model's weights are torch.float32"):
        call(image_latents=inputs["image_latents"].double())


def test_rejects_bad_config():
    with pytest.raises(ValueError, match="multiple of attention_head_dim"):
        I2VGenXLUNetConfig(**{**SHARED, **TINY["two levels, one layer"], "attention_head_dim": 12})
    with pytest.raises(ValueError, match="one entry per level"):
        I2VGenXLUNetConfig(**{**SHARED, **TINY["two levels, one layer"], "block_out_channels": (32, 64, 64)})
