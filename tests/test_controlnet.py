"""ControlNet from scratch: parity with diffusers' ControlNetModel through our loader (residuals and the controlled
U-Net), the published SD 1.5 configs on the meta device, the zero-convolution property at initialisation,
and bad input refused by name."""

import pytest
import torch
from diffusers import ControlNetModel as DiffusersControlNet
from diffusers import UNet2DConditionModel as DiffusersUNet

from minivdm.configs.controlnet import CONFIGS, CONTROLNET_TINY
from minivdm.configs.stable_diffusion import TINY
from minivdm.models.controlnet import ControlNetConfig, ControlNetModel
from minivdm.models.unet_2d_condition import UNet2DConditionModel


def kwargs(config) -> dict:
    return {key: value for key, value in config.to_diffusers().items() if key != "_class_name"}


def randomise_zero_convolutions(model: torch.nn.Module) -> None:
    """Published weights have trained zero convolutions; at 0 every residual would be 0 and prove nothing."""
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith(("controlnet_down_blocks", "controlnet_mid_block", "controlnet_cond_embedding.conv_out")):
                parameter.normal_(0.0, 0.2)


@pytest.fixture(scope="module")
def tiny_pair(tmp_path_factory):
    """A random diffusers U-Net and ControlNet (control at 4x the latent size: a two-level embedding)."""
    folder = tmp_path_factory.mktemp("controlnet")
    config = ControlNetConfig.for_unet(TINY, conditioning_embedding_out_channels=(8, 16, 16))
    torch.manual_seed(0)
    DiffusersUNet(**kwargs(TINY)).save_pretrained(folder / "unet")
    reference = DiffusersControlNet(**kwargs(config)).eval()
    randomise_zero_convolutions(reference)
    reference.save_pretrained(folder / "controlnet")
    return folder, config


def inputs(config, batch=2, size=8):
    g = torch.Generator().manual_seed(1)
    sample = torch.randn(batch, config.in_channels, size, size, generator=g)
    context = torch.randn(batch, 5, config.cross_attention_dim, generator=g)
    scale = 2 ** (len(config.conditioning_embedding_out_channels) - 1)
    control = torch.rand(batch, config.conditioning_channels, size * scale, size * scale, generator=g)
    return sample, torch.tensor([10, 900]), context, control


def test_residuals_and_controlled_unet_match_diffusers_through_our_loader(tiny_pair):
    folder, config = tiny_pair
    theirs_net = DiffusersControlNet.from_pretrained(folder / "controlnet").eval()
    theirs_unet = DiffusersUNet.from_pretrained(folder / "unet").eval()
    ours_net = ControlNetModel.from_pretrained(folder)
    ours_unet = UNet2DConditionModel.from_pretrained(folder)
    sample, t, context, control = inputs(config)
    with torch.no_grad():
        down, mid = ours_net(sample, t, context, control, conditioning_scale=0.7)
        reference = theirs_net(sample, t, context, control, conditioning_scale=0.7, return_dict=False)
        assert len(down) == len(reference[0]) == 6 and all(r.abs().max() > 1e-3 for r in down)
        for ours, theirs in zip([*down, mid], [*reference[0], reference[1]]):
            assert (ours - theirs).abs().max() <= 1e-5
        controlled = ours_unet(sample, t, context, down_block_additional_residuals=down, mid_block_additional_residual=mid)
        expected = theirs_unet(sample, t, context, down_block_additional_residuals=reference[0],
                               mid_block_additional_residual=reference[1]).sample
        plain = ours_unet(sample, t, context)
    assert (controlled - expected).abs().max() <= 1e-5
    assert (controlled - plain).abs().max() > 1e-2  # the control changed the prediction


def test_from_unet_starts_as_the_image_model_and_its_zero_convolutions_learn():
    torch.manual_seed(0)
    unet = UNet2DConditionModel(TINY).eval()
    controlnet = ControlNetModel.from_unet(unet, conditioning_channels=1, conditioning_embedding_out_channels=(16,))
    assert controlnet.config == CONTROLNET_TINY
    for part in ("conv_in", "time_embedding", "down_blocks", "mid_block"):
        mine, copied = getattr(unet, part).state_dict(), getattr(controlnet, part).state_dict()
        assert all(torch.equal(mine[key], copied[key]) for key in mine)
    sample, t, context, _ = inputs(CONTROLNET_TINY, size=32)
    control = torch.rand(2, 1, 32, 32)
    down, mid = controlnet(sample, t, context, control)
    out = unet(sample, t, context, down_block_additional_residuals=down, mid_block_additional_residual=mid)
    assert torch.equal(out, unet(sample, t, context))  # every Z is 0: exactly the image model
    out.pow(2).mean().backward()
    zero_grads = [conv.weight.grad.abs().max() for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block]]
    assert all(grad > 0 for grad in zero_grads)  # dL/dW = dL/dy x^T is not zero: the control can grow
    assert controlnet.controlnet_cond_embedding.conv_out.weight.grad is not None


