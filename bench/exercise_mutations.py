"""Do the exercise checks catch plausible wrong answers? Mutation testing of the solution notebooks.

    .venv/bin/python bench/exercise_mutations.py [--notebook 01 ...] [--mutation SUBSTRING] [--control]
                                                 [--solutions DIR] [--json results.json]

Each mutation is a wrong answer a learner plausibly writes (a flipped sign, swapped axes, an off-by-one
frame or window, a missing factor, code that only works for scalar times or square frames), written by
hand as an explicit ``old -> new`` replacement inside one answer region (between ``### BEGIN SOLUTION``
and ``### END SOLUTION``). The notebook is executed with that one change in a fresh kernel (nbclient),
up to its last check cell, and the mutation counts as caught when a ``check``-tagged cell raised.
An error raised in any other cell is reported as ``crash`` and does not count as caught: the learner
would not see a check's teaching message.

``--control`` first runs each notebook unchanged: every check must pass, or the results mean nothing.
A whole run (about 100 executions of 3-10 s each) takes 10-15 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

from minivdm.course.exercises import BEGIN, END

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutation:
    name: str  # what the learner got wrong, in a few words
    old: str   # text inside exactly one answer region of the notebook
    new: str


MUTATIONS: dict[str, list[Mutation]] = {
    "01_diffusion_basics": [
        Mutation("v: sign flipped", "return alpha * eps - sigma * x0", "return sigma * x0 - alpha * eps"),
        Mutation("v: alpha and sigma swapped", "return alpha * eps - sigma * x0", "return sigma * eps - alpha * x0"),
        Mutation("v: plus instead of minus", "return alpha * eps - sigma * x0", "return alpha * eps + sigma * x0"),
        Mutation("v: scalar-only (float(alpha))", "return alpha * eps - sigma * x0",
                 "return float(alpha) * eps - float(sigma) * x0"),
        Mutation("x0_from_v: sign of v", "return alpha * z_t - sigma * v", "return alpha * z_t + sigma * v"),
        Mutation("x0_from_v: alpha and sigma swapped", "return alpha * z_t - sigma * v", "return sigma * z_t - alpha * v"),
        Mutation("x0_from_v: missing factor alpha", "return alpha * z_t - sigma * v", "return z_t - sigma * v"),
        Mutation("x0_from_v: scalar-only (.item())", "return alpha * z_t - sigma * v",
                 "return alpha.item() * z_t - sigma.item() * v"),
        Mutation("eps_from_v: sign of v", "return sigma * z_t + alpha * v", "return sigma * z_t - alpha * v"),
        Mutation("eps_from_v: alpha and sigma swapped", "return sigma * z_t + alpha * v", "return alpha * z_t + sigma * v"),
        Mutation("ddim: angle difference reversed", "delta = phi_t - phi_s", "delta = phi_s - phi_t"),
        Mutation("ddim: plus sin", "torch.cos(delta) * z_t - torch.sin(delta) * v_hat",
                 "torch.cos(delta) * z_t + torch.sin(delta) * v_hat"),
        Mutation("ddim: small-angle sin(delta) ~ delta", "torch.cos(delta) * z_t - torch.sin(delta) * v_hat",
                 "torch.cos(delta) * z_t - delta * v_hat"),
        Mutation("ddim: scalar-only angles (math.cos of a float)",
                 "delta = phi_t - phi_s\n    return torch.cos(delta) * z_t - torch.sin(delta) * v_hat",
                 "import math\n    delta = float(phi_t - phi_s)\n    return math.cos(delta) * z_t - math.sin(delta) * v_hat"),
        Mutation("sampler: times walked backwards", "zip(times[:-1], times[1:])", "zip(times[1:], times[:-1])"),
        Mutation("sampler: last step dropped (off by one)", "zip(times[:-1], times[1:])", "zip(times[:-2], times[1:-1])"),
        Mutation("sampler: phi_t and phi_s swapped",
                 "CHAPTER1_SCHEDULE.phi(t).float(), CHAPTER1_SCHEDULE.phi(s).float()",
                 "CHAPTER1_SCHEDULE.phi(s).float(), CHAPTER1_SCHEDULE.phi(t).float()"),
        Mutation("sampler: model told the next time s", "v_hat = model(z, t.float()", "v_hat = model(z, s.float()"),
        # written after the checks were tightened, to see whether they bite beyond the list they were tuned on
        Mutation("eps_from_v: missing factor sigma", "return sigma * z_t + alpha * v", "return z_t + alpha * v"),
        Mutation("sampler: model told the angle, not the time", "v_hat = model(z, t.float().expand(z.shape[0]))",
                 "v_hat = model(z, CHAPTER1_SCHEDULE.phi(t).float().expand(z.shape[0]))"),
    ],
    "02_stable_diffusion": [
        Mutation("attention: no 1/sqrt(d)", "q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5", "q @ k.transpose(-1, -2)"),
        Mutation("attention: scale by sqrt(query_dim)", "/ q.shape[-1] ** 0.5", "/ x.shape[-1] ** 0.5"),
        Mutation("attention: scale by sqrt(heads) (wrong axis)", "/ q.shape[-1] ** 0.5", "/ q.shape[1] ** 0.5"),
        Mutation("attention: softmax over queries", "dim=-1)", "dim=-2)"),
        Mutation("attention: heads split as (d h)", '"b n (h d) -> b h n d", h=heads', '"b n (d h) -> b h n d", h=heads'),
        Mutation("attention: heads taken as head width", '"b n (h d) -> b h n d", h=heads', '"b n (h d) -> b h n d", d=heads'),
        Mutation("attention: heads merged as (d h)", '"b h n d -> b n (h d)"', '"b h n d -> b n (d h)"'),
        Mutation("guidance: conditional and unconditional swapped", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return pred_cond + w * (pred_uncond - pred_cond)"),
        Mutation("guidance: (1 + w) convention", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return pred_cond + w * (pred_cond - pred_uncond)"),
        Mutation("guidance: missing factor w", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return pred_uncond + (pred_cond - pred_uncond)"),
        Mutation("sampler: branches swapped", "guidance(model(z, t_batch, ids), model(z, t_batch, null_ids), w)",
                 "guidance(model(z, t_batch, null_ids), model(z, t_batch, ids), w)"),
        Mutation("sampler: alpha_s from t", "for value in schedule.alpha_sigma(s))", "for value in schedule.alpha_sigma(t))"),
        Mutation("sampler: last step dropped (off by one)", "zip(times[:-1], times[1:])", "zip(times[:-2], times[1:-1])"),
        Mutation("sampler: no final clamp", "return z.clamp(-1, 1)", "return z"),
        Mutation("sampler: eps prediction type", 'prediction_type="v"', 'prediction_type="eps"'),
        # written after the checks were tightened, to see whether they bite beyond the list they were tuned on
        Mutation("attention: no output projection", "return to_out(out)", "return out"),
        Mutation("sampler: guidance scale ignored", "model(z, t_batch, null_ids), w)", "model(z, t_batch, null_ids), 1.0)"),
    ],
    "03_video_diffusion_models": [
        Mutation("distance: i - j (sign)", 'rearrange(positions, "j -> 1 j") - rearrange(positions, "i -> i 1")',
                 'rearrange(positions, "i -> i 1") - rearrange(positions, "j -> 1 j")'),
        Mutation("distance: no clipping", "return distance.clamp(-max_distance, max_distance)", "return distance"),
        Mutation("distance: clip off by one", "distance.clamp(-max_distance, max_distance)",
                 "distance.clamp(-max_distance + 1, max_distance - 1)"),
        Mutation("distance: clipped on one side only", "distance.clamp(-max_distance, max_distance)",
                 "distance.clamp(max=max_distance)"),
        Mutation("attention: no relative keys", ' + torch.einsum("nhid,hijd->nhij", q, keys)', ""),
        Mutation("attention: keys table transposed (a[i - j])", '"nhid,hijd->nhij"', '"nhid,hjid->nhij"'),
        Mutation("attention: bias scaled by 1/sqrt(d) too", "logits = logits / q.shape[-1] ** 0.5 + bias",
                 "logits = (logits + bias) / q.shape[-1] ** 0.5"),
        Mutation("attention: scale by sqrt(heads) (wrong axis)", "logits / q.shape[-1] ** 0.5", "logits / q.shape[1] ** 0.5"),
        Mutation("attention: heads taken as head width", '"n t (h d) -> n h t d", h=heads', '"n t (h d) -> n h t d", d=heads'),
        Mutation("attention: softmax over query frames",
                 "logits.amax(dim=-1, keepdim=True)\n    weights = logits.exp() / logits.exp().sum(dim=-1, keepdim=True)",
                 "logits.amax(dim=-2, keepdim=True)\n    weights = logits.exp() / logits.exp().sum(dim=-2, keepdim=True)"),
        Mutation("attention: no relative values", ' + torch.einsum("nhij,hijd->nhid", weights, values)', ""),
        Mutation("attention: heads merged as (d h)", '"n h t d -> n t (h d)"', '"n h t d -> n t (d h)"'),
        Mutation("mask: images at the start", "allowed[:num_video_frames, :num_video_frames] = True",
                 "allowed[num_images:, num_images:] = True"),
        Mutation("mask: video block one frame too large", "num_video_frames = num_frames - num_images",
                 "num_video_frames = num_frames - num_images + 1"),
        Mutation("mask: negative index, breaks at num_images = 0",
                 "allowed[:num_video_frames, :num_video_frames] = True", "allowed[:-num_images, :-num_images] = True"),
        Mutation("mask: no identity for the images", "torch.eye(num_frames, dtype=torch.bool)",
                 "torch.zeros(num_frames, num_frames, dtype=torch.bool)"),
        Mutation("block: square frames assumed (H = W = x.shape[-1])", "height, width = x.shape[-2:]",
                 "height = width = x.shape[-1]"),
        Mutation("block: h and w swapped when folding back", "h=height, w=width)", "h=width, w=height)"),
        Mutation("block: frames unfolded as (t b)", '"(b t) c h w -> (b h w) t c"', '"(t b) c h w -> (b h w) t c"'),
        Mutation("block: no residual", "return x + rearrange(out,", "return rearrange(out,"),
        Mutation("block: no LayerNorm", "temporal_attention(layer.norm(tokens),", "temporal_attention(tokens,"),
        Mutation("block: mask not applied", '.masked_fill(~joint_mask(num_frames, num_images), float("-inf"))', ""),
        # written after the checks were tightened, to see whether they bite beyond the list they were tuned on
        Mutation("block: folded back as (b w h)", '"(b h w) t c -> (b t) c h w"', '"(b w h) t c -> (b t) c h w"'),
        Mutation("distance: absolute |j - i|", "return distance.clamp(-max_distance, max_distance)",
                 "return distance.abs().clamp(-max_distance, max_distance)"),
    ],
    "04_reconstruction_guidance": [
        Mutation("replace: noise sign", "z_t_a = alpha_t * x_a + sigma_t * eps", "z_t_a = alpha_t * x_a - sigma_t * eps"),
        Mutation("replace: known frames not noised", "z_t_a = alpha_t * x_a + sigma_t * eps", "z_t_a = x_a"),
        Mutation("replace: missing factor alpha_t", "z_t_a = alpha_t * x_a + sigma_t * eps", "z_t_a = x_a + sigma_t * eps"),
        Mutation("replace: known frames put at the end", "torch.cat([z_t_a, z_t[:, :, x_a.shape[2]:]], dim=2)",
                 "torch.cat([z_t[:, :, :-x_a.shape[2]], z_t_a], dim=2)"),
        Mutation("replace: number of known frames from the batch axis", "z_t[:, :, x_a.shape[2]:]", "z_t[:, :, x_a.shape[0]:]"),
        Mutation("replace: number of known frames from the channel axis", "z_t[:, :, x_a.shape[2]:]", "z_t[:, :, x_a.shape[1]:]"),
        Mutation("replace: scalar-only alpha (first item's)", "z_t_a = alpha_t * x_a + sigma_t * eps",
                 "z_t_a = alpha_t.flatten()[0] * x_a + sigma_t.flatten()[0] * eps"),
        Mutation("guided: missing /2", "(w_r * alpha_t / 2) * grad", "(w_r * alpha_t) * grad"),
        Mutation("guided: missing factor alpha_t", "(w_r * alpha_t / 2) * grad", "(w_r / 2) * grad"),
        Mutation("guided: sign of the correction", "return x_hat.detach() - (w_r", "return x_hat.detach() + (w_r"),
        Mutation("guided: error on the last frames", "x_hat[:, :, :x_a.shape[2]]", "x_hat[:, :, -x_a.shape[2]:]"),
        Mutation("guided: error on one frame too few", "x_hat[:, :, :x_a.shape[2]]", "x_hat[:, :, :x_a.shape[2] - 1]"),
        Mutation("guided: mean instead of sum", ".pow(2).sum()", ".pow(2).mean()"),
        Mutation("guided: x_hat with the sign of v flipped", "alpha_t * z_t - sigma_t * model_fn(z_t, t)",
                 "alpha_t * z_t + sigma_t * model_fn(z_t, t)"),
        Mutation("guided: number of known frames from the batch axis", "x_hat[:, :, :x_a.shape[2]]", "x_hat[:, :, :x_a.shape[0]]"),
        Mutation("guided: mean over the batch", ".pow(2).sum()", ".pow(2).sum(dim=(1, 2, 3, 4)).mean()"),
        # written after the checks were tightened, to see whether they bite beyond the list they were tuned on
        Mutation("guided: x_hat from the eps formula", "x_hat = alpha_t * z_t - sigma_t * model_fn(z_t, t)",
                 "x_hat = (z_t - sigma_t * model_fn(z_t, t)) / alpha_t"),
        Mutation("replace: noise from the first items only", "sigma_t * eps", "sigma_t[:1] * eps"),
    ],
    "05_data_curation": [
        Mutation("steps: no 1/2", ".abs().sum(dim=-1) / 2)", ".abs().sum(dim=-1))"),
        Mutation("steps: channels and bins swapped", ".sum(dim=-1) / 2).mean(dim=-1)", ".sum(dim=1) / 2).mean(dim=-1)"),
        Mutation("steps: squared instead of absolute", "(histograms[1:] - histograms[:-1]).abs()",
                 "(histograms[1:] - histograms[:-1]).pow(2)"),
        Mutation("steps: frames two apart (off by one)", "histograms[1:] - histograms[:-1]", "histograms[2:] - histograms[:-2]"),
        Mutation("cuts: b = t instead of t + 1", "cuts.append(t + 1)", "cuts.append(t)"),
        Mutation("cuts: window t-2..t+1 (off by one at the end)", "steps[max(0, t - 2): t + 3]", "steps[max(0, t - 2): t + 2]"),
        Mutation("cuts: window t-1..t+2 (off by one at the start)", "steps[max(0, t - 2): t + 3]", "steps[max(0, t - 1): t + 3]"),
        Mutation("cuts: window of 1 frame either side", "steps[max(0, t - 2): t + 3]", "steps[max(0, t - 1): t + 2]"),
        Mutation("cuts: last step never examined", "for t in range(len(steps)):", "for t in range(len(steps) - 1):"),
        Mutation("cuts: first step never examined", "for t in range(len(steps)):", "for t in range(1, len(steps)):"),
        Mutation("cuts: threshold ignored", "if steps[t] > threshold and steps[t] == nearby.max():",
                 "if steps[t] == nearby.max():"),
        Mutation("motion: width from the height axis", "width = flows.shape[-1]", "width = flows.shape[-2]"),
        Mutation("motion: norm over the pairs axis", "flows.norm(dim=1)", "flows.norm(dim=0)"),
        Mutation("motion: |dx| + |dy| instead of the norm", "flows.norm(dim=1)", "flows.abs().sum(dim=1)"),
        Mutation("motion: missing factor sample_fps", "* sample_fps / width", "/ width"),
        Mutation("motion: divided by sample_fps", "* sample_fps / width", "/ sample_fps / width"),
        Mutation("motion: not divided by the width", "* sample_fps / width", "* sample_fps"),
        # written after the checks were tightened, to see whether they bite beyond the list they were tuned on
        Mutation("steps: max over channels instead of mean", "/ 2).mean(dim=-1)", "/ 2).amax(dim=-1)"),
        Mutation("cuts: frame numbers as tensors", "cuts.append(t + 1)", "cuts.append(torch.tensor(t + 1))"),
        Mutation("motion: flow averaged before its norm", "flows.norm(dim=1).mean()",
                 "flows.mean(dim=(2, 3)).norm(dim=1).mean()"),
    ],
    "06_text2video_zero": [
        Mutation("shifts: k instead of k - 1 (frame 1 moves)", "strength * (k - 1) * dx, strength * (k - 1) * dy",
                 "strength * k * dx, strength * k * dy"),
        Mutation("shifts: frames numbered from 0 (off by one)", "torch.arange(1, num_frames + 1, dtype=torch.float64)",
                 "torch.arange(num_frames, dtype=torch.float64)"),
        Mutation("shifts: y sign flipped (y taken as growing upwards)", "strength * (k - 1) * dy]",
                 "-strength * (k - 1) * dy]"),
        Mutation("shifts: missing lambda", "[strength * (k - 1) * dx, strength * (k - 1) * dy]", "[(k - 1) * dx, (k - 1) * dy]"),
        Mutation("shifts: x and y swapped", "dx, dy = direction", "dy, dx = direction"),
        Mutation("shifts: (2, m) instead of (m, 2)", "dim=1)", "dim=0)"),
        Mutation("warp: torch.roll (wraps around the edges)", "return x[:, rows][:, :, cols]",
                 "return torch.roll(x, shifts=(dy, dx), dims=(1, 2))"),
        Mutation("warp: both signs flipped (in[y + dy, x + dx])",
                 "torch.arange(height) - dy, height)  # out[y, x] = in[y - dy, x - dx]\n"
                 "    cols = mirrored(torch.arange(width) - dx, width)",
                 "torch.arange(height) + dy, height)\n    cols = mirrored(torch.arange(width) + dx, width)"),
        Mutation("warp: sign of dx flipped", "torch.arange(width) - dx", "torch.arange(width) + dx"),
        Mutation("warp: dx on the rows, dy on the columns",
                 "torch.arange(height) - dy, height)  # out[y, x] = in[y - dy, x - dx]\n"
                 "    cols = mirrored(torch.arange(width) - dx, width)",
                 "torch.arange(height) - dx, height)\n    cols = mirrored(torch.arange(width) - dy, width)"),
        Mutation("warp: height and width swapped", "height, width = x.shape[-2:]", "width, height = x.shape[-2:]"),
        Mutation("warp: mirror skips the edge pixel (F.pad 'reflect')",
                 "index = index % (2 * size)  # the mirrored code repeats every 2 * size pixels\n"
                 "        return torch.where(index < size, index, 2 * size - 1 - index)",
                 "index = index % (2 * size - 2)\n        return torch.where(index < size, index, 2 * size - 2 - index)"),
        Mutation("warp: edge pixel repeated (clamp) instead of mirrored",
                 "index = index % (2 * size)  # the mirrored code repeats every 2 * size pixels\n"
                 "        return torch.where(index < size, index, 2 * size - 1 - index)",
                 "return index.clamp(0, size - 1)"),
        Mutation("warp: mirrored once only (no 2 * size period)", "index = index % (2 * size)",
                 "index = torch.where(index < 0, -1 - index, index)"),
        Mutation("attention: keys and values of the frame itself (self-attention)", "k1, v1 = k[0], v[0]", "k1, v1 = k, v"),
        Mutation("attention: keys and values of the previous frame", "k1, v1 = k[0], v[0]",
                 "k1, v1 = torch.cat([k[:1], k[:-1]]), torch.cat([v[:1], v[:-1]])"),
        Mutation("attention: keys and values of the last frame", "k1, v1 = k[0], v[0]", "k1, v1 = k[-1], v[-1]"),
        Mutation("attention: frame 1's keys but the frame's own values", "k1, v1 = k[0], v[0]", "k1, v1 = k[0], v"),
        Mutation("attention: no 1/sqrt(d)", " / q.shape[-1] ** 0.5", ""),
        Mutation("attention: scaled by sqrt(N) (tokens axis)", "/ q.shape[-1] ** 0.5", "/ q.shape[1] ** 0.5"),
        Mutation("attention: divided by d, not sqrt(d)", "/ q.shape[-1] ** 0.5", "/ q.shape[-1]"),
        Mutation("attention: softmax over the queries", "softmax(dim=-1)", "softmax(dim=-2)"),
        Mutation("attention: softmax over the frames", "softmax(dim=-1)", "softmax(dim=0)"),
        Mutation("attention: frame 1's queries for every frame", "logits = q @ k1", "logits = q[0] @ k1"),
    ],
    "07_controlvideo": [
        Mutation("zero conv: bias left at its random init", "    torch.nn.init.zeros_(conv.bias)\n", ""),
        Mutation("zero conv: small constant weights instead of zero", "torch.nn.init.zeros_(conv.weight)",
                 "torch.nn.init.constant_(conv.weight, 1e-3)"),
        Mutation("zero conv: 3 x 3 kernel", "kernel_size=1)", "kernel_size=3, padding=1)"),
        Mutation("zero conv: frozen (no gradient)", "    return conv\n", "    conv.requires_grad_(False)\n    return conv\n"),
        Mutation("inject: scale on the skip, not the residual", "skip + conditioning_scale * residual",
                 "conditioning_scale * skip + residual"),
        Mutation("inject: middle residual without the scale", "mid + conditioning_scale * mid_residual", "mid + mid_residual"),
        Mutation("inject: middle block not controlled", "mid + conditioning_scale * mid_residual", "mid"),
        Mutation("inject: residuals in reverse order", "zip(skips, residuals)", "zip(skips, residuals[::-1])"),
        Mutation("inject: scale squared", "conditioning_scale * residual", "conditioning_scale ** 2 * residual"),
        Mutation("fully cross-frame: frame 1's keys and values (Text2Video-Zero's)",
                 "keys, values = k.reshape(m * n, d), v.reshape(m * n, d)", "keys, values = k[0], v[0]"),
        Mutation("fully cross-frame: the frame's own keys and values",
                 "keys, values = k.reshape(m * n, d), v.reshape(m * n, d)  # [K^1; ...; K^m]: every frame's tokens\n"
                 "    logits = q @ keys.T",
                 "keys, values = k, v\n    logits = q @ keys.transpose(-1, -2)"),
        Mutation("fully cross-frame: keys and values stacked in different orders",
                 "keys, values = k.reshape(m * n, d), v.reshape(m * n, d)",
                 "keys, values = k.reshape(m * n, d), v.transpose(0, 1).reshape(m * n, d)"),
        Mutation("fully cross-frame: no 1/sqrt(d)", " / d ** 0.5", ""),
        Mutation("fully cross-frame: scaled by sqrt(N) (tokens axis)", "/ d ** 0.5", "/ n ** 0.5"),
        Mutation("fully cross-frame: softmax over the queries", "softmax(dim=-1)", "softmax(dim=-2)"),
        Mutation("smoother: every frame, not every other", "range(parity, frames, 2)", "range(parity, frames)"),
        Mutation("smoother: off by one (starts at parity + 1)", "range(parity, frames, 2)", "range(parity + 1, frames, 2)"),
        Mutation("smoother: wraps around at the ends",
                 "        if 0 < i < frames - 1:  # a frame with two neighbours\n"
                 "            smoothed[:, :, i] = interpolate(x0[:, :, i - 1], x0[:, :, i + 1])",
                 "        smoothed[:, :, i] = interpolate(x0[:, :, i - 1], x0[:, :, (i + 1) % frames])"),
        Mutation("smoother: frames taken from axis 1 (channels)", "frames = x0.shape[2]", "frames = x0.shape[1]"),
        Mutation("smoother: alpha and sigma swapped", "alpha_s * smoothed + sigma_s * eps", "sigma_s * smoothed + alpha_s * eps"),
        Mutation("smoother: returns the smoothed x0 (no DDIM step)", "return alpha_s * smoothed + sigma_s * eps",
                 "return smoothed"),
        Mutation("smoother: plain average instead of the given interpolation",
                 "interpolate(x0[:, :, i - 1], x0[:, :, i + 1])", "(x0[:, :, i - 1] + x0[:, :, i + 1]) / 2"),
        Mutation("smoother: noise re-derived from the smoothed x0 (eps dropped)", "alpha_s * smoothed + sigma_s * eps",
                 "alpha_s * smoothed + sigma_s * torch.zeros_like(eps)"),
    ],
    "08_tune_a_video": [
        Mutation("context: frame i instead of i - 1", "previous = [max(i - 1, 0) for i in range(num_frames)]",
                 "previous = list(range(num_frames))"),
        Mutation("context: frame 0's previous wraps to the last frame", "previous = [max(i - 1, 0) for i in range(num_frames)]",
                 "previous = [i - 1 for i in range(num_frames)]"),
        Mutation("context: the next frame (i + 1), not the previous",
                 "previous = [max(i - 1, 0) for i in range(num_frames)]",
                 "previous = [min(i + 1, num_frames - 1) for i in range(num_frames)]"),
        Mutation("context: joined along the width, not the tokens", "torch.cat([first, before], dim=2).reshape(total, 2 * n, d)",
                 "torch.cat([first, before], dim=3).reshape(total, n, 2 * d)"),
        Mutation("context: batch axis unfolded as (frames, videos)",
                 "frames = tokens.reshape(total // num_frames, num_frames, n, d)",
                 "frames = tokens.reshape(num_frames, total // num_frames, n, d).transpose(0, 1)"),
        Mutation("context: first frame of the whole batch for every video", "first = frames[:, [0] * num_frames]",
                 "first = frames[:1, [0] * num_frames].expand(len(frames), -1, -1, -1)"),
        Mutation("context: only frame i - 1 (no anchor frame 1)", "first = frames[:, [0] * num_frames]",
                 "first = frames[:, previous]"),
        Mutation("time: videos and frames swapped ((f b))", '"(b f) n d -> (b n) f d"', '"(f b) n d -> (b n) f d"'),
        Mutation("time: plain reshape (neighbouring tokens, not one pixel)",
                 'return rearrange(tokens, "(b f) n d -> (b n) f d", f=num_frames)',
                 "return tokens.reshape(-1, num_frames, tokens.shape[-1])"),
        Mutation("time: pixels outer, videos inner ((n b))", '"(b f) n d -> (b n) f d"', '"(b f) n d -> (n b) f d"'),
        Mutation("back: frames and tokens swapped", '"(b n) f d -> (b f) n d"', '"(b n) f d -> (b n) f d"'),
        Mutation("trainable: everything", "    model.requires_grad_(False)  ", "    model.requires_grad_(True)  "),
        Mutation("trainable: whole attn1 and attn2 (keys and values too)", 'trainable = ("attn1.to_q", "attn2.to_q", "attn_temp")',
                 'trainable = ("attn1", "attn2", "attn_temp")'),
        Mutation("trainable: no temporal attention", 'trainable = ("attn1.to_q", "attn2.to_q", "attn_temp")',
                 'trainable = ("attn1.to_q", "attn2.to_q")'),
        Mutation("trainable: T-Attn's queries only ('to_q' everywhere)", 'trainable = ("attn1.to_q", "attn2.to_q", "attn_temp")',
                 'trainable = ("to_q",)'),
        Mutation("trainable: norm_temp too", 'trainable = ("attn1.to_q", "attn2.to_q", "attn_temp")',
                 'trainable = ("attn1.to_q", "attn2.to_q", "attn_temp", "norm_temp")'),
        Mutation("trainable: cross-attention's query frozen", 'trainable = ("attn1.to_q", "attn2.to_q", "attn_temp")',
                 'trainable = ("attn1.to_q", "attn_temp")'),
    ],
    "09_make_a_video": [
        Mutation("identity: on tap 0 (the previous frame)", "weight[:, :, kernel_size // 2] = torch.eye(channels)",
                 "weight[:, :, 0] = torch.eye(channels)"),
        Mutation("identity: on the last tap (the next frame)", "weight[:, :, kernel_size // 2] = torch.eye(channels)",
                 "weight[:, :, -1] = torch.eye(channels)"),
        Mutation("identity: on every tap (a sum of 3 frames)", "weight[:, :, kernel_size // 2] = torch.eye(channels)",
                 "weight[:, :, :] = torch.eye(channels)[:, :, None]"),
        Mutation("identity: ones instead of eye (channels mixed)", "weight[:, :, kernel_size // 2] = torch.eye(channels)",
                 "weight[:, :, kernel_size // 2] = torch.ones(channels, channels)"),
        Mutation("identity: left at zero", "weight[:, :, kernel_size // 2] = torch.eye(channels)", "pass"),
        Mutation("identity: centre hard-coded for k = 3", "weight[:, :, kernel_size // 2] = torch.eye(channels)",
                 "weight[:, :, 1] = torch.eye(channels)"),
        Mutation("time: clips and frames swapped ((t b))", '"(b t) c h w -> (b h w) c t", t=num_frames)',
                 '"(t b) c h w -> (b h w) c t", t=num_frames)'),
        Mutation("time: no padding (the clip loses frames)", "padding=weight.shape[-1] // 2)", "padding=0)"),
        Mutation("time: convolved along the width", 'pixels = rearrange(x, "(b t) c h w -> (b h w) c t", t=num_frames)',
                 'pixels = rearrange(x, "bt c h w -> (bt h) c w")'),
        Mutation("time: folded back by a plain reshape", 'return rearrange(out, "(b h w) c t -> (b t) c h w", h=height, w=width)',
                 "return out.reshape(x.shape)"),
        Mutation("merge: alpha on the temporal output", "return alpha * z_spatial + (1 - alpha) * z_temporal",
                 "return (1 - alpha) * z_spatial + alpha * z_temporal"),
        Mutation("merge: no sigmoid (alpha = m)", "alpha = torch.sigmoid(mix_factor)", "alpha = mix_factor"),
        Mutation("merge: sigmoid(-m)", "alpha = torch.sigmoid(mix_factor)", "alpha = torch.sigmoid(-mix_factor)"),
        Mutation("merge: 1 - alpha forgotten", "return alpha * z_spatial + (1 - alpha) * z_temporal",
                 "return alpha * z_spatial + z_temporal"),
    ],
    "10_gen1": [
        Mutation("blur: pooling block 2 t_s (not 2^t_s)", "kernel_size=2**t_s)", "kernel_size=max(1, 2 * t_s))"),
        Mutation("blur: pooling block t_s + 1", "kernel_size=2**t_s)", "kernel_size=t_s + 1)"),
        Mutation("blur: not brought back to full size", 'full = F.interpolate(small, size=(height, width), mode="bilinear", align_corners=False)',
                 "full = small"),
        Mutation("blur: nearest-neighbour upsampling", 'mode="bilinear", align_corners=False)', 'mode="nearest")'),
        Mutation("blur: frames folded back as (t b)", 'return rearrange(full, "(b t) s h w -> b s t h w", b=clips)',
                 'return rearrange(full, "(t b) s h w -> b s t h w", b=clips)'),
        Mutation("blur: pooled across time too (each frame with the next)", "small = F.avg_pool2d(frames, kernel_size=2**t_s)",
                 'small = rearrange(F.avg_pool3d(rearrange(frames, "(b t) s h w -> b s t h w", b=clips), kernel_size=(2, 2**t_s, 2**t_s), '
                 'stride=(1, 2**t_s, 2**t_s), padding=(1, 0, 0))[:, :, 1:], "b s t h w -> (b t) s h w")'),
        Mutation("input: concatenated on the frame axis", "return torch.cat([z_t, structure], dim=1)",
                 "return torch.cat([z_t, structure.expand_as(z_t)], dim=2)"),
        Mutation("input: structure first", "return torch.cat([z_t, structure], dim=1)",
                 "return torch.cat([structure, z_t], dim=1)"),
        Mutation("input: added instead of concatenated", "return torch.cat([z_t, structure], dim=1)",
                 "return z_t + structure"),
        Mutation("attention: no 1/sqrt(d)", "q @ k.transpose(1, 2) / q.shape[-1] ** 0.5", "q @ k.transpose(1, 2)"),
        Mutation("attention: divided by d", "q @ k.transpose(1, 2) / q.shape[-1] ** 0.5", "q @ k.transpose(1, 2) / q.shape[-1]"),
        Mutation("attention: softmax over the pixels", "/ q.shape[-1] ** 0.5, dim=-1)", "/ q.shape[-1] ** 0.5, dim=1)"),
        Mutation("attention: keys and values from h (self-attention)", "q, k, v = h @ w_q, c @ w_k, c @ w_v",
                 "q, k, v = h @ w_q, h @ w_k, h @ w_v"),
        Mutation("attention: values from h", "q, k, v = h @ w_q, c @ w_k, c @ w_v", "q, k, v = h @ w_q, c @ w_k, h @ w_v"),
    ],
    "11_spacetime_patches": [
        Mutation("patchify: token order (h, w, t)", '"b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)"',
                 '"b c (t pt) (h ph) (w pw) -> b (h w t) (c pt ph pw)"'),
        Mutation("patchify: rows and columns swapped in the token order", '"b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)"',
                 '"b c (t pt) (h ph) (w pw) -> b (t w h) (c pt ph pw)"'),
        Mutation("patchify: channels last inside a token", '"b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)"',
                 '"b c (t pt) (h ph) (w pw) -> b (t h w) (pt ph pw c)"'),
        Mutation("patchify: p_h and p_w swapped inside a token", '"b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)"',
                 '"b c (t pt) (h ph) (w pw) -> b (t h w) (c pt pw ph)"'),
        Mutation("patchify: H and W read swapped (w pw) (h ph)", '"b c (t pt) (h ph) (w pw) -> b (t h w) (c pt ph pw)"',
                 '"b c (t pt) (w pw) (h ph) -> b (t h w) (c pt ph pw)"'),
        Mutation("patchify: box sizes p_h and p_w swapped", "(c pt ph pw)\", pt=p_t, ph=p_h, pw=p_w)",
                 "(c pt ph pw)\", pt=p_t, ph=p_w, pw=p_h)"),
        Mutation("patchify: box sizes given as numbers of boxes", "(c pt ph pw)\", pt=p_t, ph=p_h, pw=p_w)",
                 "(c pt ph pw)\", t=p_t, h=p_h, w=p_w)"),
        Mutation("unpatchify: token read channels last", '"b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)"',
                 '"b (t h w) (pt ph pw c) -> b c (t pt) (h ph) (w pw)"'),
        Mutation("unpatchify: tokens read in (h, w, t) order", '"b (t h w) (c pt ph pw) -> b c (t pt) (h ph) (w pw)"',
                 '"b (h w t) (c pt ph pw) -> b c (t pt) (h ph) (w pw)"'),
        Mutation("unpatchify: grid read as (H', W', T')", "frames, rows, columns = grid", "rows, columns, frames = grid"),
        Mutation("unpatchify: rows and columns of the grid swapped", "t=frames, h=rows, w=columns", "t=frames, h=columns, w=rows"),
        Mutation("rope: (sin, cos) returned", "return angles.cos(), angles.sin()", "return angles.sin(), angles.cos()"),
        Mutation("rope: split d/2, d/4, d/4", "dim_t, dim_hw = head_dim // 4, head_dim // 8 * 3",
                 "dim_t, dim_hw = head_dim // 2, head_dim // 4"),
        Mutation("rope: axes in (w, h, t) order", "((dim_t, positions[:, 0]), (dim_hw, positions[:, 1]), (dim_hw, positions[:, 2]))",
                 "((dim_t, positions[:, 2]), (dim_hw, positions[:, 1]), (dim_hw, positions[:, 0]))"),
        Mutation("rope: h' and w' swapped", "((dim_t, positions[:, 0]), (dim_hw, positions[:, 1]), (dim_hw, positions[:, 2]))",
                 "((dim_t, positions[:, 0]), (dim_hw, positions[:, 2]), (dim_hw, positions[:, 1]))"),
        Mutation("rope: frequencies repeated with repeat (rotate-half layout)", ".repeat_interleave(2, dim=1)", ".repeat(1, 2)"),
        Mutation("rope: frequencies not repeated for their pair", ".repeat_interleave(2, dim=1)", ""),
        Mutation("rope: exponent without the 2 (theta^(-i/d))", "-torch.arange(0, dim, 2).float() / dim)",
                 "-torch.arange(0, dim // 2).float() / dim)"),
        Mutation("rope: exponent doubled (theta^(-4i/d))", "-torch.arange(0, dim, 2).float() / dim)",
                 "-torch.arange(0, dim, 2).float() / (dim // 2))"),
        Mutation("rope: frequencies from the whole head's width", "-torch.arange(0, dim, 2).float() / dim)",
                 "-torch.arange(0, dim, 2).float() / head_dim)"),
        Mutation("rope: positive exponent", "theta ** (-torch.arange(0, dim, 2)", "theta ** (torch.arange(0, dim, 2)"),
        Mutation("rotation: by -angle", "return x * cos + rotated * sin", "return x * cos - rotated * sin"),
        Mutation("rotation: partner not negated", "torch.stack([-x_odd, x_even], dim=-1)", "torch.stack([x_odd, x_even], dim=-1)"),
        Mutation("rotation: pairs taken as halves", "x_even, x_odd = x[..., 0::2], x[..., 1::2]",
                 "x_even, x_odd = x.chunk(2, dim=-1)"),
        Mutation("rotation: partners concatenated, not interleaved", "torch.stack([-x_odd, x_even], dim=-1).flatten(-2)",
                 "torch.cat([-x_odd, x_even], dim=-1)"),
        Mutation("adaLN: missing 1 + scale", "z_in = norm(z) * (1 + scale) + shift", "z_in = norm(z) * scale + shift"),
        Mutation("adaLN: scale and shift swapped", "shift, scale, gate, c_shift, c_scale, c_gate = linear",
                 "scale, shift, gate, c_scale, c_shift, c_gate = linear"),
        Mutation("adaLN: text and video chunks swapped", "shift, scale, gate, c_shift, c_scale, c_gate = linear",
                 "c_shift, c_scale, c_gate, shift, scale, gate = linear"),
        Mutation("adaLN: SiLU forgotten", "linear(F.silu(e_t))", "linear(e_t)"),
        Mutation("adaLN: modulation not broadcast over the tokens", "[:, None].chunk(6, dim=-1)", ".chunk(6, dim=-1)"),
        Mutation("adaLN: no LayerNorm", "z_in = norm(z) * (1 + scale)", "z_in = z * (1 + scale)"),
        Mutation("adaLN: text modulated with the video's scale and shift", "c_in = norm(c) * (1 + c_scale) + c_shift",
                 "c_in = norm(c) * (1 + scale) + shift"),
        Mutation("sublayer: gate applied to the branch's input",
                 "out = f(torch.cat([c_in, z_in], dim=1))            # one pass over [c ; z]: the text tokens first\n"
                 "    text = c.shape[1]\n    return z + gate * out[:, text:], c + c_gate * out[:, :text]",
                 "out = f(torch.cat([c_gate * c_in, gate * z_in], dim=1))\n"
                 "    text = c.shape[1]\n    return z + out[:, text:], c + out[:, :text]"),
        Mutation("sublayer: gate on the residual too", "return z + gate * out[:, text:], c + c_gate * out[:, :text]",
                 "return gate * (z + out[:, text:]), c_gate * (c + out[:, :text])"),
        Mutation("sublayer: text gated with the video's gate", "c + c_gate * out[:, :text]", "c + gate * out[:, :text]"),
        Mutation("sublayer: joint sequence as [z ; c], split as [c ; z]", "f(torch.cat([c_in, z_in], dim=1))",
                 "f(torch.cat([z_in, c_in], dim=1))"),
        Mutation("sublayer: outputs split as [z ; c]", "z + gate * out[:, text:], c + c_gate * out[:, :text]",
                 "z + gate * out[:, :z.shape[1]], c + c_gate * out[:, z.shape[1]:]"),
    ],
    "12_image_to_video": [
        Mutation("edm: c_skip with sigma_d not squared on top", "c_skip = sigma_data**2 / total", "c_skip = sigma_data / total"),
        Mutation("edm: sigma_d not squared in the variance", "total = sigma**2 + sigma_data**2",
                 "total = sigma**2 + sigma_data"),
        Mutation("edm: c_skip = sigma^2 / (...), the noise's share", "c_skip = sigma_data**2 / total",
                 "c_skip = sigma**2 / total"),
        Mutation("edm: c_in without the square root", "c_in = 1 / total.sqrt()", "c_in = 1 / total"),
        Mutation("edm: c_in = 1 / sigma", "c_in = 1 / total.sqrt()", "c_in = 1 / sigma"),
        Mutation("edm: c_out without the square root", "c_out = sigma * sigma_data / total.sqrt()",
                 "c_out = sigma * sigma_data / total"),
        Mutation("edm: c_out with sigma_d squared", "c_out = sigma * sigma_data / total.sqrt()",
                 "c_out = sigma * sigma_data**2 / total.sqrt()"),
        Mutation("edm: c_out negative (v's sign in EDM)", "c_out = sigma * sigma_data / total.sqrt()",
                 "c_out = -sigma * sigma_data / total.sqrt()"),
        Mutation("edm: c_noise without the 1/4", "c_noise = sigma.log() / 4", "c_noise = sigma.log()"),
        Mutation("edm: c_noise with log10", "c_noise = sigma.log() / 4", "c_noise = sigma.log10() / 4"),
        Mutation("edm: c_noise = ln(sigma / 4)", "c_noise = sigma.log() / 4", "c_noise = (sigma / 4).log()"),
        Mutation("edm: c_noise with math.log (scalar-only)", "c_noise = sigma.log() / 4",
                 "c_noise = torch.tensor(math.log(sigma) / 4)"),
        Mutation("edm: sigma_d fixed at the paper's 0.5", "total = sigma**2 + sigma_data**2",
                 "sigma_data = 0.5\n    total = sigma**2 + sigma_data**2"),
        Mutation("edm: returned as (c_in, c_out, c_skip, c_noise)", "return c_skip, c_out, c_in, c_noise",
                 "return c_in, c_out, c_skip, c_noise"),
        Mutation("svd: c_out sign not flipped", "return c_skip, -c_out, c_in, c_noise", "return c_skip, c_out, c_in, c_noise"),
        Mutation("svd: sigma_d = 0.5", "edm_weights(sigma, 1.0)", "edm_weights(sigma, 0.5)"),
        Mutation("svd: c_skip negated instead of c_out", "return c_skip, -c_out, c_in, c_noise",
                 "return -c_skip, c_out, c_in, c_noise"),
        Mutation("denoise: weights broadcast along W", 'rearrange(c, "b -> b 1 1 1 1") for c in', "c for c in"),
        Mutation("denoise: weights broadcast along the channels", 'rearrange(c, "b -> b 1 1 1 1") for c in',
                 'rearrange(c, "b -> 1 b 1 1 1") for c in'),
        Mutation("denoise: c_noise reshaped too", "for c in (c_skip, c_out, c_in))",
                 'for c in (c_skip, c_out, c_in))\n    c_noise = rearrange(c_noise, "b -> b 1 1 1 1")'),
        Mutation("denoise: model given y, not c_in y", "F_y = model(c_in * y, c_noise)", "F_y = model(y, c_noise)"),
        Mutation("denoise: model given sigma, not c_noise", "F_y = model(c_in * y, c_noise)", "F_y = model(c_in * y, sigma)"),
        Mutation("denoise: no skip term", "return c_skip * y + c_out * F_y", "return c_out * F_y"),
        Mutation("denoise: c_skip and c_out swapped", "return c_skip * y + c_out * F_y", "return c_skip * F_y + c_out * y"),
        Mutation("denoise: weights argument ignored (svd_weights)", "= weights(sigma)", "= svd_weights(sigma)"),
        Mutation("ramp: reversed", "torch.linspace(min_scale, max_scale, num_frames)",
                 "torch.linspace(max_scale, min_scale, num_frames)"),
        Mutation("ramp: T + 1 points, last frame short of w_max", "torch.linspace(min_scale, max_scale, num_frames)",
                 "torch.linspace(min_scale, max_scale, num_frames + 1)[:num_frames]"),
        Mutation("ramp: step (max - min) / T", "torch.linspace(min_scale, max_scale, num_frames)",
                 "min_scale + torch.arange(num_frames) * (max_scale - min_scale) / num_frames"),
        Mutation("ramp: divided by T - 1 (NaN at T = 1)", "torch.linspace(min_scale, max_scale, num_frames)",
                 "min_scale + torch.arange(num_frames) * (max_scale - min_scale) / (num_frames - 1)"),
        Mutation("ramp: frames counted from 1", "torch.linspace(min_scale, max_scale, num_frames)",
                 "min_scale + torch.arange(1, num_frames + 1) * (max_scale - min_scale) / num_frames"),
        Mutation("guided: scales along W (bare (T,))", 'w = rearrange(scales, "t -> 1 1 t 1 1")', "w = scales"),
        Mutation("guided: scales along the channels", '"t -> 1 1 t 1 1"', '"t -> 1 t 1 1 1"'),
        Mutation("guided: scales along the clips", '"t -> 1 1 t 1 1"', '"t -> t 1 1 1 1"'),
        Mutation("guided: scales along the rows", '"t -> 1 1 t 1 1"', '"t -> 1 1 1 t 1"'),
        Mutation("guided: branches swapped", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return pred_cond + w * (pred_uncond - pred_cond)"),
        Mutation("guided: (1 + w) convention", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return pred_cond + w * (pred_cond - pred_uncond)"),
        Mutation("guided: w times v_cond, no difference", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return pred_uncond + w * pred_cond"),
        Mutation("guided: v_uncond not added back", "return pred_uncond + w * (pred_cond - pred_uncond)",
                 "return w * (pred_cond - pred_uncond)"),
        Mutation("time ids: fps, not fps - 1", "[[fps - 1, motion_bucket_id, noise_aug_strength]]",
                 "[[fps, motion_bucket_id, noise_aug_strength]]"),
        Mutation("time ids: motion bucket first", "[[fps - 1, motion_bucket_id, noise_aug_strength]]",
                 "[[motion_bucket_id, fps - 1, noise_aug_strength]]"),
        Mutation("time ids: motion bucket and noise strength swapped", "[[fps - 1, motion_bucket_id, noise_aug_strength]]",
                 "[[fps - 1, noise_aug_strength, motion_bucket_id]]"),
        Mutation("time ids: one row for the whole batch", "return u.repeat(batch, 1)", "return u"),
        Mutation("time ids: repeated along the ids axis", "return u.repeat(batch, 1)", "return u.repeat(1, batch)"),
    ],
}


@dataclass
class Result:
    notebook: str
    mutation: str
    outcome: str   # "caught" (a check cell raised), "missed" (all checks passed), "crash" (another cell raised)
    error: str     # the exception's name and the first line of its message
    seconds: float


def answer_regions(source: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of the answer regions in one cell's source (the marker lines excluded)."""
    regions, start, offset = [], None, 0
    for line in source.splitlines(keepends=True):
        if line.strip() == BEGIN:
            start = offset + len(line)
        elif line.strip() == END:
            regions.append((start, offset))
        offset += len(line)
    return regions


