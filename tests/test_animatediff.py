"""AnimateDiff's motion modules (chapter 9, full scale): parity with diffusers' ``UNetMotionModel`` (SD U-Net +
``MotionAdapter``) on tiny random checkpoints written with ``save_pretrained`` and read through our loader; the
published SD 1.5 adapter's layout on the meta device (parameter count, every key and shape); the frame encoding;
identity at init; bad adapters refused by name."""

import json

import pytest
import torch

from minivdm.configs.stable_diffusion import SD15
from minivdm.models.animatediff_unet import AnimateDiffUNet, MotionAdapterConfig
from minivdm.models.unet_2d_condition import UNet2DConditionConfig, UNet2DConditionModel
from minivdm.nn.motion_module import SinusoidalFramePositions
from sd_fixtures import TINY_UNET, randomise_parameters

diffusers = pytest.importorskip("diffusers")

TINY_ADAPTER = dict(block_out_channels=(32, 64), motion_layers_per_block=1, motion_num_attention_heads=2,  # noqa: C408
                    motion_norm_num_groups=8, motion_max_seq_length=16)


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory):
    """(unet folder, adapter folder, diffusers' UNetMotionModel assembled from them)."""
    root = tmp_path_factory.mktemp("animatediff")
    unet = randomise_parameters(diffusers.UNet2DConditionModel(**TINY_UNET), 0)
    adapter = randomise_parameters(diffusers.MotionAdapter(**TINY_ADAPTER), 1)
    unet.save_pretrained(root / "unet")
    adapter.save_pretrained(root / "adapter")
    reference = diffusers.UNetMotionModel.from_unet2d(unet, adapter).eval()
    return root / "unet", root / "adapter", reference


def test_matches_diffusers_unet_motion_model(tiny_checkpoints):
    unet_dir, adapter_dir, reference = tiny_checkpoints
    ours = AnimateDiffUNet.from_pretrained(unet_dir, adapter_dir)
    generator = torch.Generator().manual_seed(2)
    batch, frames = 2, 6
    z = torch.randn(batch, 4, frames, 8, 8, generator=generator)
    text = torch.randn(batch, 7, 32, generator=generator)
    with torch.no_grad():
        # diffusers' pipeline gives every frame its clip's prompt (repeat_interleave over frames)
        expected = reference(z, torch.tensor(321), text.repeat_interleave(frames, dim=0)).sample
        got = ours(z, torch.tensor([321, 321]), text)
    assert got.shape == expected.shape == z.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_adapter_weights_round_trip_under_diffusers_names(tiny_checkpoints):
    unet_dir, adapter_dir, reference = tiny_checkpoints
    ours = AnimateDiffUNet.from_pretrained(unet_dir, adapter_dir)
    adapter = diffusers.MotionAdapter.from_pretrained(adapter_dir)
    theirs = adapter.state_dict()
    mine = ours.motion_adapter_state_dict()
    assert sorted(mine) == sorted(theirs)
    for key in theirs:
        torch.testing.assert_close(mine[key], theirs[key], rtol=0, atol=0)


def test_published_sd15_adapter_layout_on_the_meta_device():
    with torch.device("meta"):
        reference = diffusers.MotionAdapter()  # the published SD 1.5 v2 adapter's config is the default
        ours = AnimateDiffUNet(SD15, MotionAdapterConfig())
    theirs = {key: tuple(value.shape) for key, value in reference.state_dict().items()}
    mine = {key: tuple(value.shape) for key, value in ours.motion_adapter_state_dict().items()}
    assert mine == theirs, f"missing {sorted(set(theirs) - set(mine))[:3]}, unexpected {sorted(set(mine) - set(theirs))[:3]}"
    count = sum(parameter.numel() for name, parameter in ours.named_parameters() if ours.is_new(name))
    assert count == sum(parameter.numel() for parameter in reference.parameters()) == 453_209_280
    assert MotionAdapterConfig.from_diffusers(dict(reference.config)) == MotionAdapterConfig(name="loaded")


def test_frame_encoding_is_interleaved_sin_cos_of_the_frame_index():
    positions = SinusoidalFramePositions(8, max_frames=5)
    x = torch.zeros(3, 4, 8)
    encoded = positions(x)
    frame, k = 3, 1  # channels 2k, 2k+1 at frequency 10000^(-2k/8)
    frequency = 10000 ** (-2 * k / 8)
    torch.testing.assert_close(encoded[0, frame, 2 * k], torch.tensor(float(torch.sin(torch.tensor(frame * frequency)))))
    torch.testing.assert_close(encoded[0, frame, 2 * k + 1], torch.tensor(float(torch.cos(torch.tensor(frame * frequency)))))
    with pytest.raises(ValueError, match="at most 5 frames"):
        positions(torch.zeros(1, 6, 8))


