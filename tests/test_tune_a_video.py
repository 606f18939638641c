"""Tune-A-Video (chapter 8): sparse-causal attention, the inflated U-Net (identity at init, the trainable set,
frozen weights untouched by tuning), tuned-weight files, the official checkpoint layout, SD 1.4 on the meta device."""

import json

import pytest
import torch

from minivdm.configs.stable_diffusion import SD14, TINY
from minivdm.diffusion import CosineSchedule
from minivdm.io.checkpoints import count_parameters, save_component
from minivdm.methods.tune_a_video import (edit_video, load_tuned_weights, save_tuned_weights, tune_a_video)
from minivdm.models.tune_a_video_unet import (TuneAVideoUNet, inflate_for_tune_a_video, official_config,
                                              select_trainable, tuned_parameter_names)
from minivdm.models.unet_2d_condition import UNet2DConditionModel
from minivdm.nn.attention import Attention
from minivdm.nn.sparse_causal_attention import SparseCausalAttention, sparse_causal_context
from minivdm.train import TrainConfig


def image_unet(seed: int = 0, dtype=torch.float32) -> UNet2DConditionModel:
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(TINY).to(dtype).eval()
    # a trained-looking model: no zero layers anywhere (random init leaves none either, but be explicit)
    return unet


def test_sparse_causal_context_is_frame_one_then_the_frame_before():
    frames, tokens = 5, 3
    # token value = 10 * video + frame, so every context token says where it came from
    x = torch.tensor([[10.0 * b + f] * tokens for b in range(2) for f in range(frames)]).unsqueeze(-1)
    context = sparse_causal_context(x, frames).view(2, frames, 2 * tokens)
    for b in range(2):
        for f in range(frames):
            first, previous = context[b, f, :tokens], context[b, f, tokens:]
            assert torch.all(first == 10 * b), "the first half is frame 1 of the same video"
            assert torch.all(previous == 10 * b + max(f - 1, 0)), f"frame {f} must see frame {max(f - 1, 0)}"


