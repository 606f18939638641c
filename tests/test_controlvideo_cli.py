"""`minivdm generate --method controlvideo` on tiny checkpoints in the published folder layouts: a random SD
pipeline, a random ControlNet saved on its own (as lllyasviel's are) and a random DPT depth model. The command
must feed controlvideo_latents the Canny edges (or the depth, normalised once over the video) of the first --frames
frames of the control video, and write what decode_frames makes of the latents. Bad input is refused by name,
before any checkpoint loads, and nothing is ever downloaded."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from minivdm.__main__ import main
from minivdm.io.video_files import read_video, write_video

import sd_fixtures

CONTROL_FRAMES = 5  # the control video is one frame longer than the clips generated: only the first --frames count


def moving_square_video(frames: int = CONTROL_FRAMES, size: int = 16) -> torch.Tensor:
    """(3, frames, size, size) in [-1, 1]: a white 6 x 6 square on black moving 2 px right per frame."""
    return sd_fixtures.moving_square_video(frames, size)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """Folders: a tiny random SD pipeline (sd/), its ControlNet (diffusers' from_unet, zero convolutions
    randomised, control at 2x the latent size) saved alone (controlnet/), a control video (.gif: exact colours)."""
    from diffusers import ControlNetModel as DiffusersControlNet

    from sd_fixtures import make_tiny_sd_pipeline
    from test_controlnet import randomise_zero_convolutions

    root = tmp_path_factory.mktemp("controlvideo_cli")
    sd = make_tiny_sd_pipeline(root / "sd")
    torch.manual_seed(3)
    net = DiffusersControlNet.from_unet(sd.unet, conditioning_embedding_out_channels=(8, 16)).eval()
    randomise_zero_convolutions(net)
    net.save_pretrained(root / "controlnet", safe_serialization=True)
    write_video(root / "square.gif", moving_square_video(), fps=4)
    return {"sd": root / "sd", "controlnet": root / "controlnet", "video": root / "square.gif", "root": root}


@pytest.fixture(scope="module")
def tiny_depth_model(tmp_path_factory):
    """A tiny random DPT (transformers' depth estimator) with its image processor, saved with save_pretrained.
    Weights drawn wider than the default so that its depth depends on the frame (at the default it is nearly a
    constant)."""
    folder = tmp_path_factory.mktemp("dpt")
    sd_fixtures.tiny_dpt(folder)
    return folder


def command(tiny, out, *extra: str) -> list[str]:
    return ["generate", "--config", "sd15", "--method", "controlvideo", "--prompt", "a red circle",
            "--control-video", str(tiny["video"]), "--weights", str(tiny["sd"]),
            "--controlnet-weights", str(tiny["controlnet"]), "--frames", "4", "--steps", "3", "--seed", "2",
            "--height", "16", "--width", "16", "--no-config-check", "--device", "cpu", "--out", str(out), *extra]


@pytest.fixture
def recorded(monkeypatch):
    """Every call of controlvideo_latents made through the command: its arguments and its latents."""
    import minivdm.methods.controlvideo as controlvideo_module

    calls = []
    real = controlvideo_module.controlvideo_latents

    def recording(*args, **kwargs):
        latents = real(*args, **kwargs)
        calls.append({"control": args[7], "kwargs": kwargs, "latents": latents})
        return latents

    monkeypatch.setattr(controlvideo_module, "controlvideo_latents", recording)
    return calls


def reference_canny(video: torch.Tensor) -> torch.Tensor:
    """Canny edges (100, 200) of each grey uint8 frame of a (3, N, H, W) video in [-1, 1], as (1, 3, N, H, W)."""
    import cv2

    frames = ((video.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    edges = [cv2.Canny(cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY), 100, 200) for frame in frames]
    return torch.from_numpy(np.stack(edges)).float().div(255)[None, None].expand(1, 3, -1, -1, -1)


def test_controlvideo_command_follows_the_canny_edges_of_the_control_video(tiny, tmp_path, recorded):
    """The command's controls are the Canny edges of frames 1-4 of the control video (frame by frame: the square
    moves), its latents are controlvideo_latents' on those controls (default fully cross-frame attention, the
    smoother at steps 1 and 2 of 3), and the .gif holds their decoded frames. A wrong control (every frame's
    edges those of frame 1) gives a video far from the file (the test can tell)."""
    from minivdm.methods.controlvideo import controlvideo_latents
    from minivdm.methods.text_to_image import load_components
    from minivdm.methods.text_to_video import decode_frames
    from minivdm.models.controlnet import ControlNetModel

    out = tmp_path / "clip.gif"
    assert main(command(tiny, out, "--controlnet", "canny", "--conditioning-scale", "0.8")) == 0
    expected_control = reference_canny(read_video(tiny["video"])[:, :4])
    assert len(recorded) == 1
    control = recorded[0]["control"]
    assert control.shape == (1, 3, 4, 16, 16)
    assert torch.equal(control, expected_control)
    assert all(not torch.equal(control[:, :, k], control[:, :, 0]) for k in range(1, 4))  # the edges move
    kwargs = recorded[0]["kwargs"]
    assert (kwargs["attention"], kwargs["smoother_steps"], kwargs["clip_length"], kwargs["conditioning_scale"],
            kwargs["num_steps"]) == ("all", (1, 2), None, 0.8, 3)

    unet, vae, text_encoder, tokenizer, settings = load_components(tiny["sd"])
    controlnet = ControlNetModel.from_pretrained(tiny["controlnet"])

    def video_for(control: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        latents = controlvideo_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, "a red circle",
                                       control, smoother_steps=(1, 2), conditioning_scale=0.8, num_steps=3,
                                       generator=torch.Generator().manual_seed(2))
        with torch.no_grad():
            return latents, decode_frames(vae, latents)[0].clamp(-1, 1)

    latents, expected = video_for(expected_control)
    assert torch.allclose(recorded[0]["latents"], latents, atol=1e-5)
    written = read_video(out)
    assert written.shape == expected.shape == (3, 4, 16, 16)
    # a GIF palette holds the 256 pixels of a 16 x 16 frame exactly: only the rounding to 8 bits is left
    assert (written - expected).abs().max() <= 2 / 255, (written - expected).abs().max()
    _, wrong = video_for(expected_control[:, :, :1].expand(-1, -1, 4, -1, -1).contiguous())
    assert (written - wrong).abs().mean() > 0.03, (written - wrong).abs().mean()


def reference_depth(video: torch.Tensor, folder) -> torch.Tensor:
    """The DPT's depth of each frame (N, H, W), bicubic to the frame size, not normalised."""
    from transformers import AutoImageProcessor, AutoModelForDepthEstimation

    frames = ((video + 1) * 127.5).round().to(torch.uint8).permute(1, 2, 3, 0).numpy()
    processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
    model = AutoModelForDepthEstimation.from_pretrained(folder, local_files_only=True).float().eval()
    with torch.no_grad():
        depth = model(**processor(images=list(frames), return_tensors="pt")).predicted_depth
    return F.interpolate(depth[:, None], size=video.shape[-2:], mode="bicubic", align_corners=False)[:, 0]


