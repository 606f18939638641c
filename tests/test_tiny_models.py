"""The shipped chapter-1 denoisers: they load, they denoise toy-world frames, they carry their recipe,
and the demo (the main job of the setup command) writes real, readable videos."""

import json

import pytest
import torch

from minivdm.demo import run_demo
from minivdm.diffusion import add_noise, sample
from minivdm.io import read_video
from minivdm.toy import read_metadata
from minivdm.toy.denoisers import CHAPTER1_SCHEDULE, chapter1_path, load_image_denoiser
from minivdm.toyworld import generate_images
from minivdm.toyworld.oracle import colour_fidelity


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_shipped_checkpoint_records_its_command_and_stays_small(kind):
    path = chapter1_path(kind)
    assert path.stat().st_size < 10 * 2**20
    metadata = read_metadata(path)
    assert metadata["command"].startswith(f"python -m minivdm train-denoiser --prediction {kind}")
    assert load_image_denoiser(kind).config.prediction_type == kind


@pytest.mark.parametrize("kind", ["eps", "v"])
def test_shipped_denoiser_beats_the_trivial_guess(kind):
    """At mid noise the model's x_hat is far closer to the data than z_t itself."""
    model = load_image_denoiser(kind)
    x = generate_images(32, seed=99).images
    t = torch.full((32,), 0.5)
    z_t, eps = add_noise(x, t, CHAPTER1_SCHEDULE, generator=torch.Generator().manual_seed(0))
    alpha, sigma = (v.float().item() for v in CHAPTER1_SCHEDULE.alpha_sigma(torch.tensor(0.5)))
    with torch.no_grad():
        prediction = model(z_t, t)
    from minivdm.diffusion import predictions_to_x0_eps

    x_hat, _ = predictions_to_x0_eps(prediction, z_t, alpha, sigma, kind)
    assert (x_hat - x).pow(2).mean() < 0.2 * (z_t / alpha - x).pow(2).mean()


def test_v_model_samples_are_readable_toy_world_frames():
    model = load_image_denoiser("v")
    z_1 = torch.randn(16, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    x = sample(model, z_1, CHAPTER1_SCHEDULE, CHAPTER1_SCHEDULE.uniform_times(25), progress=False)
    report = colour_fidelity(x.clamp(-1, 1)[:, :, None])
    assert report["readable_fraction"] >= 0.75, report
    assert report["palette_distance"] < 0.1, report


def test_missing_checkpoint_says_how_to_make_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="python -m minivdm train-denoiser --prediction v"):
        load_image_denoiser("v", tmp_path / "nothing.safetensors")
    with pytest.raises(ValueError, match="prediction_type"):
        load_image_denoiser("noise")


def test_demo_writes_videos_that_read_back(tmp_path):
    written = run_demo(tmp_path, seed=0)
    assert {p.name for p in written} == {f"{stem}.{suffix}" for stem in ("toyworld_sample", "chapter01_noising", "chapter01_sampling") for suffix in ("mp4", "gif")}
    sample_video = read_video(tmp_path / "toyworld_sample.gif")
    assert sample_video.shape == (3, 16, 128, 128)
    sampling = read_video(tmp_path / "chapter01_sampling.gif")
    assert sampling.shape[1] == 51  # noise + 50 DDIM steps
    assert (sampling[:, -1] - sampling[:, 0]).abs().mean() > 0.1  # the video actually changes


def test_shipped_text_to_image_model_is_small_records_its_command_and_follows_prompts():
    from minivdm.toy.text_to_image import TEXT_TO_IMAGE_DIR, evaluate_text_to_image, load_text_to_image
    from minivdm.toyworld import generate_images

    size = sum(p.stat().st_size for p in TEXT_TO_IMAGE_DIR.rglob("*") if p.is_file())
    assert size <= 10 * 2**20
    recorded = json.loads((TEXT_TO_IMAGE_DIR / "unet" / "config.json").read_text())["_minivdm"]
    assert recorded["command"].startswith("python -m minivdm train-text-to-image")
    model, tokenizer = load_text_to_image()
    scores = evaluate_text_to_image(model, tokenizer, generate_images(24, seed=7).captions, guidance_scale=3.0, num_steps=20)
    assert scores["colour_accuracy"] >= 0.9, scores  # measured 1.00
    assert scores["caption_accuracy"] >= 0.6, scores  # a regression guard; the note reports the 100-prompt figure


