"""Gen-1 at full scale (`minivdm generate --config sd2-depth --method gen1`), on tiny random checkpoints in the
published layouts (an SD 2 depth pipeline with a 5-channel U-Net, a DPT depth model, a CLIP image encoder), never
downloaded; and the full-size architecture on the meta device.

* parity: SD 2 depth's U-Net loaded through our loader and inflated into a Gen1UNet is, frame by frame, diffusers'
  U-Net on [z ; depth] with the content tokens as its text; with trained (here random) temporal layers the frames
  interact;
* the full-size Gen-1 U-Net is SD 2 depth's 865.91 M parameters (every published key, same shape) plus its
  temporal layers, counted independently from the architecture: GEN1_SD2_DEPTH_TEMPORAL_M + 865.91 =
  GEN1_SD2_DEPTH_PARAMETERS_M;
* the command feeds the sampler depth_to_structure of the depth model's depth of the first --frames frames and
  content_tokens of the CLIP image embedding of --content-image, and writes what the Gen-1 U-Net samples from them;
  --gen1-weights changes the video; bad input is refused by name before any checkpoint loads.
"""

from __future__ import annotations

import pytest
import torch

from minivdm.__main__ import main
from minivdm.io.video_files import read_video, write_video
from test_controlvideo_cli import reference_depth as controlvideo_reference_depth
from sd_fixtures import TINY_UNET, moving_square_video, randomise_parameters, tiny_dpt

SD2_DEPTH_PARAMETERS_M = 865.91          # tests/test_unet_2d.py: PUBLISHED_PARAMETERS_M["sd2-depth"]
GEN1_SD2_DEPTH_TEMPORAL_M = 182.96       # 44 temporal Conv1d + 16 temporal attention blocks (182,964,160)
GEN1_SD2_DEPTH_PARAMETERS_M = 1048.88    # the whole Gen-1 U-Net on SD 2 depth (1,048,877,764)
TINY_DEPTH_UNET = dict(TINY_UNET, in_channels=5, out_channels=4, use_linear_projection=True)  # SD 2 depth's layout
SOURCE_FRAMES = 5  # the source video is one frame longer than the clips generated: only the first --frames count


def tiny_clip_image_encoder(folder, projection_dim: int = 32):
    """A tiny random CLIPVisionModelWithProjection and its CLIPImageProcessor, saved together."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(1)
    model = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4, image_size=32, patch_size=8,
        projection_dim=projection_dim)).eval()
    model.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """An SD 2 depth pipeline folder (diffusers' StableDiffusionDepth2ImgPipeline: a random 5-channel U-Net, the tiny
    VAE, text encoder, tokenizer, DDIM scheduler and the DPT as its depth estimator), the DPT alone, a CLIP image
    encoder of the U-Net's cross-attention width (and one of another width), a source video and a content image."""
    import imageio.v3 as iio
    from diffusers import StableDiffusionDepth2ImgPipeline
    from diffusers import UNet2DConditionModel as DiffusersUNet

    from sd_fixtures import tiny_shared_components

    root = tmp_path_factory.mktemp("gen1_full_scale")
    depth_estimator, feature_extractor = tiny_dpt(root / "dpt")
    torch.manual_seed(0)
    shared = tiny_shared_components(root)
    unet = randomise_parameters(DiffusersUNet(**TINY_DEPTH_UNET), seed=2)
    StableDiffusionDepth2ImgPipeline(unet=unet, depth_estimator=depth_estimator, feature_extractor=feature_extractor,
                                     **shared).save_pretrained(root / "sd2depth", safe_serialization=True)
    write_video(root / "square.gif", moving_square_video(SOURCE_FRAMES), fps=4)
    pixels = torch.randint(0, 256, (20, 28, 3), generator=torch.Generator().manual_seed(3), dtype=torch.uint8)
    iio.imwrite(root / "content.png", pixels.numpy())
    return {"sd": root / "sd2depth", "unet": unet, "dpt": root / "dpt", "video": root / "square.gif",
            "image": root / "content.png", "clip": tiny_clip_image_encoder(root / "clip"),
            "clip16": tiny_clip_image_encoder(root / "clip16", projection_dim=16), "root": root}