def apply_mutation(notebook: nbformat.NotebookNode, mutation: Mutation) -> nbformat.NotebookNode:
    """A copy of ``notebook`` with ``mutation.old`` replaced inside the one answer region that holds it."""
    mutated = nbformat.from_dict(json.loads(json.dumps(notebook)))
    places = [(cell, start, end) for cell in mutated.cells if cell.cell_type == "code"
              for start, end in answer_regions(cell.source) if cell.source[start:end].count(mutation.old) == 1]
    in_regions = sum(cell.source[start:end].count(mutation.old) for cell in mutated.cells if cell.cell_type == "code"
                     for start, end in answer_regions(cell.source))
    if len(places) != 1 or in_regions != 1:
        raise ValueError(f"mutation {mutation.name!r}: {mutation.old!r} must occur exactly once in the answer regions, "
                         f"found {in_regions} times: update the mutation to the current solution")
    cell, start, end = places[0]
    cell.source = cell.source[:start] + cell.source[start:end].replace(mutation.old, mutation.new) + cell.source[end:]
    return mutated


def is_check(cell: nbformat.NotebookNode) -> bool:
    return cell.cell_type == "code" and "check" in cell.metadata.get("tags", [])


def execute(notebook: nbformat.NotebookNode, path: Path, timeout: int = 300) -> tuple[str, str]:
    """Run the notebook up to its last check cell in a fresh kernel; return (outcome, error)."""
    last_check = max(i for i, cell in enumerate(notebook.cells) if is_check(cell))
    notebook = nbformat.from_dict(json.loads(json.dumps(notebook)))
    notebook.cells = notebook.cells[: last_check + 1]
    client = NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    try:
        client.execute(stderr=subprocess.DEVNULL)  # the kernel's own log lines would break up the table
    except CellExecutionError:
        pass
    for cell in notebook.cells:
        errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
        if errors:
            message = f"{errors[0]['ename']}: {errors[0]['evalue'].strip().splitlines()[0] if errors[0]['evalue'].strip() else ''}"
            return ("caught" if is_check(cell) else "crash"), message[:160]
    return "missed", ""