def test_text_to_image_recipe_writes_a_loadable_diffusers_folder(tmp_path):
    from minivdm.toy.text_to_image import load_text_to_image, train_text_to_image
    from minivdm.train import TrainConfig

    config = TrainConfig(steps=2, warmup_steps=1, checkpoint_every=2, log_every=1)
    folder = train_text_to_image(tmp_path / "model", config=config, dataset_size=16, command="test")
    assert {p.name for p in folder.iterdir()} == {"unet", "text_encoder", "tokenizer"}
    model, tokenizer = load_text_to_image(folder)
    ids = tokenizer(["a red circle"], padding="max_length", max_length=16, return_tensors="pt").input_ids
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 32, 32), torch.tensor([0.5]), ids).shape == (1, 3, 32, 32)
    with pytest.raises(FileNotFoundError, match="train-text-to-image"):
        load_text_to_image(tmp_path / "nothing")


def test_the_annealing_stage_starts_from_the_given_model_and_records_where_it_came_from(tmp_path):
    from minivdm.toy.text_to_image import load_text_to_image, train_text_to_image
    from minivdm.train import TrainConfig

    first = train_text_to_image(tmp_path / "first", config=TrainConfig(steps=2, warmup_steps=1, checkpoint_every=2,
                                                                       log_every=1), dataset_size=16, command="stage one")
    # a learning rate too small to move the weights: what comes out is what went in
    anneal = TrainConfig(steps=1, learning_rate=1e-12, warmup_steps=1, ema_decay=0.0, checkpoint_every=1, log_every=1,
                         seed=1, decay="cosine")
    second = train_text_to_image(tmp_path / "second", config=anneal, dataset_size=16, init_from=first, command="stage two")
    recorded = json.loads((second / "unet" / "config.json").read_text())["_minivdm"]
    assert recorded["init_from"] == ["stage one"] and recorded["command"] == "stage two"
    before, _ = load_text_to_image(first)
    after, _ = load_text_to_image(second)
    for (name, a), b in zip(before.state_dict().items(), after.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), f"{name} changed: the second stage did not start from the first"


def _recorded_commands(folder) -> list[str]:
    from minivdm.toy import DATA_DIR

    commands = []
    for weights in sorted((DATA_DIR / folder).glob("*.safetensors")):
        metadata = read_metadata(weights)
        if "command" in metadata:
            commands += [*json.loads(metadata.get("init_from") or "[]"), metadata["command"]]
    config = DATA_DIR / folder / "unet" / "config.json"
    if config.exists():
        recorded = json.loads(config.read_text())["_minivdm"]
        commands += [*recorded["init_from"], recorded["command"]]
    controlnet = DATA_DIR / folder / "controlnet" / "config.json"
    if controlnet.exists():
        commands.append(json.loads(controlnet.read_text())["_minivdm"]["command"])
    return commands


@pytest.mark.parametrize("folder", ["chapter01_denoisers", "toy_text_to_image", "toy_vdm", "toy_clip", "toy_controlnet",
                                    "toy_tune_a_video", "toy_make_a_video", "toy_video_ldm", "toy_frame_interpolation",
                                    "toy_gen1", "toy_dit", "toy_image_to_video"])
def test_every_shipped_model_has_a_card_quoting_the_commands_it_records(folder):
    from minivdm.toy import DATA_DIR

    card = (DATA_DIR / folder / "README.md").read_text()
    commands = _recorded_commands(folder)
    assert commands, f"data/{folder} records no command"
    for command in commands:
        assert command in card, f"data/{folder}/README.md does not quote the recorded command {command!r}"
    for heading in ("What it is", "Data", "Training", "Measured"):
        assert heading in card
    assert "FIGURES_" not in card  # a figure left to fill in


def test_every_data_folder_is_a_shipped_model_with_a_card():
    from minivdm.toy import DATA_DIR

    assert sorted(p.name for p in DATA_DIR.iterdir()) == ["chapter01_denoisers", "toy_clip", "toy_controlnet",
                                                          "toy_dit", "toy_frame_interpolation", "toy_gen1",
                                                          "toy_image_to_video", "toy_make_a_video", "toy_text_to_image",
                                                          "toy_tune_a_video", "toy_vdm", "toy_video_ldm"]