def our_gen1_unet(tiny):
    """Our image U-Net loaded from the pipeline folder, inflated into a fresh Gen1UNet (temporal layers: identity)."""
    from minivdm.models.gen1_unet import Gen1UNet
    from minivdm.models.unet_2d_condition import UNet2DConditionModel

    torch.manual_seed(0)
    return Gen1UNet.inflate(UNet2DConditionModel.from_pretrained(tiny["sd"])).eval()


def randomise_temporal_layers(unet, seed: int = 5, scale: float = 0.1):
    generator = torch.Generator().manual_seed(seed)
    parameters = dict(unet.named_parameters())
    with torch.no_grad():
        for name in unet.new_parameter_names():
            parameters[name].copy_(torch.randn(parameters[name].shape, generator=generator) * scale)
    return unet


# ------------------------------------------------------------------------------------------------
# The model: parity with diffusers' SD 2 depth U-Net, and the full-size architecture


def test_fresh_gen1_unet_is_sd2_depth_on_each_frame_of_latent_and_depth(tiny):
    """Gen1UNet(z, t, c, s) = diffusers' U-Net(cat([z_k, s_k]), t, c) on every frame k (depth AFTER the 4 latent
    channels, as SD 2 depth reads it); random temporal layers make the frames interact."""
    unet = our_gen1_unet(tiny)
    g = torch.Generator().manual_seed(4)
    z = torch.randn(2, 4, 3, 8, 8, generator=g)
    depth = torch.randn(2, 1, 3, 8, 8, generator=g)
    content = torch.randn(2, 1, 32, generator=g)
    timesteps = torch.tensor([10, 700])
    with torch.no_grad():
        ours = unet(z, timesteps, content, depth)
        reference = torch.stack([tiny["unet"](torch.cat([z[:, :, k], depth[:, :, k]], dim=1), timesteps,
                                              encoder_hidden_states=content).sample for k in range(3)], dim=2)
        assert (ours - reference).abs().max() <= 1e-5, (ours - reference).abs().max()
        assert (reference - torch.stack([tiny["unet"](torch.cat([z[:, :, k], torch.zeros_like(depth[:, :, k])], 1),
                                                      timesteps, encoder_hidden_states=content).sample
                                         for k in range(3)], dim=2)).abs().max() > 1e-2  # the depth matters

        randomise_temporal_layers(unet)
        mixed = unet(z, timesteps, content, depth)
        assert (mixed - reference).abs().max() > 1e-2
        changed = z.clone()
        changed[:, :, 0] += 1.0  # only frame 1 changes: with temporal layers, frame 3 sees it
        assert (unet(changed, timesteps, content, depth)[:, :, 2] - mixed[:, :, 2]).abs().max() > 1e-3


def independent_temporal_count(config) -> tuple[int, int, int]:
    """(parameters, temporal Conv1d count, temporal attention count) of Make-A-Video's pseudo-3D layers on a U-Net
    config, from the architecture alone: one Conv1d(C, C, 3) (C*C*3 weights + C bias) after conv1 and after conv2 of
    every ResNet block, one temporal attention block after every spatial transformer (LayerNorm 2C, to_q / to_k /
    to_v C*C each without bias, to_out C*C + C)."""
    from minivdm.models.unet_2d_condition import ATTENTION_DOWN, ATTENTION_UP

    channels, layers = config.block_out_channels, config.layers_per_block
    resnets = ([c for c in channels for _ in range(layers)] + [channels[-1]] * 2            # down, mid
               + [c for c in channels[::-1] for _ in range(layers + 1)])                    # up
    transformers = ([c for c, kind in zip(channels, config.down_block_types) if kind == ATTENTION_DOWN
                     for _ in range(layers)] + [channels[-1]]
                    + [c for c, kind in zip(channels[::-1], config.up_block_types) if kind == ATTENTION_UP
                       for _ in range(layers + 1)])
    convs = sum(2 * (3 * c * c + c) for c in resnets)
    attention = sum(2 * c + 3 * c * c + (c * c + c) for c in transformers)
    return convs + attention, 2 * len(resnets), len(transformers)


