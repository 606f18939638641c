"""Video Diffusion Transformers: our VideoDiT computes what diffusers' CogVideoX (2B sincos, 5B rotary, 1.5 with
2-frame patches) and Latte (factorised space / time) transformers compute, from their saved checkpoints, at their
reference size and at others; the published architectures key for key; bad configs, inputs and checkpoints refused by
name; adaLN-Zero's identity at init."""

import inspect
from types import SimpleNamespace

import pytest
import torch
from diffusers import CogVideoXTransformer3DModel, LatteTransformer3DModel
from diffusers.pipelines.cogvideo.pipeline_cogvideox import CogVideoXPipeline
from safetensors.torch import load_file, save_file
from sd_fixtures import assert_same_keys_and_shapes

from minivdm.configs.dit import DIT_CONFIGS, HF_IDS, full_scale_dit_config
from minivdm.io.checkpoints import CheckpointMismatchError
from minivdm.models.dit import DiTConfig, VideoDiT, zero_init_modulation
from minivdm.models.dit_checkpoints import (
    _FIXED,
    _SAME,
    COGVIDEOX,
    DIFFUSERS_DEFAULTS,
    LATTE,
    NO_EFFECT,
    diffusers_key,
    dit_config_from_diffusers,
    load_dit,
)

TEXT_LENGTH = 7  # CogVideoX's 3D sincos code is laid over max_text_seq_length text slots: the text must fill them
WEIGHTS = "diffusion_pytorch_model.safetensors"


def _cogvideox(rotary: bool, patch_size_t=None, **extra) -> CogVideoXTransformer3DModel:
    return CogVideoXTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=4, time_embed_dim=24,
        text_embed_dim=12, num_layers=2, sample_height=16, sample_width=24, sample_frames=13, patch_size=2,
        patch_size_t=patch_size_t, max_text_seq_length=TEXT_LENGTH, use_rotary_positional_embeddings=rotary, **extra)


def _latte(sample_size: int = 16) -> LatteTransformer3DModel:
    return LatteTransformer3DModel(
        num_attention_heads=2, attention_head_dim=16, in_channels=4, out_channels=8, num_layers=2,
        cross_attention_dim=32, attention_bias=True, sample_size=sample_size, patch_size=2,
        activation_fn="gelu-approximate", num_embeds_ada_norm=1000, norm_type="ada_norm_single",
        norm_elementwise_affine=False, norm_eps=1e-6, caption_channels=12, video_length=4)


def _saved_random(model, folder):
    """Every parameter moved by noise of std 0.2 (no zero-initialised gate can hide a wrong branch, and LayerNorm scales
    stay near 1, so attention logits stay large enough for positions to matter), then save_pretrained."""
    torch.manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.2 * torch.randn_like(parameter))
    model.eval().save_pretrained(folder)
    return model


def _inputs(batch, channels, frames, height, width, text_dim=12):
    generator = torch.Generator().manual_seed(1)
    video = torch.randn(batch, channels, frames, height, width, generator=generator)  # (B, C, T, H, W)
    text = torch.randn(batch, TEXT_LENGTH, text_dim, generator=generator)
    return video, torch.tensor([10, 700][:batch]), text


def _cogvideox_rotary(transformer, height, width, frames):
    """The (cos, sin) diffusers' CogVideoX pipeline hands its transformer (latent sizes: VAE scale factor 1)."""
    pipeline = SimpleNamespace(vae_scale_factor_spatial=1, transformer=transformer)
    return CogVideoXPipeline._prepare_rotary_positional_embeddings(pipeline, height, width, frames, "cpu")


COGVIDEOX_CASES = {  # name: (model arguments, input (T, H, W))
    "2b-sincos": (dict(rotary=False), (4, 16, 24)),
    "2b-sincos-other-size": (dict(rotary=False), (3, 12, 32)),
    "5b-rotary": (dict(rotary=True), (4, 16, 24)),
    "5b-rotary-taller": (dict(rotary=True), (4, 16, 16)),
    "5b-rotary-wider": (dict(rotary=True), (2, 8, 24)),
    "1.5-rotary-pt2": (dict(rotary=True, patch_size_t=2), (4, 16, 24)),
    "1.5-rotary-pt2-other-size": (dict(rotary=True, patch_size_t=2), (6, 12, 16)),
    "1.5-no-patch-bias": (dict(rotary=True, patch_size_t=2, patch_bias=False), (2, 8, 8)),
}