def test_the_shipped_tune_a_video_example_is_tuned_from_the_shipped_image_model():
    from minivdm.io.checkpoints import read_safetensors_metadata
    from minivdm.models.tune_a_video_unet import inflate_for_tune_a_video, tuned_parameter_names
    from minivdm.toy.tune_a_video import held_out_sources, load_toy_tune_a_video, tuned_example_dir

    unet, model, _, source, caption = load_toy_tune_a_video()  # refuses weights tuned from another base
    metadata = read_safetensors_metadata(tuned_example_dir() / "tuned_unet.safetensors")
    assert metadata["source_caption"] == caption == held_out_sources(1).captions[0]
    assert source.shape == (1, 3, 8, 32, 32) and metadata["steps"] == "500"
    untuned = inflate_for_tune_a_video(model.unet)
    moved = [n for n in tuned_parameter_names(unet) if not torch.equal(unet.get_parameter(n), untuned.get_parameter(n))]
    assert len(moved) == len(tuned_parameter_names(unet))  # every tuned tensor was tuned
    frozen = set(unet.state_dict()) - set(tuned_parameter_names(unet))
    assert all(torch.equal(unet.state_dict()[n], untuned.state_dict()[n]) for n in frozen)


@pytest.mark.parametrize("design", ["make-a-video", "video-ldm"])
def test_the_shipped_temporal_layers_were_trained_on_the_shipped_frozen_image_model(design):
    from minivdm.toy.temporal_layers import inflate, load_toy_temporal_layers, model_dir
    from minivdm.toy.text_to_image import load_text_to_image

    video, _, metadata = load_toy_temporal_layers(model_dir(design))  # refuses a file of the other design
    assert metadata["design"] == design and design in metadata["command"]
    image, _ = load_text_to_image()
    untrained = inflate(image.unet, design)
    new = set(video.unet.new_parameter_names())
    for name, tensor in untrained.state_dict().items():
        if name not in new:
            assert torch.equal(video.unet.state_dict()[name], tensor), f"{name}: an image weight changed"
    # trained: no longer the image model frame by frame (at init they agree to 1e-6, tests/test_inflated_unets.py)
    clip, text = torch.randn(1, 3, 8, 32, 32, generator=torch.Generator().manual_seed(0)), torch.randn(1, 6, 64)
    with torch.no_grad():
        per_frame = torch.stack([image.unet(clip[:, :, i], 500.0, text) for i in range(8)], dim=2)
        assert (video.unet(clip, 500.0, text) - per_frame).abs().mean() > 1e-2


def test_the_shipped_interpolation_network_starts_from_the_shipped_make_a_video_layers():
    from minivdm.toy.frame_interpolation import TOY_INTERPOLATION_DIR, load_toy_frame_interpolation
    from minivdm.toy.temporal_layers import model_dir

    model, _, metadata = load_toy_frame_interpolation()
    assert metadata["temporal_layers"].rstrip("/") == "data/toy_make_a_video" == str(
        model_dir("make-a-video").relative_to(TOY_INTERPOLATION_DIR.parents[1]))
    assert model.unet.conv_in.weight.shape[1] == 7  # [z_t ; x * m ; m]
    assert model.unet.conv_in.weight[:, 3:].abs().sum() > 0  # the known frames' channels were trained from zero


def test_the_shipped_image_to_video_model_started_from_the_shipped_video_ldm_layers():
    """Recorded: the command, the toy Video LDM folder it started from; the first frame's input channels and the
    speed's MLP, both zero at the start, were trained; the file stays small."""
    from minivdm.toy.image_to_video import TOY_IMAGE_TO_VIDEO_DIR, WEIGHTS_FILE, load_toy_image_to_video
    from minivdm.toy.temporal_layers import load_toy_temporal_layers, model_dir

    model, metadata = load_toy_image_to_video()
    assert metadata["command"].startswith("python -m minivdm train-toy-image-to-video")
    assert metadata["temporal_layers"].rstrip("/") == "data/toy_video_ldm"
    assert json.loads(metadata["log_sigma"]) == [0.7, 1.6], "trained on SVD's noise levels, as its card says"
    assert model.unet.conv_in.weight.shape[1] == 6  # [z_t ; x^0]
    assert model.unet.conv_in.weight[:, 3:].abs().sum() > 0 and model.add_embedding.linear_2.weight.abs().sum() > 0
    start, _, _ = load_toy_temporal_layers(model_dir("video-ldm"))
    moved = [name for name in start.unet.new_parameter_names()
             if not torch.equal(start.unet.get_parameter(name), model.unet.get_parameter(name))]
    assert moved, "the temporal layers were trained on from the toy Video LDM's"
    assert (TOY_IMAGE_TO_VIDEO_DIR / WEIGHTS_FILE).stat().st_size <= 10 * 2**20