def test_full_size_gen1_unet_is_sd2_depth_plus_its_temporal_layers_on_meta():
    from diffusers import UNet2DConditionModel as DiffusersUNet

    from minivdm.configs.stable_diffusion import SD2_DEPTH
    from minivdm.models.gen1_unet import Gen1UNet
    from minivdm.nn.pseudo3d import TemporalAttention, TemporalConv1d

    with torch.device("meta"):
        gen1 = Gen1UNet(SD2_DEPTH)
        theirs = DiffusersUNet(**{k: v for k, v in SD2_DEPTH.to_diffusers().items() if k != "_class_name"})
    temporal = set(gen1.new_parameter_names())
    state = gen1.state_dict()
    total = sum(p.numel() for p in gen1.parameters())
    temporal_count = sum(state[name].numel() for name in temporal)
    expected, convs, attentions = independent_temporal_count(SD2_DEPTH)
    assert (convs, attentions) == (44, 16)
    assert sum(isinstance(m, TemporalConv1d) for m in gen1.modules()) == convs
    assert sum(isinstance(m, TemporalAttention) for m in gen1.modules()) == attentions
    assert temporal_count == expected
    assert round(temporal_count / 1e6, 2) == GEN1_SD2_DEPTH_TEMPORAL_M
    assert round((total - temporal_count) / 1e6, 2) == SD2_DEPTH_PARAMETERS_M
    assert round(total / 1e6, 2) == GEN1_SD2_DEPTH_PARAMETERS_M
    # 100% of the published keys land on our spatial layers at their shapes, and nothing else is left over
    spatial = {name: tensor.shape for name, tensor in state.items() if name not in temporal}
    published = theirs.state_dict()
    assert set(spatial) == set(published)
    assert all(spatial[key] == published[key].shape for key in published)
    assert total - temporal_count == sum(p.numel() for p in theirs.parameters())


# ------------------------------------------------------------------------------------------------
# The command


def command(tiny, out, *extra: str) -> list[str]:
    return ["generate", "--config", "sd2-depth", "--method", "gen1", "--control-video", str(tiny["video"]),
            "--content-image", str(tiny["image"]), "--depth-model", str(tiny["dpt"]), "--image-encoder",
            str(tiny["clip"]), "--weights", str(tiny["sd"]), "--frames", "4", "--steps", "3", "--seed", "2",
            "--no-config-check", "--device", "cpu", "--out", str(out), *extra]


@pytest.fixture
def recorded(monkeypatch):
    """Every call of gen1.edit_video made through the command: its arguments and its latents."""
    import minivdm.methods.gen1 as gen1_module

    calls = []
    real = gen1_module.edit_video

    def recording(model, structure, content, schedule, times, **kwargs):
        latents = real(model, structure, content, schedule, times, **kwargs)
        calls.append({"structure": structure, "content": content, "times": times, "kwargs": kwargs,
                      "latents": latents})
        return latents

    monkeypatch.setattr(gen1_module, "edit_video", recording)
    return calls


def reference_depth(video: torch.Tensor, folder) -> torch.Tensor:
    """The DPT's raw relative inverse depth of each frame, bicubic to the frame size: (1, 1, N, H, W)."""
    return controlvideo_reference_depth(video, folder)[None, None]


def reference_content(tiny, encoder: str = "clip") -> torch.Tensor:
    """content_tokens of the CLIP image embedding of the content image, computed with transformers directly."""
    import imageio.v3 as iio
    from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection

    from minivdm.methods.gen1 import content_tokens

    processor = CLIPImageProcessor.from_pretrained(tiny[encoder])
    model = CLIPVisionModelWithProjection.from_pretrained(tiny[encoder]).eval()
    with torch.no_grad():
        embedding = model(**processor(images=[iio.imread(tiny["image"])], return_tensors="pt")).image_embeds
    return content_tokens(embedding)


def sampled_video(tiny, unet, structure, content, *, steps: int = 3, seed: int = 2, guidance: float = 7.5):
    """What the command should sample and decode: DDIM on the pipeline's grid from the seed's noise, integer
    timesteps, guidance on the content (null content zeros)."""
    from minivdm.methods.gen1 import edit_video
    from minivdm.methods.text_to_image import load_components
    from minivdm.methods.text_to_video import decode_frames

    _, vae, _, _, settings = load_components(tiny["sd"])
    frames, (h, w) = structure.shape[2], structure.shape[-2:]
    z_start = torch.randn((1, 4, frames, h, w), generator=torch.Generator().manual_seed(seed))
    times, step_ends = settings.times_and_step_ends(steps)

    def model(z_t, t, c, s):
        return unet(z_t, settings.schedule.timestep_from_t(t.double()), c, s)

    latents = edit_video(model, structure, content, settings.schedule, times, z_start=z_start, guidance_scale=guidance,
                         prediction_type=settings.prediction_type, step_ends=step_ends)
    with torch.no_grad():
        return latents, decode_frames(vae, latents)[0].clamp(-1, 1)