def test_depth_controls_are_normalised_once_over_the_video(tiny_depth_model):
    """Depth maps in [0, 1], 3 equal channels, min 0 and max 1 over the whole video; each frame keeps its depth
    relative to the others (one min / max, not one per frame, so the control does not flicker)."""
    from minivdm.full_scale import depth_controls

    video = moving_square_video(4)
    video[:, 3] *= 0.5  # a dimmer frame: the DPT's range differs from frame to frame
    controls = depth_controls(video, tiny_depth_model)
    assert controls.shape == (1, 3, 4, 16, 16)
    assert controls.min() == 0 and controls.max() == 1
    assert torch.equal(controls[:, 0], controls[:, 1]) and torch.equal(controls[:, 0], controls[:, 2])
    raw = reference_depth(video, tiny_depth_model)
    assert torch.allclose(controls[0, 0], (raw - raw.min()) / (raw.max() - raw.min()), atol=1e-5)
    per_frame = controls[0, 0].flatten(1)
    assert (per_frame.max(1).values < 0.99).any() and (per_frame.min(1).values > 0.01).any()
    # uint8 frames give the same maps as the float frames they round to
    as_uint8 = ((video + 1) * 127.5).round().to(torch.uint8)
    assert torch.allclose(depth_controls(as_uint8, tiny_depth_model), controls, atol=1e-6)