def run(notebooks: list[str], name_filter: str | None, solutions: Path, control: bool) -> list[Result]:
    results = []
    for stem in notebooks:
        path = solutions / f"{stem}.ipynb"
        notebook = nbformat.read(path, as_version=4)
        mutations = [m for m in MUTATIONS[stem] if name_filter is None or name_filter in m.name]
        for mutation in mutations:  # fail early on a stale mutation, before spending minutes executing
            apply_mutation(notebook, mutation)
        if control:
            start = time.perf_counter()
            outcome, error = execute(notebook, path)
            print(f"{stem:<28} {'(unchanged solution)':<55} {'ok' if outcome == 'missed' else 'FAILS: ' + error}"
                  f"  {time.perf_counter() - start:.0f}s", flush=True)
            if outcome != "missed":
                raise SystemExit(f"{path}: the unchanged solution does not pass its own checks")
        for mutation in mutations:
            start = time.perf_counter()
            outcome, error = execute(apply_mutation(notebook, mutation), path)
            result = Result(stem, mutation.name, outcome, error, time.perf_counter() - start)
            results.append(result)
            print(f"{stem:<28} {mutation.name:<55} {outcome:<7} {result.seconds:4.0f}s  {error}", flush=True)
    return results


def summarise(results: list[Result]) -> None:
    print()
    print(f"{'notebook':<28} {'caught':>6} / {'total':<5} rate")
    for stem in dict.fromkeys(r.notebook for r in results):
        rows = [r for r in results if r.notebook == stem]
        caught = sum(r.outcome == "caught" for r in rows)
        print(f"{stem:<28} {caught:>6} / {len(rows):<5} {caught / len(rows):.0%}")
    caught = sum(r.outcome == "caught" for r in results)
    print(f"{'all':<28} {caught:>6} / {len(results):<5} {caught / len(results):.1%}")
    for r in results:
        if r.outcome != "caught":
            print(f"  not caught ({r.outcome}): {r.notebook}: {r.mutation}  {r.error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notebook", action="append", help="a prefix such as 01 (repeatable); default: all")
    parser.add_argument("--mutation", help="run only the mutations whose name contains this")
    parser.add_argument("--solutions", type=Path, default=ROOT / "solutions", help="folder of solution notebooks")
    parser.add_argument("--control", action="store_true", help="first check that each unchanged solution passes")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    os.environ.setdefault("MINIVDM_DEVICE", "cpu")  # the kernels inherit it: results do not depend on a GPU
    notebooks = [stem for stem in MUTATIONS if not args.notebook or any(stem.startswith(p) for p in args.notebook)]
    if not notebooks:
        parser.error(f"no notebook starts with {args.notebook}; choose from {list(MUTATIONS)}")
    results = run(notebooks, args.mutation, args.solutions, args.control)
    summarise(results)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1))


if __name__ == "__main__":
    main()
