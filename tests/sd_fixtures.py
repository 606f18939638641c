"""Tiny random Stable Diffusion components in the published folder layout, for parity tests."""

import json
import string
from pathlib import Path

import torch

TINY_UNET = dict(  # noqa: C408
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
    attention_head_dim=2, cross_attention_dim=32, norm_num_groups=8,
)


TINY_UNET_3D = dict(  # noqa: C408
    sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64), layers_per_block=1,
    down_block_types=("CrossAttnDownBlock3D", "DownBlock3D"), up_block_types=("UpBlock3D", "CrossAttnUpBlock3D"),
    attention_head_dim=8, cross_attention_dim=32, norm_num_groups=8,
)


def tiny_clip_tokenizer(folder: Path):
    """A real CLIPTokenizer over single characters (no merges): every lowercase word tokenizes."""
    from transformers import CLIPTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    symbols = list(string.ascii_lowercase + string.digits + ".,!?'")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for symbol in symbols:
        vocab[symbol] = len(vocab)
        vocab[symbol + "</w>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"), model_max_length=16)


def tiny_shared_components(root: Path):
    """VAE, CLIP text encoder, tokenizer and DDIM scheduler, as Stable Diffusion and ModelScope ship them."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = tiny_clip_tokenizer(root / "_tokenizer_source")
    vae = AutoencoderKL(in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(16, 32),
                        down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                        layers_per_block=1, norm_num_groups=8, sample_size=16)
    text_encoder = CLIPTextModel(CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
        max_position_embeddings=16, bos_token_id=0, eos_token_id=1, pad_token_id=1))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    return dict(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, scheduler=scheduler)  # noqa: C408


def make_tiny_sd_pipeline(root: Path, seed: int = 0):
    """Build diffusers' StableDiffusionPipeline from tiny random components and save it to ``root``."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel

    torch.manual_seed(seed)
    shared = tiny_shared_components(root)
    unet = UNet2DConditionModel(**TINY_UNET)
    pipe = StableDiffusionPipeline(unet=unet, safety_checker=None, feature_extractor=None, requires_safety_checker=False,
                                   **shared)
    pipe.save_pretrained(root, safe_serialization=True)
    return pipe


def make_tiny_text_to_video_pipeline(root: Path, seed: int = 0):
    """diffusers' TextToVideoSDPipeline (ModelScope's layout) from tiny random components, saved to ``root``.

    The temporal layers' zero-initialised output projections get random weights, so that the frames
    really interact (at zero they are the identity and a frame-by-frame loop would pass too)."""
    from diffusers import TextToVideoSDPipeline, UNet3DConditionModel

    torch.manual_seed(seed)
    shared = tiny_shared_components(root)
    unet = UNet3DConditionModel(**TINY_UNET_3D).eval()  # its temporal convolutions have dropout
    with torch.no_grad():
        for name, parameter in unet.named_parameters():
            if ".conv4." in name or "proj_out" in name:
                parameter.normal_(0.0, 0.05)
    pipe = TextToVideoSDPipeline(unet=unet, **shared)
    pipe.save_pretrained(root, safe_serialization=True)
    return pipe


def randomise_parameters(module: torch.nn.Module, seed: int, scale: float = 0.1) -> torch.nn.Module:
    """Every parameter drawn at random (a reference's own init leaves some at zero or one, which would hide mistakes);
    the module in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)
    return module.eval()


def perturb_parameters(module: torch.nn.Module, seed: int, std: float = 0.1) -> torch.nn.Module:
    """Every parameter moved by normal noise of std ``std``: no zero-initialised layer can hide a wrong branch, and
    norm scales stay near 1, so the signal survives every level of a deep U-Net; the module in eval mode."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(torch.randn(parameter.shape, generator=generator) * std)
    return module.eval()


def assert_same_keys_and_shapes(ours: torch.nn.Module, theirs: torch.nn.Module, their_key=lambda key: key) -> int:
    """Every state-dict key and shape of the reference is ours and nothing else is (meta-device models are fine);
    returns our parameter count, checked equal to the reference's. ``their_key`` maps a reference key to ours
    where the names differ."""
    their_shapes = {their_key(key): tuple(value.shape) for key, value in theirs.state_dict().items()}
    our_shapes = {key: tuple(value.shape) for key, value in ours.state_dict().items()}
    assert sorted(set(their_shapes) - set(our_shapes)) == []  # missing from ours
    assert sorted(set(our_shapes) - set(their_shapes)) == []  # unexpected in ours
    assert our_shapes == their_shapes
    count = sum(parameter.numel() for parameter in ours.parameters())
    assert count == sum(parameter.numel() for parameter in theirs.parameters())
    return count


def moving_square_video(frames: int = 5, size: int = 16) -> torch.Tensor:
    """(3, frames, size, size) in [-1, 1]: a white 6 x 6 square on black moving 2 px right per frame."""
    video = -torch.ones(3, frames, size, size)
    for k in range(frames):
        video[:, k, 5:11, 1 + 2 * k:7 + 2 * k] = 1.0
    return video


def tiny_dpt(folder: Path):
    """A tiny random DPT (transformers' depth estimator) with its image processor, saved with save_pretrained; the
    head's weights drawn wider than the default so that its depth depends on the frame (at the default it is nearly a
    constant). Returns (model, processor)."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37, image_size=32,
                       patch_size=8, backbone_out_indices=[0, 1], neck_hidden_sizes=[16, 32], reassemble_factors=[2, 1],
                       fusion_hidden_size=16, use_auxiliary_head=False, initializer_range=0.1)
    torch.manual_seed(0)
    model = DPTForDepthEstimation(config).eval()
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if name.startswith("head"):
                parameter.normal_(0.0, 0.1)
    processor = DPTImageProcessor(size={"height": 32, "width": 32}, keep_aspect_ratio=False)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return model, processor