def test_the_shipped_gen1_started_from_the_shipped_image_model_and_temporal_layers():
    """Every weight trained (as Gen-1 does), from the toy image U-Net with a zero-weight depth channel and chapter 9's
    Make-A-Video layers: the depth channel's weights start at zero, and every tensor that gets a gradient moved."""
    from minivdm.toy.gen1 import build_toy_gen1, load_toy_gen1

    model, _, metadata = load_toy_gen1()
    start = build_toy_gen1().unet.state_dict()
    trained = model.unet.state_dict()
    assert set(trained) == set(start) and metadata["command"].startswith("python -m minivdm train-toy-gen1")
    assert start["conv_in.weight"][:, 3].abs().sum() == 0 < trained["conv_in.weight"][:, 3].abs().sum()
    still = [name for name in start if torch.equal(start[name], trained[name])]
    # One content token: softmax over one key is 1, so cross-attention outputs c W_V whatever the query, and the
    # LayerNorm scale before it (norm2, feeding only the queries) gets no gradient. Everything else moved.
    assert all(name.endswith("transformer_blocks.0.norm2.weight") for name in still), still
    near = [name for name in start if (start[name] - trained[name]).norm() < 0.5 * (start[name].norm() + 1e-8)]
    assert len(near) > 0.5 * len(start), "most tensors stay near their starting point: the init was used"


def test_the_shipped_toy_dit_is_one_model_for_every_trained_size():
    """The anneal stage started from the recorded first stage; the same weights sample every (T, H, W) they were
    trained on, and they are trained (at initialisation adaLN-Zero makes the model output exactly zero)."""
    from minivdm.toy.dit import TOY_DIT_DIR, TOY_DIT_SIZES, load_toy_dit, sample_toy_dit_videos

    model, tokenizer = load_toy_dit()
    metadata = read_metadata(TOY_DIT_DIR / "dit.safetensors")
    assert metadata["command"].startswith("python -m minivdm train-toy-dit --anneal-from")
    assert json.loads(metadata["init_from"])[-1].startswith("python -m minivdm train-toy-dit --out")
    assert sum(f.stat().st_size for f in TOY_DIT_DIR.rglob("*") if f.is_file()) <= 10 * 2**20
    for size in TOY_DIT_SIZES:
        video = sample_toy_dit_videos(model, tokenizer, ["a red circle moving left"], size=size, num_steps=2)
        assert video.shape == (1, 3, *size) and torch.isfinite(video).all() and video.abs().max() > 0.5


def test_wilson_interval_holds_the_rate_and_narrows_with_more_prompts():
    from minivdm.toy.text_to_image import wilson_interval

    low, high = wilson_interval(43, 48)
    assert round(low, 3) == 0.778 and round(high, 3) == 0.955  # the textbook score interval
    assert wilson_interval(430, 480)[1] - wilson_interval(430, 480)[0] < 0.35 * (high - low)
    assert wilson_interval(0, 10) == (0.0, wilson_interval(0, 10)[1]) and wilson_interval(10, 10)[1] == 1.0
    with pytest.raises(ValueError, match="hits <= n"):
        wilson_interval(5, 4)


def test_guidance_sweep_scores_each_scale_on_the_same_noises():
    from minivdm.toy.text_to_image import evaluate_text_to_image, guidance_sweep, load_text_to_image
    from minivdm.toyworld import generate_images

    model, tokenizer = load_text_to_image()
    prompts = generate_images(6, seed=2025).captions
    results = guidance_sweep(model, tokenizer, prompts, [1.0, 4.0], diversity_prompts=2, draws=3, num_steps=4)
    for result in results:
        expected = evaluate_text_to_image(model, tokenizer, prompts, guidance_scale=result["guidance_scale"], num_steps=4)
        assert result["caption_accuracy"] == expected["caption_accuracy"] and result["prompts"] == 6
        low, high = result["interval"]
        assert low <= result["caption_accuracy"] <= high
        assert result["diversity"] > 0.5  # different noises put the object in different places (pixels)