def test_fresh_motion_modules_are_the_identity_and_see_frame_order():
    torch.manual_seed(0)
    config = UNet2DConditionConfig.from_diffusers(dict(TINY_UNET))
    image = UNet2DConditionModel(config).double().eval()  # float64: batching frames changes float32 rounding
    model = AnimateDiffUNet.inflate(image)
    assert all(torch.count_nonzero(module.pe) for name, module in model.named_modules() if name.endswith("pos_embed"))
    z, text = torch.randn(1, 4, 5, 8, 8, dtype=torch.float64), torch.randn(1, 7, 32, dtype=torch.float64)
    with torch.no_grad():
        expected = torch.stack([image(z[:, :, i], 0.5, text) for i in range(5)], dim=2)
        torch.testing.assert_close(model(z, 0.5, text), expected, rtol=0, atol=1e-6)
        for name, parameter in model.named_parameters():
            if name.endswith("proj_out.weight") and model.is_new(name):
                parameter.normal_(0, 0.5)
        still = z[:, :, :1].expand(-1, -1, 5, -1, -1)
        out = model(still, 0.5, text)
    # a still clip's frames differ only by their position: the frame encoding is what tells them apart
    assert (out[:, :, 0] - out[:, :, 4]).abs().max() > 1e-4


def test_bad_adapters_are_refused_by_name(tiny_checkpoints, tmp_path):
    unet_dir, adapter_dir, _ = tiny_checkpoints
    config = json.loads((adapter_dir / "config.json").read_text())
    with pytest.raises(ValueError, match="conv_in_channels"):
        MotionAdapterConfig.from_diffusers({**config, "conv_in_channels": 4})
    with pytest.raises(ValueError, match="block_out_channels"):
        AnimateDiffUNet(SD15, MotionAdapterConfig(block_out_channels=(32, 64)))
    with pytest.raises(ValueError, match="motion modules per block"):
        AnimateDiffUNet(SD15, MotionAdapterConfig(motion_layers_per_block=3))
    with pytest.raises(ValueError, match="an option minivdm's MotionAdapter does not know"):
        MotionAdapterConfig.from_diffusers({**config, "motion_activation": "gelu"})


def make_tiny_animatediff(root):
    """A tiny Stable Diffusion pipeline folder and a tiny motion adapter folder, and diffusers' AnimateDiffPipeline
    on them."""
    from sd_fixtures import make_tiny_sd_pipeline

    sd = make_tiny_sd_pipeline(root / "sd")
    adapter = randomise_parameters(diffusers.MotionAdapter(**TINY_ADAPTER), 5)
    adapter.save_pretrained(root / "adapter")
    pipe = diffusers.AnimateDiffPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                         motion_adapter=adapter, scheduler=sd.scheduler)
    return root / "sd", root / "adapter", pipe


def test_our_text_to_video_loop_reproduces_animatediff_pipeline(tmp_path):
    from einops import rearrange

    from minivdm.methods.text_to_video import load_animatediff_components, text_to_video

    sd_dir, adapter_dir, pipe = make_tiny_animatediff(tmp_path)
    prompts = ["a red circle", "a blue square moving"]
    expected = pipe(prompts, num_frames=5, num_inference_steps=8, guidance_scale=7.5, output_type="np",
                    generator=torch.Generator().manual_seed(0)).frames  # (B, T, H, W, C) in [0, 1]
    expected = rearrange(torch.as_tensor(expected), "b t h w c -> b c t h w") * 2 - 1
    unet, vae, text_encoder, tokenizer, settings = load_animatediff_components(sd_dir, adapter_dir)
    assert isinstance(unet, AnimateDiffUNet)
    video = text_to_video(unet, vae, text_encoder, tokenizer, settings, prompts, num_frames=5, num_steps=8,
                          guidance_scale=7.5, generator=torch.Generator().manual_seed(0), progress=False)
    assert video.shape == expected.shape
    assert (video - expected).abs().max() <= 2e-4  # 1e-4 in diffusers' [0, 1] pixels
    assert (video[:, :, 0] - video[:, :, -1]).abs().max() > 1e-2  # frames are not copies of each other
    with pytest.raises(ValueError, match="at most 16 frames"):
        text_to_video(unet, vae, text_encoder, tokenizer, settings, prompts, num_frames=17, num_steps=2, progress=False)


def test_generate_command_writes_the_video_our_animatediff_loop_makes(tmp_path, capsys):
    from minivdm.__main__ import main
    from minivdm.io.video_files import read_video
    from minivdm.methods.text_to_video import load_animatediff_components, text_to_video

    sd_dir, adapter_dir, _ = make_tiny_animatediff(tmp_path)
    out = tmp_path / "out" / "clip.gif"
    command = ["generate", "--config", "animatediff", "--prompt", "a red circle", "--weights", str(sd_dir),
               "--motion-adapter", str(adapter_dir), "--out", str(out), "--steps", "4", "--frames", "6", "--seed", "3",
               "--device", "cpu"]
    assert main(command + ["--no-config-check"]) == 0
    written = read_video(out)
    components = load_animatediff_components(sd_dir, adapter_dir)
    expected = text_to_video(*components, ["a red circle"], num_frames=6, num_steps=4, guidance_scale=7.5,
                             generator=torch.Generator().manual_seed(3), progress=False)[0]
    assert written.shape == expected.shape == (3, 6, 16, 16)
    assert (written - expected).abs().mean() < 0.02  # 8-bit colours with a palette: close, not equal
    capsys.readouterr()
    assert main(command) != 0  # a tiny U-Net is not SD 1.5: refused unless --no-config-check
    assert "do not have the sd15 architecture" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["generate", "--config", "sd15", "--prompt", "x", "--out", str(tmp_path / "x.png"),
              "--motion-adapter", str(adapter_dir)])
    assert "--motion-adapter belongs to --config animatediff" in capsys.readouterr().err