@pytest.mark.parametrize("case", COGVIDEOX_CASES)
def test_cogvideox_checkpoint_matches_diffusers(case, tmp_path):
    arguments, (frames, height, width) = COGVIDEOX_CASES[case]
    theirs = _saved_random(_cogvideox(**arguments), tmp_path)
    ours = load_dit(tmp_path)
    video, timestep, text = _inputs(2, 4, frames, height, width)
    rotary = _cogvideox_rotary(theirs, height, width, frames) if arguments["rotary"] else None
    with torch.no_grad():
        # diffusers' CogVideoX takes (B, T, C, H, W); ours (B, C, T, H, W)
        expected = theirs(video.transpose(1, 2), text, timestep, image_rotary_emb=rotary).sample.transpose(1, 2)
        actual = ours(video, timestep, text)
        if rotary is not None:  # the positions change the output well beyond the tolerance: a wrong one would show
            unrotated = theirs(video.transpose(1, 2), text, timestep).sample.transpose(1, 2)
            assert (unrotated - expected).abs().max() > 0.1
    assert expected.std() > 0.1  # a real output, not a degenerate one both sides agree on
    assert (actual - expected).abs().max() <= 1e-4


LATTE_CASES = {  # name: (sample_size, input (T, H, W))
    "latte": (16, (4, 16, 16)),
    "latte-non-square": (16, (4, 12, 20)),
    "latte-one-frame": (16, (1, 16, 16)),
    "latte-interpolation-scale-2": (128, (4, 16, 24)),
}


@pytest.mark.parametrize("case", LATTE_CASES)
def test_latte_checkpoint_matches_diffusers(case, tmp_path):
    sample_size, (frames, height, width) = LATTE_CASES[case]
    theirs = _saved_random(_latte(sample_size), tmp_path)
    ours = load_dit(tmp_path)
    assert ours.config.attention == "factorised" and ours.config.text_conditioning == "cross"
    video, timestep, text = _inputs(2, 4, frames, height, width)
    with torch.no_grad():
        expected = theirs(video, timestep, text).sample  # Latte takes (B, C, T, H, W), as ours does
        actual = ours(video, timestep, text)
    assert expected.std() > 0.1
    assert (actual - expected).abs().max() <= 1e-4


def _class(config: dict):
    return CogVideoXTransformer3DModel if config["_class_name"] == COGVIDEOX else LatteTransformer3DModel


@pytest.mark.parametrize("name", sorted(DIT_CONFIGS))
def test_full_scale_architecture_matches_diffusers_key_for_key(name):
    config = DIT_CONFIGS[name]
    with torch.device("meta"):
        theirs = _class(config).from_config(config)
        ours = VideoDiT(full_scale_dit_config(name))
    our_count = assert_same_keys_and_shapes(ours, theirs, lambda key: diffusers_key(key, config["_class_name"]))
    if name == "cogvideox-2b":
        assert round(our_count / 1e6, 2) == 1693.78


def test_published_configs_read_as_the_models_they_are():
    two_b, five_b, latte = (full_scale_dit_config(name) for name in ("cogvideox-2b", "cogvideox-5b", "latte-1"))
    assert (two_b.text_conditioning, two_b.attention, two_b.positions) == ("joint", "full", "sincos")
    assert (two_b.inner_dim, two_b.num_layers, two_b.patch_size_t) == (1920, 30, None)
    assert (five_b.positions, five_b.inner_dim, five_b.num_layers, five_b.patch_size_t) == ("rotary", 3072, 42, None)
    assert (latte.text_conditioning, latte.attention, latte.positions) == ("cross", "factorised", "sincos")
    assert (latte.text_embed_dim, latte.inner_dim, latte.out_channels, latte.sample_height) == (4096, 1152, 8, 64)
    assert HF_IDS == {"cogvideox-2b": "THUDM/CogVideoX-2b", "cogvideox-5b": "THUDM/CogVideoX-5b",
                      "latte-1": "maxin-cn/Latte-1"}
    with pytest.raises(ValueError, match="no published DiT named 'sora'"):
        full_scale_dit_config("sora")


@pytest.mark.parametrize("model_class, class_name, special", [
    (CogVideoXTransformer3DModel, COGVIDEOX, {"use_rotary_positional_embeddings"}),
    (LatteTransformer3DModel, LATTE, {"caption_channels", "sample_size", "cross_attention_dim"})])