def test_controlvideo_command_runs_with_depth_and_the_other_options(tiny, tiny_depth_model, tmp_path, recorded):
    """--controlnet depth --depth-model: the controls are depth_controls of the first 3 frames, resized to
    --height x --width; --attention, --smoother-steps none, --clip-length and --conditioning-scale reach the
    sampler; an .mp4 with 3 frames."""
    from minivdm.full_scale import depth_controls

    out = tmp_path / "depth.mp4"
    assert main(command(tiny, out, "--controlnet", "depth", "--depth-model", str(tiny_depth_model), "--frames", "3",
                        "--steps", "2", "--attention", "first", "--smoother-steps", "none", "--clip-length", "2",
                        "--conditioning-scale", "0.5", "--height", "32", "--width", "24")) == 0
    assert read_video(out).shape == (3, 3, 32, 32)  # H.264 frames are padded to multiples of 16
    control = recorded[0]["control"]
    resized = F.interpolate(read_video(tiny["video"])[:, :3].transpose(0, 1), size=(32, 24), mode="bilinear",
                            align_corners=False, antialias=True).transpose(0, 1)
    assert control.shape == (1, 3, 3, 32, 24)
    assert torch.allclose(control, depth_controls(resized, tiny_depth_model), atol=1e-6)
    assert control.min() == 0 and control.max() == 1
    per_frame = control[0, 0].flatten(1)  # one normalisation: not every frame spans [0, 1]
    assert (per_frame.max(1).values < 0.99).any() or (per_frame.min(1).values > 0.01).any()
    kwargs = recorded[0]["kwargs"]
    assert (kwargs["attention"], kwargs["smoother_steps"], kwargs["clip_length"], kwargs["conditioning_scale"],
            kwargs["num_steps"]) == ("first", (), 2, 0.5, 2)