def test_sparse_causal_attention_is_the_papers_formula():
    torch.manual_seed(0)
    frames, n, dim, heads = 4, 6, 16, 2
    attention = SparseCausalAttention(dim, heads, dim // heads).double()
    x = torch.randn(2 * frames, n, dim, dtype=torch.float64)
    out = attention(x, num_frames=frames).view(2, frames, n, dim)
    video = x.view(2, frames, n, dim)
    d = dim // heads
    for b in range(2):
        for i in range(frames):
            context = torch.cat([video[b, 0], video[b, max(i - 1, 0)]])  # [z_{v_1}; z_{v_{i-1}}]
            q = attention.to_q(video[b, i]).view(n, heads, d).transpose(0, 1)
            k = attention.to_k(context).view(2 * n, heads, d).transpose(0, 1)
            v = attention.to_v(context).view(2 * n, heads, d).transpose(0, 1)
            weights = torch.softmax(q @ k.transpose(1, 2) / d ** 0.5, dim=-1)
            expected = attention.to_out[0]((weights @ v).transpose(0, 1).reshape(n, dim))
            torch.testing.assert_close(out[b, i], expected, rtol=0, atol=1e-12)
    # frame 1 attends to itself (twice): exactly plain self-attention
    plain = Attention(dim, heads, d).double()
    plain.load_state_dict(attention.state_dict())
    torch.testing.assert_close(out[:, 0], plain(video[:, 0]), rtol=0, atol=1e-12)


def test_inflated_model_equals_the_image_model_at_init():
    unet = image_unet(dtype=torch.float64)
    inflated = inflate_for_tune_a_video(unet).eval()
    torch.manual_seed(1)
    video = torch.randn(2, 3, 6, 32, 32, dtype=torch.float64)
    text = torch.randn(2, 7, 64, dtype=torch.float64)
    t = torch.tensor([250.0, 800.0], dtype=torch.float64)
    with torch.no_grad():
        out = inflated(video, t, text)
        # frame 1 only ever attends to itself and T-Attn adds zero: the image model's output, on any video
        first = unet(video[:, :, 0], t, text)
        assert (out[:, :, 0] - first).abs().max() <= 1e-6
        # a still video: ST-Attn over [frame 1; frame i-1] is self-attention, so every frame is the image model's
        still = video[:, :, :1].expand(-1, -1, 6, -1, -1).contiguous()
        assert (inflated(still, t, text) - first[:, :, None]).abs().max() <= 1e-6
        # later frames of a moving video differ (ST-Attn reads frames 1 and i-1): the test above is not vacuous
        assert (out[:, :, 3] - unet(video[:, :, 3], t, text)).abs().max() > 1e-3
        # without ST-Attn, the zero-output T-Attn leaves every frame to the image model
        per_frame = inflate_for_tune_a_video(unet, sparse_causal=False).eval()
        plain = per_frame(video, t, text)
        for f in range(6):
            assert (plain[:, :, f] - unet(video[:, :, f], t, text)).abs().max() <= 1e-6


def test_temporal_attention_starts_at_zero_output_and_is_new():
    inflated = inflate_for_tune_a_video(image_unet())
    blocks = inflated.spatio_temporal_blocks()
    assert len(blocks) == 7  # TINY: one transformer per attention layer (down 1 + 1, mid 1, up 2 + 2)
    for block in blocks:
        assert torch.count_nonzero(block.attn_temp.to_out[0].weight) == 0
        assert torch.count_nonzero(block.attn_temp.to_out[0].bias) == 0
        assert torch.count_nonzero(block.attn_temp.to_q.weight) > 0  # the rest is a normal random init


def test_trainable_set_is_the_papers():
    inflated = inflate_for_tune_a_video(image_unet())
    names = select_trainable(inflated)
    expected = set()
    for prefix, module in inflated.named_modules():
        if prefix.endswith("transformer_blocks.0"):
            expected |= {f"{prefix}.attn1.to_q.weight", f"{prefix}.attn2.to_q.weight"}
            expected |= {f"{prefix}.attn_temp.{name}" for name, _ in module.attn_temp.named_parameters()}
    assert set(names) == expected
    assert not any("norm_temp" in name or "to_k" in name and "attn_temp" not in name for name in names)
    trainable = sum(p.numel() for p in inflated.parameters() if p.requires_grad)
    assert 0 < trainable < 0.15 * count_parameters(inflated)


def test_gradients_reach_only_the_trainable_parameters():
    inflated = inflate_for_tune_a_video(image_unet()).train()
    names = set(select_trainable(inflated))
    video, text = torch.randn(1, 3, 4, 32, 32), torch.randn(1, 5, 64)
    inflated(video, torch.tensor([500.0]), text).square().mean().backward()
    with_gradient = {name for name, p in inflated.named_parameters() if p.grad is not None}
    assert with_gradient == names
    # the query projections get a signal from the first step (T-Attn's inputs do not yet: its output is zero)
    assert all(inflated.get_parameter(name).grad.abs().sum() > 0 for name in names if "attn1.to_q" in name)


def test_tuning_changes_only_the_trainable_parameters(tmp_path):
    unet = image_unet()
    inflated = inflate_for_tune_a_video(unet)
    before = {name: p.detach().clone() for name, p in inflated.named_parameters()}
    torch.manual_seed(0)
    video, text = torch.rand(1, 3, 4, 32, 32) * 2 - 1, torch.randn(1, 5, 64)
    config = TrainConfig(steps=3, learning_rate=1e-3, warmup_steps=0, ema_decay=0.0, checkpoint_every=3, log_every=1)
    result = tune_a_video(inflated, video, text, CosineSchedule(), config=config, prediction_type="v",
                          integer_timesteps=False, checkpoint_dir=tmp_path / "run", progress=False)
    assert result.model is inflated
    trainable = set(tuned_parameter_names(inflated))
    for name, parameter in inflated.named_parameters():
        if name in trainable:
            continue
        assert torch.equal(parameter, before[name]), f"{name} is frozen but changed"
    changed = [name for name in trainable if not torch.equal(inflated.get_parameter(name), before[name])]
    assert any("attn1.to_q" in n for n in changed) and any("attn2.to_q" in n for n in changed)
    assert any("attn_temp.to_out" in n for n in changed)
    # the image model's own weights are untouched too (inflation copied them)
    for name, parameter in unet.named_parameters():
        assert torch.equal(parameter, before[name])


def test_gradient_checkpointing_gives_the_same_gradients():
    inflated = inflate_for_tune_a_video(image_unet(dtype=torch.float64)).train()
    select_trainable(inflated)
    with torch.no_grad():  # a non-zero T-Attn output, so its inputs get gradients too
        for block in inflated.spatio_temporal_blocks():
            block.attn_temp.to_out[0].weight.normal_(0, 0.1)
    video, text = torch.randn(1, 3, 3, 32, 32, dtype=torch.float64), torch.randn(1, 5, 64, dtype=torch.float64)

    def gradients():
        inflated.zero_grad(set_to_none=True)
        inflated(video, 400.0, text).square().mean().backward()
        return {name: p.grad.clone() for name, p in inflated.named_parameters() if p.grad is not None}

    plain = gradients()
    inflated.enable_gradient_checkpointing()
    checkpointed = gradients()
    assert plain.keys() == checkpointed.keys()
    for name in plain:
        torch.testing.assert_close(checkpointed[name], plain[name], rtol=1e-10, atol=1e-12)


def test_tuned_weights_round_trip_and_refuse_another_base(tmp_path):
    inflated = inflate_for_tune_a_video(image_unet(seed=0))
    with torch.no_grad():
        for name in tuned_parameter_names(inflated):
            inflated.get_parameter(name).add_(0.01)
    path = save_tuned_weights(inflated, tmp_path / "tuned.safetensors", {"source_caption": "a red circle"})
    fresh = inflate_for_tune_a_video(image_unet(seed=0))
    load_tuned_weights(fresh, path)
    for (name, a), (_, b) in zip(inflated.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), name
    with pytest.raises(ValueError, match="another base model"):
        load_tuned_weights(inflate_for_tune_a_video(image_unet(seed=1)), path)
    other = UNet2DConditionModel(TINY.__class__(**{**TINY.__dict__, "cross_attention_dim": 32}))
    with pytest.raises(ValueError, match="another architecture.*cross_attention_dim"):
        load_tuned_weights(inflate_for_tune_a_video(other), path)
    from minivdm.train import save_weights
    save_weights(inflated, tmp_path / "whole.safetensors")
    with pytest.raises(ValueError, match="not a Tune-A-Video tuned-weights file"):
        load_tuned_weights(fresh, tmp_path / "whole.safetensors")


def test_official_layout_names_and_round_trip(tmp_path):
    inflated = inflate_for_tune_a_video(image_unet())
    keys = set(inflated.state_dict())
    # the official repository's names (showlab/Tune-A-Video, tuneavideo/models/attention.py)
    block = "down_blocks.1.attentions.0.transformer_blocks.0"
    for name in ("attn1.to_q.weight", "attn1.to_k.weight", "attn2.to_q.weight", "attn_temp.to_q.weight",
                 "attn_temp.to_out.0.weight", "attn_temp.to_out.0.bias", "norm_temp.weight", "norm_temp.bias"):
        assert f"{block}.{name}" in keys
    config = official_config(TINY)
    assert config["_class_name"] == "UNet3DConditionModel" and config["down_block_types"][1] == "CrossAttnDownBlock3D"
    save_component(inflated, tmp_path / "unet", config)
    loaded = TuneAVideoUNet.from_pretrained(tmp_path)
    for name, tensor in inflated.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    # a plain image U-Net folder is inflated on load
    save_component(image_unet(), tmp_path / "image" / "unet", TINY.to_diffusers())
    from_image = TuneAVideoUNet.from_pretrained(tmp_path / "image")
    assert torch.count_nonzero(from_image.spatio_temporal_blocks()[0].attn_temp.to_out[0].weight) == 0
    # an option of the official config we do not implement is refused by name, not ignored
    bad = {**config, "dual_cross_attention": True}
    (tmp_path / "unet" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="dual_cross_attention"):
        TuneAVideoUNet.from_pretrained(tmp_path)
    bad = {**config, "down_block_types": ["DownBlock3D", "CrossAttnDownBlock2D", "CrossAttnDownBlock3D"]}
    (tmp_path / "unet" / "config.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="not a Tune-A-Video block"):
        TuneAVideoUNet.from_pretrained(tmp_path)


def test_sd14_inflated_on_the_meta_device():
    with torch.device("meta"):
        image = UNet2DConditionModel(SD14)
        inflated = TuneAVideoUNet(SD14)
    widths = [320] * 5 + [640] * 5 + [1280] * 6  # the 16 transformer blocks of SD 1.x: down 2+2+2, mid 1, up 3+3+3
    added = sum(4 * d * d + d + 2 * d for d in widths)  # T-Attn: q, k, v, out (+ bias); LN_temp
    assert count_parameters(image) == 859_520_964
    assert count_parameters(inflated) == 859_520_964 + added == 909_120_004
    assert len(inflated.spatio_temporal_blocks()) == 16
    assert set(image.state_dict()) <= set(inflated.state_dict())
    trainable = sum(inflated.get_parameter(name).numel() for name in tuned_parameter_names(inflated))
    assert trainable == sum(4 * d * d + d + 2 * d * d for d in widths)  # T-Attn and two d x d query projections


def test_bad_inputs_are_refused_clearly():
    inflated = inflate_for_tune_a_video(image_unet())
    text = torch.randn(1, 5, 64)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        inflated(torch.randn(1, 3, 32, 32), 10, text)
    with pytest.raises(ValueError, match="one caption per clip"):
        inflated(torch.randn(2, 3, 2, 32, 32), 10, text)
    with pytest.raises(RuntimeError, match="how many"):
        inflated.spatio_temporal_blocks()[0](torch.randn(2, 4, 64))
    config = TrainConfig(steps=1, warmup_steps=0, ema_decay=0.0)
    with pytest.raises(ValueError, match="at least 2 frames"):
        tune_a_video(inflated, torch.randn(1, 3, 1, 32, 32), text, CosineSchedule(), config=config, progress=False)
    with pytest.raises(ValueError, match="ONE video"):
        tune_a_video(inflated, torch.randn(2, 3, 4, 32, 32), text, CosineSchedule(), config=config, progress=False)
    with pytest.raises(TypeError, match="inflated TuneAVideoUNet"):
        tune_a_video(image_unet(), torch.randn(1, 3, 4, 32, 32), text, CosineSchedule(), config=config)
    with pytest.raises(TypeError, match="image U-Net"):
        inflate_for_tune_a_video(inflated)
    with pytest.raises(ValueError, match="frames"):
        edit_video(inflated, torch.randn(1, 3, 1, 32, 32), text, text, CosineSchedule(),
                   CosineSchedule().uniform_times(2))


def test_sparse_causal_weights_cover_the_two_key_frames():
    from minivdm.viz.sparse_causal_plots import plot_sparse_causal_attention, sparse_causal_weights

    torch.manual_seed(0)
    attention = SparseCausalAttention(8, 2, 4)
    tokens = torch.randn(2 * 5, 16, 8)
    for frame in range(5):
        weights = sparse_causal_weights(attention, tokens, 5, frame, 3)
        assert weights.shape == (2, 16) and torch.isclose(weights.sum(), torch.tensor(1.0))
    first = sparse_causal_weights(attention, tokens, 5, 0, 3)
    torch.testing.assert_close(first[0], first[1])  # frame 1's context is [frame 1; frame 1]
    # the weights of frame 4 (0-based 3) over [frame 1; frame 3], written out
    third = sparse_causal_weights(attention, tokens, 5, 3, 3)
    q = attention.to_q(tokens[3, 3:4]).view(1, 2, 4).transpose(0, 1)
    k = attention.to_k(torch.cat([tokens[0], tokens[2]])).view(32, 2, 4).transpose(0, 1)
    expected = torch.softmax(q @ k.transpose(-1, -2) / 2.0, dim=-1).mean(0)[0].reshape(2, 16)
    torch.testing.assert_close(third, expected.detach())
    figure = plot_sparse_causal_attention(torch.rand(3, 5, 8, 8) * 2 - 1, third, 3, (4.0, 4.0), title="t")
    assert len(figure.axes) == 5
    with pytest.raises(ValueError, match="query_frame"):
        sparse_causal_weights(attention, tokens, 5, 5, 0)