def test_every_diffusers_option_is_honoured_fixed_or_without_effect(model_class, class_name, special):
    parameters = inspect.signature(model_class.__init__).parameters
    known = set(_SAME[class_name]) | set(_FIXED[class_name]) | set(NO_EFFECT[class_name]) | special
    assert set(parameters) - {"self"} == known
    # a key a config.json lacks means diffusers' default, not DiTConfig's
    assert DIFFUSERS_DEFAULTS[class_name] == {key: parameters[key].default for key in known}


@pytest.mark.parametrize("name", sorted(DIT_CONFIGS))
def test_keys_a_config_lacks_take_diffusers_defaults(name):
    """Published configs predate later options (CogVideoX 1.0 has no patch_size_t: one frame per patch)."""
    config, defaults = DIT_CONFIGS[name], DIFFUSERS_DEFAULTS[DIT_CONFIGS[name]["_class_name"]]
    shortened = {key: value for key, value in config.items() if key not in defaults or value != defaults[key]}
    assert len(shortened) < len(config)
    assert dit_config_from_diffusers(shortened, name=name) == full_scale_dit_config(name)
    if name.startswith("cogvideox"):
        assert "patch_size_t" not in config and full_scale_dit_config(name).patch_size_t is None


@pytest.mark.parametrize("name, key, value", [
    ("cogvideox-2b", "use_learned_positional_embeddings", True), ("cogvideox-5b", "ofs_embed_dim", 512),
    ("cogvideox-2b", "flip_sin_to_cos", False), ("cogvideox-2b", "timestep_activation_fn", "gelu"),
    ("cogvideox-2b", "patch_bias", False), ("latte-1", "norm_type", "layer_norm"), ("latte-1", "dropout", 0.1),
    ("latte-1", "cross_attention_dim", 768), ("cogvideox-5b", "a_future_option", 1),
    ("latte-1", "a_future_option", 1)])
def test_config_options_minivdm_does_not_implement_are_refused_by_name(name, key, value):
    with pytest.raises(ValueError, match=key):
        dit_config_from_diffusers({**DIT_CONFIGS[name], key: value}, name=name)


def test_wrong_class_and_impossible_combinations_are_refused():
    with pytest.raises(ValueError, match="_class_name='UNet3DConditionModel'"):
        dit_config_from_diffusers({**DIT_CONFIGS["cogvideox-2b"], "_class_name": "UNet3DConditionModel"}, name="x")
    with pytest.raises(ValueError, match="needs caption_channels"):
        dit_config_from_diffusers({k: v for k, v in DIT_CONFIGS["latte-1"].items() if k != "caption_channels"},
                                  name="x")
    with pytest.raises(ValueError, match="attention='factorised' is implemented with text_conditioning='cross'"):
        DiTConfig(text_conditioning="joint", attention="factorised")
    with pytest.raises(ValueError, match="positions='rotary' is implemented for text_conditioning='joint'"):
        DiTConfig(text_conditioning="cross", positions="rotary", patch_size_t=None)
    with pytest.raises(ValueError, match="attention_head_dim must be a multiple of 16"):
        DiTConfig(attention_head_dim=24)
    with pytest.raises(ValueError, match="DiTConfig.attention must be one of"):
        DiTConfig(attention="windowed")


TINY_JOINT = DiTConfig(name="tiny-joint", text_conditioning="joint", positions="rotary", in_channels=4,
                       out_channels=4, patch_size=2, patch_size_t=2, num_attention_heads=2, attention_head_dim=16,
                       num_layers=2, text_embed_dim=12, time_embed_dim=24)
TINY_CROSS = DiTConfig(name="tiny-cross", text_conditioning="cross", attention="factorised", positions="sincos",
                       in_channels=4, out_channels=8, patch_size=2, patch_size_t=None, num_attention_heads=2,
                       attention_head_dim=16, num_layers=2, text_embed_dim=12, norm_elementwise_affine=False,
                       norm_eps=1e-6, sample_height=16, sample_width=16)


@pytest.mark.parametrize("video_shape, text_shape, match", [
    ((4, 4, 8, 8), (2, 7, 12), r"video must be \(B, C, T, H, W\)"),
    ((2, 3, 4, 8, 8), (2, 7, 12), r"C = 4 channels"),
    ((2, 4, 4, 8, 8), (2, 12), r"text must be \(B, L, text_embed_dim\)"),
    ((2, 4, 4, 8, 8), (2, 7, 10), r"text must be \(B, L, 12\) with B = 2"),
    ((2, 4, 4, 8, 8), (3, 7, 12), r"text must be \(B, L, 12\) with B = 2"),
    ((2, 4, 4, 15, 8), (2, 7, 12), r"H = 15 is not a multiple of its patch size 2"),
    ((2, 4, 3, 8, 8), (2, 7, 12), r"T \(frames\) = 3 is not a multiple of its patch size 2")])