@pytest.mark.parametrize("name", ["controlnet-sd15-canny", "controlnet-sd15-depth"])
def test_published_configs_match_diffusers_on_meta(name):
    config = CONFIGS[name]
    with torch.device("meta"):
        ours, theirs = ControlNetModel(config), DiffusersControlNet(**kwargs(config))
    count = sum(p.numel() for p in ours.parameters())
    assert count == sum(p.numel() for p in theirs.parameters())
    assert round(count / 1e6, 2) == 361.28
    ours_state, theirs_state = ours.state_dict(), theirs.state_dict()
    assert set(ours_state) == set(theirs_state), "key map must cover 100% of the published state dict"
    assert all(ours_state[key].shape == theirs_state[key].shape for key in theirs_state)


def test_bad_input_and_unknown_options_are_refused_by_name(tiny_pair):
    folder, config = tiny_pair
    ours_net, ours_unet = ControlNetModel.from_pretrained(folder), UNet2DConditionModel.from_pretrained(folder)
    sample, t, context, control = inputs(config)
    with pytest.raises(ValueError, match=r"controlnet_cond must be \(B, conditioning_channels, 4 H, 4 W\)"):
        ours_net(sample, t, context, control[..., :16, :16])
    with pytest.raises(ValueError, match="conditioning_scale must be a number >= 0"):
        ours_net(sample, t, context, control, conditioning_scale=-1.0)
    down, mid = ours_net(sample, t, context, control)
    with pytest.raises(ValueError, match="do not fit this U-Net"):
        ours_unet(sample, t, context, down_block_additional_residuals=down[:-1], mid_block_additional_residual=mid)
    with pytest.raises(ValueError, match="both down_block_additional_residuals and mid_block_additional_residual"):
        ours_unet(sample, t, context, down_block_additional_residuals=down)
    with pytest.raises(ValueError, match="global_pool_conditions=True.*supports only False"):
        ControlNetConfig.from_diffusers({**CONFIGS["controlnet-sd15-canny"].to_diffusers(), "global_pool_conditions": True})


def test_toy_controlnet_trains_only_the_controlnet_and_reloads(tmp_path):
    """A few steps of the toy recipe: the image model stays bit-identical (frozen), the ControlNet moves,
    and the written folder loads back into the same function."""
    from dataclasses import replace

    from minivdm.toy.controlnet import TOY_CONTROLNET_TRAIN, edge_control, load_toy_controlnet, train_toy_controlnet
    from minivdm.toyworld import generate_images

    config = replace(TOY_CONTROLNET_TRAIN, steps=2, warmup_steps=1, log_every=1, checkpoint_every=2, ema_decay=0.0)
    out = train_toy_controlnet(tmp_path / "toy", config=config, dataset_size=8, command="test")
    model, tokenizer = load_toy_controlnet(out)
    assert model.controlnet.controlnet_mid_block.weight.abs().max() > 0  # the zero convolutions have moved
    data = generate_images(2, seed=5)
    z_t, t = torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.8])
    from minivdm.text import encode_captions

    ids, _ = encode_captions(tokenizer, data.captions)
    with torch.no_grad():
        assert model(z_t, t, ids, edge_control(data.edges)).shape == (2, 3, 32, 32)
    from minivdm.toy.controlnet import evaluate_toy_controlnet

    scores = evaluate_toy_controlnet(model, tokenizer, data, num_steps=2)
    assert scores["objects"] == sum(len(o) for o in data.objects) and 0 <= scores["mean_iou"] <= 1
    with pytest.raises(ValueError, match="edge maps must be"):
        edge_control(torch.zeros(2, 3, 32, 32, dtype=torch.bool))


def test_the_image_model_is_frozen_under_its_controlnet():
    """Only the ControlNet learns: a loss's gradient reaches every ControlNet parameter and no image-model one."""
    from minivdm.models.controlnet import ControlNetModel
    from minivdm.text import encode_captions
    from minivdm.toy.controlnet import ToyControlledTextToImage, edge_control
    from minivdm.toy.text_to_image import load_text_to_image
    from minivdm.toyworld import generate_images

    base, tokenizer = load_text_to_image()
    controlnet = ControlNetModel.from_unet(base.unet, conditioning_channels=1, conditioning_embedding_out_channels=(16,))
    model = ToyControlledTextToImage(base, controlnet)
    data = generate_images(2, seed=5)
    ids, _ = encode_captions(tokenizer, data.captions)
    model(torch.randn(2, 3, 32, 32), torch.tensor([0.3, 0.8]), ids, edge_control(data.edges)).pow(2).mean().backward()
    assert all(p.grad is None for p in model.image_model.parameters())
    assert all(p.grad is not None for p in model.controlnet.parameters())