def test_gen1_command_samples_from_the_depth_structure_and_the_image_content(tiny, tmp_path, recorded, capsys):
    """The structure is depth_to_structure of the DPT's depth of frames 1-4 (t_s = 0), the content content_tokens of
    the CLIP image embedding; the .gif holds what a fresh Gen1UNet samples from them. Untrained: a warning says so."""
    from minivdm.methods.gen1 import depth_to_structure

    out = tmp_path / "gen1.gif"
    assert main(command(tiny, out)) == 0
    err = capsys.readouterr().err
    assert "Gen-1's trained weights are not public" in err and "not a trained edit" in err
    assert len(recorded) == 1
    call = recorded[0]
    depth = reference_depth(read_video(tiny["video"])[:, :4], tiny["dpt"])
    expected_structure = depth_to_structure(depth, (8, 8), 0)
    assert call["structure"].shape == (1, 1, 4, 8, 8)
    assert torch.allclose(call["structure"], expected_structure, atol=1e-5)
    assert all(not torch.allclose(call["structure"][:, :, k], call["structure"][:, :, 0]) for k in range(1, 4))
    expected_content = reference_content(tiny)
    assert call["content"].shape == (1, 1, 32)
    assert torch.allclose(call["content"], expected_content, atol=1e-5)
    assert call["kwargs"]["guidance_scale"] == 7.5

    unet = our_gen1_unet(tiny)
    latents, expected = sampled_video(tiny, unet, expected_structure, expected_content)
    assert torch.allclose(call["latents"], latents, atol=1e-5)
    written = read_video(out)
    assert written.shape == expected.shape == (3, 4, 16, 16)
    # a GIF palette holds the 256 pixels of a 16 x 16 frame exactly: only the rounding to 8 bits is left
    assert (written - expected).abs().max() <= 2 / 255, (written - expected).abs().max()
    # the test can tell: without the structure, or the content, the latents are far outside the tolerance
    for structure, content in ((torch.zeros_like(expected_structure), expected_content),
                               (expected_structure, torch.zeros_like(expected_content))):
        wrong, _ = sampled_video(tiny, unet, structure, content)
        assert (wrong - latents).abs().mean() > 1e-3, (wrong - latents).abs().mean()  # 100 x the tolerance


def test_structure_level_size_and_guidance_reach_the_sampler(tiny, tmp_path, recorded):
    """--structure-level 2 blurs the depth (at the latent size of --height x --width); an .mp4 of --frames frames."""
    from minivdm.methods.gen1 import depth_to_structure

    out = tmp_path / "gen1.mp4"
    assert main(command(tiny, out, "--structure-level", "2", "--height", "32", "--width", "24", "--frames", "3",
                        "--guidance", "3")) == 0
    assert read_video(out).shape == (3, 3, 32, 32)  # H.264 frames are padded to multiples of 16
    depth = reference_depth(read_video(tiny["video"])[:, :3], tiny["dpt"])
    structure = recorded[0]["structure"]
    assert structure.shape == (1, 1, 3, 16, 12)
    assert torch.allclose(structure, depth_to_structure(depth, (16, 12), 2), atol=1e-5)
    assert not torch.allclose(structure, depth_to_structure(depth, (16, 12), 0), atol=1e-2)
    assert recorded[0]["kwargs"]["guidance_scale"] == 3.0


def test_gen1_weights_change_the_video(tiny, tmp_path, recorded, capsys):
    """--gen1-weights with the temporal layers only, or with every parameter: the U-Net samples with them (the video
    differs from the untrained one), and no warning is printed."""
    from safetensors.torch import save_file

    from minivdm.methods.gen1 import depth_to_structure

    trained = randomise_temporal_layers(our_gen1_unet(tiny))
    state = {name: tensor.contiguous() for name, tensor in trained.state_dict().items()}
    save_file({name: state[name] for name in trained.new_parameter_names()}, str(tmp_path / "temporal.safetensors"))
    save_file(state, str(tmp_path / "all.safetensors"))

    assert main(command(tiny, tmp_path / "untrained.gif")) == 0
    capsys.readouterr()
    assert main(command(tiny, tmp_path / "temporal.gif", "--gen1-weights", str(tmp_path / "temporal.safetensors"))) == 0
    assert "not public" not in capsys.readouterr().err
    assert main(command(tiny, tmp_path / "all.gif", "--gen1-weights", str(tmp_path / "all.safetensors"))) == 0
    untrained, temporal, whole = (call["latents"] for call in recorded)
    assert torch.allclose(temporal, whole, atol=1e-6)
    assert (temporal - untrained).abs().max() > 1e-2
    depth = reference_depth(read_video(tiny["video"])[:, :4], tiny["dpt"])
    latents, _ = sampled_video(tiny, trained, depth_to_structure(depth, (8, 8), 0), reference_content(tiny))
    assert torch.allclose(temporal, latents, atol=1e-5)
    assert not torch.equal(read_video(tmp_path / "temporal.gif"), read_video(tmp_path / "untrained.gif"))