def test_bad_inputs_are_refused_with_the_expected_layout(video_shape, text_shape, match):
    model = VideoDiT(TINY_JOINT)
    with pytest.raises(ValueError, match=match):
        model(torch.randn(*video_shape), torch.tensor([1, 2]), torch.randn(*text_shape))


def test_bad_text_mask_is_refused():
    model = VideoDiT(TINY_JOINT)
    with pytest.raises(ValueError, match=r"text_mask must be a bool \(B, L\) = \(2, 7\)"):
        model(torch.randn(2, 4, 2, 8, 8), torch.tensor([1, 2]), torch.randn(2, 7, 12), torch.ones(2, 7))


def _checkpoint(tmp_path, model, edit):
    source, broken = tmp_path / "source", tmp_path / "broken"
    _saved_random(model, source)
    state = load_file(source / WEIGHTS)
    edit(state)
    broken.mkdir()
    (broken / "config.json").write_text((source / "config.json").read_text())
    save_file(state, broken / WEIGHTS)
    return broken


@pytest.mark.parametrize("model, edit, named", [
    (lambda: _cogvideox(True), lambda state: state.pop("transformer_blocks.1.ff.net.2.weight"),
     "transformer_blocks.1.ff.net.2.weight"),
    (lambda: _cogvideox(False), lambda state: state.update({"patch_embed.text_proj.weight": torch.zeros(32, 11)}),
     r"patch_embed.text_proj.weight: \(32, 11\) vs \(32, 12\)"),
    (lambda: _cogvideox(True), lambda state: state.update({"patch_embed.pos_embedding": torch.zeros(1, 4, 32)}),
     "patch_embed.pos_embedding"),
    (lambda: _latte(), lambda state: state.pop("pos_embed.proj.weight"), "patch_embed.proj.weight")],
    ids=["missing", "mis-shaped", "unexpected", "latte-renamed-missing"])
def test_load_dit_names_the_key_a_checkpoint_gets_wrong(tmp_path, model, edit, named):
    with pytest.raises(CheckpointMismatchError, match=named):
        load_dit(_checkpoint(tmp_path, model(), edit))


@pytest.mark.parametrize("config", [TINY_JOINT, TINY_CROSS], ids=lambda config: config.name)
def test_zero_init_modulation_makes_every_block_the_identity_and_the_output_zero(config):
    torch.manual_seed(0)
    model = zero_init_modulation(VideoDiT(config)).eval()
    seen = []

    def check_identity(module, args, kwargs, output):
        if isinstance(output, tuple):  # joint blocks: (z, c) in, (z, c) out
            assert torch.equal(output[0], args[0]) and torch.equal(output[1], args[1])
        else:
            assert torch.equal(output, args[0])
        seen.append(module)

    blocks = [*model.transformer_blocks, *getattr(model, "temporal_transformer_blocks", [])]
    for block in blocks:
        block.register_forward_hook(check_identity, with_kwargs=True)
    video, timestep, text = _inputs(2, 4, 4, 16, 16)
    with torch.no_grad():
        output = model(video, timestep, text)
    assert len(seen) == len(blocks) and {id(block) for block in seen} == {id(block) for block in blocks}
    assert torch.equal(output, torch.zeros_like(output))


@pytest.mark.parametrize("config", [TINY_JOINT, TINY_CROSS], ids=lambda config: config.name)
def test_masked_text_tokens_change_nothing(config):
    torch.manual_seed(0)
    model = VideoDiT(config).eval()
    video, timestep, text = _inputs(2, 4, 4, 16, 16)
    text_mask = torch.tensor([[True] * 5 + [False] * 2, [True] * 3 + [False] * 4])
    changed = text.clone()
    changed[0, 5:], changed[1, 3:] = torch.randn(2, 12) * 10, torch.randn(4, 12) * 10
    with torch.no_grad():
        reference = model(video, timestep, text, text_mask)
        torch.testing.assert_close(model(video, timestep, changed, text_mask), reference, atol=1e-5, rtol=1e-5)
        assert not torch.allclose(model(video, timestep, changed), model(video, timestep, text), atol=1e-3)