def test_object_iou_is_one_on_the_truth_and_drops_when_shapes_move():
    from minivdm.toy.controlnet import object_ious
    from minivdm.toyworld import generate_images

    batch = generate_images(24, seed=9)
    truth = object_ious(batch.images, batch)
    for reading in ("structure", "prompted"):
        assert len(truth[reading]) == sum(len(objects) for objects in batch.objects) and truth[reading].min() == 1.0
        moved = object_ious(torch.roll(batch.images, shifts=3, dims=-1), batch)[reading]  # every object 3 px right
        assert moved.max() < 1.0 and moved.mean() < 0.85
    # two objects drawn in each other's colours: the structure is followed, the prompted colours are not
    two = [b for b, objects in enumerate(batch.objects) if len(objects) == 2]
    swapped = batch.images[two].clone()
    for i, b in enumerate(two):
        first, second = batch.masks[b, 0, 0], batch.masks[b, 1, 0]
        colour_first = batch.images[b][:, first][:, 0].clone()
        colour_second = batch.images[b][:, second][:, 0].clone()
        swapped[i][:, first] = colour_second[:, None]
        swapped[i][:, second] = colour_first[:, None]
    sub = type("Batch", (), {"masks": batch.masks[two], "objects": [batch.objects[b] for b in two]})
    ious = object_ious(swapped, sub)
    assert ious["structure"].min() == 1.0 and ious["prompted"].max() == 0.0


def test_our_controlnet_loop_reproduces_stable_diffusion_controlnet_pipeline(tmp_path):
    """Our U-Net + our ControlNet + our DDIM, loaded from diffusers' saved pipeline, against
    StableDiffusionControlNetPipeline: same seeds, scale 0.8, 10 steps, latents of every image."""
    from diffusers import StableDiffusionControlNetPipeline

    from minivdm.methods.controlnet_sampling import controlnet_latents
    from minivdm.methods.text_to_image import load_components
    from sd_fixtures import make_tiny_sd_pipeline

    sd = make_tiny_sd_pipeline(tmp_path / "sd")
    torch.manual_seed(3)
    reference_net = DiffusersControlNet.from_unet(sd.unet, conditioning_embedding_out_channels=(8, 16)).eval()
    randomise_zero_convolutions(reference_net)
    pipe = StableDiffusionControlNetPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                             controlnet=reference_net, scheduler=sd.scheduler, safety_checker=None,
                                             feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    pipe.save_pretrained(tmp_path / "pipe", safe_serialization=True)
    prompts = ["a red circle", "a blue square"]
    control = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(4))
    expected = pipe(prompts, image=control, num_inference_steps=10, guidance_scale=7.5, controlnet_conditioning_scale=0.8,
                    generator=torch.Generator().manual_seed(0), output_type="latent").images
    unet, vae, text_encoder, tokenizer, settings = load_components(tmp_path / "pipe")
    controlnet = ControlNetModel.from_pretrained(tmp_path / "pipe")
    ours = controlnet_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, prompts, control,
                              conditioning_scale=0.8, num_steps=10, generator=torch.Generator().manual_seed(0))
    plain = controlnet_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, prompts, control,
                               conditioning_scale=0.0, num_steps=10, generator=torch.Generator().manual_seed(0))
    assert ours.shape == expected.shape == (2, 4, 8, 8)
    assert (ours - expected).abs().max() <= 1e-4
    assert (ours - plain).abs().max() > 1e-2  # the control changed the images
    with pytest.raises(ValueError, match="control images must lie in \\[0, 1\\]"):
        controlnet_latents(unet, controlnet, vae, text_encoder, tokenizer, settings, prompts, control * 255)


def test_the_shipped_toy_controlnet_draws_where_the_edges_say():
    """The shipped weights follow the control: held-out edge maps give objects where the edges are (structure IoU),
    and the same prompts and noise at conditioning scale 0 (the image model alone) do not."""
    from minivdm.toy.controlnet import evaluate_toy_controlnet, load_toy_controlnet
    from minivdm.toyworld import generate_images

    model, tokenizer = load_toy_controlnet()
    batch = generate_images(12, seed=31)
    controlled = evaluate_toy_controlnet(model, tokenizer, batch, num_steps=10)
    model.conditioning_scale = 0.0
    free = evaluate_toy_controlnet(model, tokenizer, batch, num_steps=10)
    assert controlled["mean_iou"] > 0.85 and free["mean_iou"] < 0.5, (controlled, free)