def test_a_whole_clip_model_folder_serves_as_the_image_encoder(tiny, tmp_path, recorded):
    """laion's OpenCLIP ViT-H/14 ships as a whole CLIPModel: its vision half and projection give the embedding."""
    import imageio.v3 as iio
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from minivdm.methods.gen1 import content_tokens

    torch.manual_seed(6)
    config = CLIPConfig(text_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                                     "num_attention_heads": 4, "vocab_size": 99},
                        vision_config={"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                                       "num_attention_heads": 4, "image_size": 32, "patch_size": 8}, projection_dim=32)
    model = CLIPModel(config).eval()
    model.save_pretrained(tmp_path / "clip_model")
    CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(
        tmp_path / "clip_model")
    argv = command(tiny, tmp_path / "x.gif", "--steps", "1")
    argv[argv.index(str(tiny["clip"]))] = str(tmp_path / "clip_model")
    assert main(argv) == 0
    processor = CLIPImageProcessor.from_pretrained(tmp_path / "clip_model")
    with torch.no_grad():
        embedding = model.get_image_features(**processor(images=[iio.imread(tiny["image"])], return_tensors="pt"))
    embedding = embedding if isinstance(embedding, torch.Tensor) else embedding.pooler_output
    assert torch.allclose(recorded[0]["content"], content_tokens(embedding), atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Refusals, by name, before any checkpoint loads


@pytest.fixture
def nothing_loads(monkeypatch):
    import minivdm.methods.text_to_image as text_to_image

    def refuse(*args, **kwargs):
        raise AssertionError("a checkpoint was loaded before the bad input was refused")

    monkeypatch.setattr(text_to_image, "load_components", refuse)


def without(argv: list[str], option: str) -> list[str]:
    index = argv.index(option)
    return argv[:index] + argv[index + 2:]


@pytest.mark.parametrize("change, message", [
    (lambda argv: argv + ["--prompt", "a red car"], "--method gen1 takes no --prompt"),
    (lambda argv: without(argv, "--content-image"), "--method gen1 needs --content-image"),
    (lambda argv: without(argv, "--image-encoder"), "--method gen1 needs --image-encoder"),
    (lambda argv: without(argv, "--depth-model"), "--method gen1 needs --depth-model"),
    (lambda argv: without(argv, "--control-video"), "--method gen1 needs --control-video"),
    (lambda argv: argv + ["--controlnet", "depth"], "--controlnet belong to --method controlvideo"),
    (lambda argv: argv + ["--smoother-steps", "1"], "--smoother-steps belong to --method controlvideo"),
    (lambda argv: argv + ["--motion", "left"], "--motion, --motion-strength and --foreground-mask belong to"),
    (lambda argv: argv + ["--motion-adapter", "x"], "--motion-adapter belongs to --config animatediff"),
    (lambda argv: argv + ["--structure-level", "-1"], "--structure-level must be a whole number >= 0"),
    (lambda argv: without(without(argv, "--method"), "--control-video") + ["--prompt", "x"],
     "--content-image, --image-encoder belong to --method gen1"),
    (lambda argv: argv[:argv.index("gen1")] + ["controlvideo", "--prompt", "x", "--controlnet", "depth"]
     + argv[argv.index("gen1") + 1:] + ["--structure-level", "1"],
     "--content-image, --image-encoder, --structure-level belong to --method gen1"),
])
def test_parser_refuses_misplaced_and_missing_options_by_name(tiny, tmp_path, capsys, nothing_loads, change, message):
    with pytest.raises(SystemExit):
        main(change(command(tiny, tmp_path / "x.gif")))
    assert message in capsys.readouterr().err


def test_every_other_generate_path_still_needs_a_prompt(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--config", "sd15", "--out", str(tmp_path / "x.png")])
    assert "--prompt is required" in capsys.readouterr().err


def test_bad_input_is_refused_by_name_before_loading(tiny, tmp_path, capsys, nothing_loads):
    from safetensors.torch import save_file

    def error_of(*extra: str, argv=None) -> str:
        assert main((argv or command(tiny, tmp_path / "x.gif")) + list(extra)) == 2
        return capsys.readouterr().err

    def replaced(option: str, value: str) -> list[str]:
        argv = command(tiny, tmp_path / "x.gif")
        argv[argv.index(option) + 1] = value
        return argv

    err = error_of(argv=replaced("--image-encoder", str(tiny["clip16"])))
    assert "its image embeddings are 16 wide, but the U-Net's cross-attention reads tokens of " \
           "cross_attention_dim 32" in err
    assert "--structure-level) must be a whole number from 0 (the exact depth) to 3" in error_of("--structure-level",
                                                                                              "4")
    assert "--config must be one of ['sd2-depth'], got 'sd15'" in error_of(argv=replaced("--config", "sd15"))
    assert "--out must end in .mp4 or .gif" in error_of(argv=replaced("--out", str(tmp_path / "x.png")))
    assert "--content-image nowhere.png: no image file there" in error_of(argv=replaced("--content-image",
                                                                                        "nowhere.png"))
    assert "--image-encoder nowhere: no folder there, and minivdm never downloads" in error_of(
        argv=replaced("--image-encoder", "nowhere"))
    assert f"--image-encoder {tiny['dpt']}: not a CLIP image encoder (its model_type is 'dpt'" in error_of(
        argv=replaced("--image-encoder", str(tiny["dpt"])))
    assert "--depth-model nowhere: no folder there" in error_of(argv=replaced("--depth-model", "nowhere"))
    assert "has 5 frames, fewer than the 9 asked for (--frames)" in error_of("--frames", "9")
    assert "--gen1-weights missing.safetensors: no such file" in error_of("--gen1-weights", "missing.safetensors")
    assert "multiples of 4 (the VAE's factor 2 times the U-Net's 2)" in error_of("--height", "18")
    # a weights file with a wrong name, or of another U-Net, is refused naming the keys
    unet = our_gen1_unet(tiny)
    temporal = {name: tensor.contiguous() for name, tensor in unet.state_dict().items()
                if name in unet.new_parameter_names()}
    renamed = dict(temporal)
    name = sorted(renamed)[0]
    renamed[name.replace("temporal", "temporel")] = renamed.pop(name)
    save_file(renamed, str(tmp_path / "renamed.safetensors"))
    err = error_of("--gen1-weights", str(tmp_path / "renamed.safetensors"))
    assert "does not fit the Gen-1 U-Net" in err and f"unexpected 1: ['{name.replace('temporal', 'temporel')}']" in err
    assert f"missing 1: ['{name}']" in err
    partial = dict(temporal)
    partial["conv_in.weight"] = unet.conv_in.weight.detach().contiguous()
    save_file(partial, str(tmp_path / "partial.safetensors"))
    assert "missing" in error_of("--gen1-weights", str(tmp_path / "partial.safetensors"))
    misshaped = dict(temporal, **{name: torch.zeros(3)})
    save_file(misshaped, str(tmp_path / "misshaped.safetensors"))
    assert f"mis-shaped 1: ['{name} (3,)" in error_of("--gen1-weights", str(tmp_path / "misshaped.safetensors"))
    # the tiny U-Net is not SD 2 depth's architecture
    checked = [arg for arg in command(tiny, tmp_path / "x.gif") if arg != "--no-config-check"]
    err = error_of(argv=checked)
    assert "do not have the sd2-depth architecture" in err and "block_out_channels" in err


def test_a_latent_only_unet_is_refused(tiny, tmp_path, capsys, nothing_loads):
    """An SD 1.5 pipeline (4 input channels) has no depth channel for the structure."""
    from sd_fixtures import make_tiny_sd_pipeline

    make_tiny_sd_pipeline(tmp_path / "sd15")
    argv = command(tiny, tmp_path / "x.gif")
    argv[argv.index("--weights") + 1] = str(tmp_path / "sd15")
    assert main(argv) == 2
    assert "must read out_channels + 1 = 5 channels (SD 2 depth: 4 + 1), got in_channels 4" in capsys.readouterr().err