def test_canny_controls_take_the_layouts_of_read_video():
    from minivdm.full_scale import canny_controls, default_smoother_steps

    video = moving_square_video(3)
    edges = canny_controls(video)
    assert edges.shape == (1, 3, 3, 16, 16) and set(edges.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(edges, reference_canny(video))
    assert torch.equal(canny_controls(((video + 1) * 127.5).round().to(torch.uint8)), edges)
    with pytest.raises(ValueError, match=r"must be a tensor \(C, N, H, W\) with C = 3 \(RGB\) or 1 \(grey\).*got \(3, 16, 16\)"):
        canny_controls(video[:, 0])
    assert default_smoother_steps(50) == (20, 21) and default_smoother_steps(3) == (1, 2)
    assert default_smoother_steps(2) == (0, 1) and default_smoother_steps(1) == (0,)


@pytest.mark.parametrize("extra, message", [
    (["--controlnet", "edges"], "argument --controlnet: invalid choice: 'edges'"),
    (["--method", "text2video-zero"], "--controlnet, --control-video, --controlnet-weights belong to --method controlvideo"),
    (["--conditioning-scale", "-1"], "--conditioning-scale must be a number >= 0, got -1.0"),
    (["--depth-model", "somewhere"], "--depth-model belongs to --controlnet depth, got --controlnet canny"),
    (["--smoother-steps", "a,b"], "expected sampler step indices >= 0 separated by commas"),
])
def test_refused_options_name_what_was_expected(tiny, tmp_path, capsys, extra, message):
    argv = command(tiny, tmp_path / "x.mp4", "--controlnet", "canny")
    if extra[0] == "--method":  # without --method controlvideo
        index = argv.index("controlvideo")
        argv = argv[:index - 1] + argv[index + 1:]
    with pytest.raises(SystemExit):
        main(argv + extra)
    assert message in capsys.readouterr().err


def test_an_unknown_control_is_refused_by_name(tiny, tmp_path):
    from minivdm.full_scale import generate_controlled_video

    with pytest.raises(ValueError, match=r"control \(--controlnet\) must be one of \('canny', 'depth'\), got 'edges'"):
        generate_controlled_video("sd15", "x", tmp_path / "x.gif", control_video=tiny["video"], control="edges")


def test_method_controlvideo_needs_a_control_video_and_a_control(tiny, tmp_path, capsys):
    argv = command(tiny, tmp_path / "x.mp4")
    with pytest.raises(SystemExit):
        main(argv)
    assert "--method controlvideo needs --controlnet" in capsys.readouterr().err
    index = argv.index("--control-video")
    with pytest.raises(SystemExit):
        main(argv[:index] + argv[index + 2:] + ["--controlnet", "canny"])
    assert "--method controlvideo needs --control-video (a video" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # and the options belong to the method
        main(["generate", "--config", "sd15", "--prompt", "x", "--out", str(tmp_path / "x.png"), "--controlnet", "canny"])
    assert "--controlnet belong to --method controlvideo" in capsys.readouterr().err


def test_bad_control_video_and_weights_are_refused_by_name(tiny, tiny_depth_model, tmp_path, capsys):
    def error_of(*extra: str, argv=None) -> str:
        assert main((argv or command(tiny, tmp_path / "x.mp4", "--controlnet", "canny")) + list(extra)) == 2
        return capsys.readouterr().err

    missing = tmp_path / "missing.gif"
    assert f"--control-video: no video file at {missing}" in error_of("--control-video", str(missing))
    assert "has 5 frames, fewer than the 9 asked for (--frames)" in error_of("--frames", "9")
    assert "--config must be one of ['sd14', 'sd15'], got 'sd2-depth'" in error_of("--config", "sd2-depth")
    assert "--out must end in .mp4 or .gif, got" in error_of("--out", str(tmp_path / "x.png"))
    assert "smoother steps must be step indices in [0, 2]" in error_of("--smoother-steps", "3")
    assert "clip_length (--clip-length) must be a whole number >= 2" in error_of("--clip-length", "1")
    assert "height and width must be multiples of the VAE's factor 2, got 15x16" in error_of("--height", "15")
    depth = command(tiny, tmp_path / "x.mp4", "--controlnet", "depth")
    assert "depth controls need a local transformers depth-estimation model folder" in error_of(argv=depth)
    assert "--depth-model nowhere: no folder there, and minivdm never downloads" in error_of("--depth-model", "nowhere",
                                                                                           argv=depth)
    # the SD pipeline folder is not a ControlNet; the ControlNet of the tiny U-Net is not SD 1.5's
    assert "expected a ControlNet folder (config.json and weights at the top, as lllyasviel/sd-controlnet-canny " \
           "ships) or a pipeline folder with controlnet/" in error_of("--controlnet-weights", str(tiny["sd"]))
    checked = [arg for arg in command(tiny, tmp_path / "x.mp4", "--controlnet", "canny") if arg != "--no-config-check"]
    err = error_of(argv=checked)
    assert "do not have the controlnet-sd15-canny architecture" in err and "block_out_channels" in err
    assert "expected the canny ControlNet of sd15's U-Net" in err


def test_a_pipeline_folder_with_controlnet_inside_loads_the_same_controlnet(tiny, tmp_path):
    from minivdm.full_scale import load_checked_controlnet

    pipeline = tmp_path / "pipeline"
    shutil.copytree(tiny["controlnet"], pipeline / "controlnet")
    options = dict(config_name="sd15", control="canny", device="cpu", dtype="fp32", check_config=False)  # noqa: C408
    alone, inside = (load_checked_controlnet(str(folder), **options) for folder in (tiny["controlnet"], pipeline))
    assert all(torch.equal(a, b) for a, b in zip(alone.state_dict().values(), inside.state_dict().values()))


def test_missing_controlnet_weights_never_download(tiny, tmp_path, monkeypatch, capsys):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    asked = []
    real = huggingface_hub.snapshot_download

    def only_local(repo_id, **kwargs):
        asked.append((repo_id, kwargs.get("local_files_only")))
        return real(repo_id, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", only_local)
    argv = command(tiny, tmp_path / "x.mp4", "--controlnet", "canny")
    index = argv.index("--controlnet-weights")
    assert main(argv[:index] + argv[index + 2:]) == 2
    err = capsys.readouterr().err
    assert "lllyasviel/sd-controlnet-canny is not in the local Hugging Face cache and minivdm never downloads" in err
    assert "--controlnet-weights /path/to/a/local/copy" in err
    assert asked == [("lllyasviel/sd-controlnet-canny", True)]
