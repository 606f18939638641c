r"""What a Diffusion Transformer over spacetime patches costs as the video grows: full 3D attention (CogVideoX) against
factorised spatial / temporal attention (Latte), and, on a GPU, minivdm's ``VideoDiT`` against diffusers' at the
published sizes.

    OMP_NUM_THREADS=1 .venv/bin/python bench/dit_scale.py          # CPU section: bench/results/dit_scale.json
                                                                   # (~4 min of one core; 6.5 min wall on a busy 2-core box)
    .venv/bin/python bench/dit_scale.py --gpu                      # GPU section (CUDA only): adds "gpu" to the same file

**CPU section: one training step against the number of tokens.** A video (1, 4, T, H, W) is cut into patches of
1 x 4 x 4, so there are S = H W / 16 tokens per frame and N = T S tokens. Both models are ``VideoDiT`` with the same
small width (4 heads x 32 = D 128), text by cross-attention to 16 random text tokens, sincos positions, and the same
depth in blocks (``--blocks``, 4): "full" is 4 blocks that each attend over all N tokens; "factorised" is 2 spatial
blocks (each frame's S tokens) alternating with 2 temporal blocks (each position's T frames), as Latte does. So both
run the same number of self-attentions and feed-forwards on the same tokens and only the attention pattern differs
(Latte's temporal blocks have no cross-attention: the factorised model has 2 cross-attentions to the full model's 4,
with 16 text tokens a small part of either). A step is forward, MSE loss, backward (no optimizer). The self-attention
core, Q K^T and softmax(.) V, costs per block

    full:         4 D N^2 (forward) + 10 D N^2 (backward)            ~ N^2
    factorised:   spatial 14 D T S^2  +  temporal 14 D S T^2  = 14 D N (S + T)       ~ N (H W / p^2 + T)

while the linear layers cost ~ N D^2 in both. Each row reports:

* FLOPs per step: ``torch.utils.flop_counter.FlopCounterMode`` over one step. It counts matrix products only (linear
  layers, the patch convolution, attention), not the element-wise work (LayerNorm, GELU, softmax). On the CPU,
  ``scaled_dot_product_attention`` runs a fused kernel (``_scaled_dot_product_flash_attention_for_cpu`` and its
  backward) that torch's counter does not know and would count as 0; this bench maps both to torch's own SDPA
  formulas (``sdpa_flop_count``: 2 matmuls forward, 5 backward, as for the GPU kernels), so attention is counted.
  Self- and cross-attention are told apart by module (``attn1``, ``attn2``) in the forward pass, times 3.5 for
  forward + backward (the counter's module attribution is not reliable in the backward pass); the two must add up to
  all the attention counted, and every row checks the self-attention FLOPs against the formula above.
* Time per step: median of ``--repeats`` steps (more, up to 20, until they add up to ``--min-seconds``) after one
  warm-up step, as the process's CPU time (user + sys): with one thread that is the step's own work, not the time
  other processes held the core (on a shared machine the wall clock, also reported, can be several times longer).
* Peak memory added by a step: each measurement runs in a fresh process. After the warm-up step (so that one-time
  costs, such as the autograd engine's start and the FLOP counter's imports, are not counted) the C heap's free
  memory is handed back to the system (glibc ``malloc_trim``), so the resident set is the live memory (weights,
  inputs, code), and the process's peak resident set (VmHWM) is reset to it (Linux ``/proc/self/clear_refs`` "5");
  the peak over the timed steps minus that baseline is what a step adds (activations saved for backward, their
  gradients, the parameters' gradients). Large tensors are separate mappings that go back to the system when freed,
  so the peak resident set follows the live tensors. Where the reset is not allowed the fallback is ru_maxrss minus
  the resident set at the baseline (then an earlier, higher peak can hide a small step).

Two kernels: "fused" is PyTorch's default (a flash-attention kernel that never stores the N x N attention matrix, so
full attention's *memory* grows ~ N even though its FLOPs grow ~ N^2); "unfused" forces SDPA's math backend (softmax
of Q K^T materialised and saved for backward, as a plain implementation does), run up to ``--unfused-max-tokens`` to
show the N^2 memory that the fused kernel avoids. FLOPs are the same maths and counted once (fused run).

**GPU section (``--gpu``).** At the published sizes with random weights, in fp16 and bf16: ``VideoDiT`` against
diffusers' ``CogVideoXTransformer3DModel`` (cogvideox-2b: 13 latent frames x 60 x 90, 226 text tokens of 4096) and
``LatteTransformer3DModel`` (latte-1: 16 frames x 64 x 64, 120 text tokens of 4096). Both are built from one config
(``minivdm.configs.dit`` where it exists, else the published config.json values written below); diffusers' model gets
random weights (seed 0) and ours loads its state dict with ``load_state_dict(strict=True, assign=True)`` (Latte's
``pos_embed.`` read as ``patch_embed.``), so both models share the same weight tensors: the weights are on the GPU
once, and each model's peak (``torch.cuda.max_memory_allocated``, reset after the warm-up) is those weights plus its
own activations. The outputs on the same inputs are compared first (max abs difference, also relative to the output's
max abs); then forward time per call (CUDA events, 2 warm-ups, median of ``--gpu-repeats``, inference_mode) and
peak memory, and the ratio ours / diffusers. Each (model, dtype) runs in its own process.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "results" / "dit_scale.json"

# -- CPU section: the scaling models ------------------------------------------------------------------------------
CPU_SHAPES = ((4, 16), (8, 16), (16, 16), (8, 32), (16, 32), (32, 32), (8, 64), (16, 64), (32, 64))  # (T, H = W)
PATCH = 4                 # patches of 1 x 4 x 4 (one frame per patch, as Latte and CogVideoX 1.0)
CHANNELS = 4              # latent channels
TEXT_TOKENS = 16
TEXT_EMBED_DIM = 64
ATTENTIONS = ("full", "factorised")
KERNELS = ("fused", "unfused")

# -- GPU section: the published transformers (diffusers config.json values) ---------------------------------------
COGVIDEOX = "CogVideoXTransformer3DModel"
LATTE = "LatteTransformer3DModel"
PUBLISHED = {
    "cogvideox-2b": {  # THUDM/CogVideoX-2b transformer/config.json
        "_class_name": COGVIDEOX, "activation_fn": "gelu-approximate", "attention_bias": True,
        "attention_head_dim": 64, "dropout": 0.0, "flip_sin_to_cos": True, "freq_shift": 0, "in_channels": 16,
        "max_text_seq_length": 226, "norm_elementwise_affine": True, "norm_eps": 1e-05, "num_attention_heads": 30,
        "num_layers": 30, "out_channels": 16, "patch_size": 2, "sample_frames": 49, "sample_height": 60,
        "sample_width": 90, "spatial_interpolation_scale": 1.875, "temporal_compression_ratio": 4,
        "temporal_interpolation_scale": 1.0, "text_embed_dim": 4096, "time_embed_dim": 512,
        "timestep_activation_fn": "silu", "use_rotary_positional_embeddings": False,
    },
    "latte-1": {  # maxin-cn/Latte-1 transformer/config.json
        "_class_name": LATTE, "activation_fn": "gelu-approximate", "attention_bias": True, "attention_head_dim": 72,
        "caption_channels": 4096, "cross_attention_dim": 1152, "dropout": 0.0, "in_channels": 4,
        "norm_elementwise_affine": False, "norm_eps": 1e-06, "norm_type": "ada_norm_single", "num_attention_heads": 16,
        "num_embeds_ada_norm": 1000, "num_layers": 28, "out_channels": 8, "patch_size": 2, "sample_size": 64,
        "video_length": 16,
    },
}
# (latent frames, latent height, latent width, text tokens): CogVideoX's 49 frames at 480 x 720 through its VAE
# (4x in time, 8x in space), T5 padded to 226; Latte's 16 frames at 512 x 512, T5 padded to 120 (its pipeline's)
PUBLISHED_INPUTS = {"cogvideox-2b": (13, 60, 90, 226), "latte-1": (16, 64, 64, 120)}
# --gpu-smoke-cpu: the same code on the CPU at a tiny width and size, to catch errors where no GPU is at hand
TINY_OVERRIDES = {
    "cogvideox-2b": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "text_embed_dim": 32,
                     "time_embed_dim": 32, "sample_frames": 9, "sample_height": 8, "sample_width": 12,
                     "max_text_seq_length": 8},
    "latte-1": {"num_layers": 2, "num_attention_heads": 2, "attention_head_dim": 16, "caption_channels": 32,
                "cross_attention_dim": 32, "sample_size": 8, "video_length": 4},
}
TINY_INPUTS = {"cogvideox-2b": (3, 8, 12, 8), "latte-1": (4, 8, 8, 6)}
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
# largest max |ours - diffusers| / max |diffusers| taken as agreement: rounding of the dtype, accumulated over the layers
AGREEMENT = {"fp32": 1e-4, "fp16": 0.05, "bf16": 0.05}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = re.search(r"model name\s*:\s*(.*)", file.read()).group(1)
    except (OSError, AttributeError):
        pass
    info = {"platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        info["cuda"] = torch.version.cuda
    return info


# == CPU section ====================================================================================================
def scaling_config(attention: str, blocks: int, heads: int, head_dim: int):
    from minivdm.models.dit import DiTConfig

    return DiTConfig(name=f"scale-{attention}", text_conditioning="cross", attention=attention, positions="sincos",
                     in_channels=CHANNELS, out_channels=CHANNELS, patch_size=PATCH, patch_size_t=None,
                     num_attention_heads=heads, attention_head_dim=head_dim,
                     num_layers=blocks if attention == "full" else blocks // 2,  # factorised: pairs of blocks
                     text_embed_dim=TEXT_EMBED_DIM, sample_height=32, sample_width=32)


def expected_self_attention_flops(attention: str, blocks: int, dim: int, frames: int, per_frame: int) -> int:
    """Q K^T and softmax(.) V of every self-attention, forward (2 matmuls) and backward (5), in torch's count."""
    tokens = frames * per_frame
    if attention == "full":
        return blocks * 14 * dim * tokens ** 2
    return blocks // 2 * 14 * dim * tokens * (per_frame + frames)


def cpu_sdpa_flop_formulas() -> dict:
    """torch's SDPA formulas for the fused CPU kernel, which torch's FlopCounterMode does not list (it would count 0)."""
    from torch.utils.flop_counter import sdpa_backward_flop_count, sdpa_flop_count

    def forward(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    def backward(grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs):
        return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)

    aten = torch.ops.aten
    return {aten._scaled_dot_product_flash_attention_for_cpu: forward,
            aten._scaled_dot_product_flash_attention_for_cpu_backward: backward}


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as file:
        return int(re.search(rf"^{field}:\s+(\d+)", file.read(), re.MULTILINE).group(1))


def release_free_heap() -> None:
    """Hand the C heap's free memory back to the system (glibc malloc_trim), so that the resident set is the live
    memory: a later step reusing memory the allocator kept would otherwise not show in the peak."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak_rss() -> tuple[int, str]:
    """(baseline KiB, method): the resident set now, and the high-water mark reset to it where Linux allows."""
    try:
        with open("/proc/self/clear_refs", "w") as file:
            file.write("5")
        return _status_kib("VmRSS"), "VmHWM after reset (clear_refs 5) - VmRSS at reset"
    except OSError:
        return _status_kib("VmRSS"), "ru_maxrss - VmRSS at baseline (peak reset not allowed)"


def peak_rss_kib(method: str) -> int:
    if method.startswith("VmHWM"):
        return _status_kib("VmHWM")
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def measure_cpu_step(spec: dict) -> dict:
    """Runs in a fresh process: one configuration's FLOPs, time and peak memory of a training step."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode

    from minivdm.models.dit import VideoDiT

    attention, kernel, frames, side = spec["attention"], spec["kernel"], spec["frames"], spec["size"]
    config = scaling_config(attention, spec["blocks"], spec["heads"], spec["head_dim"])
    torch.manual_seed(0)
    model = VideoDiT(config).train()
    generator = torch.Generator().manual_seed(1)
    video = torch.randn(1, CHANNELS, frames, side, side, generator=generator)
    target = torch.randn(1, CHANNELS, frames, side, side, generator=generator)
    text = torch.randn(1, TEXT_TOKENS, TEXT_EMBED_DIM, generator=generator)
    timestep = torch.tensor([500])

    def step():
        loss = torch.nn.functional.mse_loss(model(video, timestep, text), target)
        loss.backward()
        model.zero_grad(set_to_none=True)

    backends = [SDPBackend.MATH] if kernel == "unfused" else [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH]
    with sdpa_kernel(backends):
        row = {"parameters": sum(p.numel() for p in model.parameters())}
        if spec["count_flops"]:  # the warm-up step, under the counter (it keeps counts, no tensors)
            counter = FlopCounterMode(display=False, custom_mapping=cpu_sdpa_flop_formulas())
            with counter:
                step()
            counts = counter.get_flop_counts()
            forward_op = str(torch.ops.aten._scaled_dot_product_flash_attention_for_cpu)
            attention_total = sum(flops for op, flops in counts["Global"].items() if "scaled_dot_product" in str(op))

            def attention_flops(suffix: str) -> int:
                # the forward kernels of every module named *.attn1 (self) or *.attn2 (cross), times 3.5 for forward
                # (2 matmuls) + backward (5): the counter's module attribution holds in the forward pass but not in
                # the backward, where its module stack still holds modules already left
                forward = sum(flops for module, ops in counts.items() if module.endswith(suffix)
                              for op, flops in ops.items() if str(op) == forward_op)
                return forward * 7 // 2

            row.update({"flops": counter.get_total_flops(), "attention_flops": attention_total,
                        "self_attention_flops": attention_flops(".attn1"),
                        "cross_attention_flops": attention_flops(".attn2")})
            if attention_total == 0:
                raise RuntimeError("no attention FLOPs counted: SDPA ran a kernel this bench does not map "
                                   f"(ops seen: {sorted(str(op) for op in counts['Global'])})")
            if row["self_attention_flops"] + row["cross_attention_flops"] != attention_total:
                raise RuntimeError(f"attention FLOPs per module ({row['self_attention_flops']} self + "
                                   f"{row['cross_attention_flops']} cross) do not add up to the counted {attention_total}")
        else:
            step()  # warm-up
        release_free_heap()
        baseline_kib, memory_method = reset_peak_rss()  # the peak below is the timed steps'
        wall, cpu = [], []
        while len(wall) < spec["repeats"] or (sum(wall) < spec["min_seconds"] and len(wall) < 20):
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            step()
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
        peak_kib = peak_rss_kib(memory_method)
        row.update({"seconds": statistics.median(wall), "cpu_seconds": statistics.median(cpu), "wall_times": wall,
                    "cpu_times": cpu, "peak_added_mib": (peak_kib - baseline_kib) / 1024,
                    "memory_method": memory_method})
    return row


def run_cpu_child(args, spec: dict) -> dict:
    environment = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    command = [sys.executable, __file__, "--cpu-child", json.dumps(spec), "--cap-gib", str(args.cap_gib)]
    run = subprocess.run(command, capture_output=True, text=True, env=environment)
    lines = run.stdout.strip().splitlines()
    if run.returncode == 0 and lines:
        return json.loads(lines[-1])
    reason = "out of memory" if "memory" in run.stderr.lower() else f"failed (exit {run.returncode})"
    return {"error": reason, "stderr_tail": run.stderr[-600:]}


def fit_exponent(tokens: list[int], values: list[float]) -> float:
    """Least-squares slope of log(value) against log(N)."""
    import math

    xs, ys = [math.log(n) for n in tokens], [math.log(v) for v in values]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    return (sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
            / sum((x - mean_x) ** 2 for x in xs))


def cell(result: dict, key: str, scale: float) -> str:
    """One table cell of a measurement: the value, its error, or '-' where it was not run."""
    if not result:
        return "-"
    return f"{result[key] * scale:.0f}" if key in result else result.get("error", "failed")


def cpu_section(args) -> dict:
    dim = args.heads * args.head_dim
    print(f"CPU, {args.threads} thread(s), torch {torch.__version__}: VideoDiT, text by cross-attention "
          f"({TEXT_TOKENS} tokens), D = {args.heads} x {args.head_dim} = {dim}, {args.blocks} blocks (factorised: "
          f"{args.blocks // 2} spatial + {args.blocks // 2} temporal), patches 1x{PATCH}x{PATCH}, {CHANNELS} channels, "
          f"batch 1; a step = forward + MSE + backward; time = median of >= {args.repeats} steps (more, up to 20, until "
          f"{args.min_seconds:g} s) after a warm-up; memory = peak RSS the step added (own process); unfused = SDPA's "
          f"math backend (up to {args.unfused_max_tokens} tokens)\n",
          flush=True)
    header = ("| N | T x H x W | S = HW/p^2 | attention | GFLOP / step | self-attn share | cross-attn share | "
              "CPU ms / step | wall ms / step | peak MiB | CPU ms / step unfused | peak MiB unfused |")
    print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    rows = []
    started = time.perf_counter()
    for frames, side in args.shapes:
        per_frame = (side // PATCH) ** 2
        tokens = frames * per_frame
        for attention in ATTENTIONS:
            row = {"attention": attention, "frames": frames, "height": side, "width": side, "tokens_per_frame": per_frame,
                   "tokens": tokens}
            for kernel in KERNELS:
                if kernel == "unfused" and tokens > args.unfused_max_tokens:
                    continue
                spec = {"attention": attention, "kernel": kernel, "frames": frames, "size": side,
                        "blocks": args.blocks, "heads": args.heads, "head_dim": args.head_dim,
                        "repeats": args.repeats, "min_seconds": args.min_seconds, "count_flops": kernel == "fused"}
                row[kernel] = run_cpu_child(args, spec)
            fused = row["fused"]
            if "flops" in fused:
                expected = expected_self_attention_flops(attention, args.blocks, dim, frames, per_frame)
                row.update({"gflop": fused["flops"] / 1e9, "self_attention_share": fused["self_attention_flops"] / fused["flops"],
                            "cross_attention_share": fused["cross_attention_flops"] / fused["flops"],
                            "expected_self_attention_flops": expected,
                            "self_attention_flops_match_formula": fused["self_attention_flops"] == expected})
            rows.append(row)
            unfused = row.get("unfused", {})
            if "gflop" in row:
                flops = (f"{row['gflop']:.2f} | {100 * row['self_attention_share']:.1f}% | "
                         f"{100 * row['cross_attention_share']:.1f}%")
            else:
                flops = "- | - | -"
            print(f"| {tokens} | {frames} x {side} x {side} | {per_frame} | {attention} | {flops} | "
                  f"{cell(fused, 'cpu_seconds', 1000)} | {cell(fused, 'seconds', 1000)} | "
                  f"{cell(fused, 'peak_added_mib', 1)} | {cell(unfused, 'cpu_seconds', 1000)} | "
                  f"{cell(unfused, 'peak_added_mib', 1)} |", flush=True)
    elapsed = time.perf_counter() - started
    summary = summarise(rows)
    print()
    for line in summary["lines"]:
        print(line)
    print(f"\nCPU section: {elapsed:.0f} s", flush=True)
    return {"section": "cpu", "machine": machine() | {"threads": args.threads}, "seconds_total": elapsed,
            "settings": {"blocks": args.blocks, "heads": args.heads, "head_dim": args.head_dim, "patch": [1, PATCH, PATCH],
                         "channels": CHANNELS, "text_tokens": TEXT_TOKENS, "text_embed_dim": TEXT_EMBED_DIM,
                         "batch": 1, "repeats": args.repeats, "min_seconds": args.min_seconds,
                         "unfused_max_tokens": args.unfused_max_tokens,
                         "configs": {attention: asdict(scaling_config(attention, args.blocks, args.heads, args.head_dim))
                                     for attention in ATTENTIONS},
                         "flops_counted": "matrix products only (linear, conv, attention via torch's SDPA formulas "
                                          "mapped onto the fused CPU kernel); element-wise ops not counted",
                         "step": "forward + MSE loss + backward, no optimizer, batch 1"},
            "rows": rows, "summary": {key: value for key, value in summary.items() if key != "lines"},
            "summary_lines": summary["lines"]}


def summarise(rows: list[dict]) -> dict:
    """Fitted exponents of cost against N, and full / factorised at the largest N both ran."""
    lines, fits = [], {}
    good = [row for row in rows if "gflop" in row and "cpu_seconds" in row["fused"]]
    matches = bool(good) and all(row["self_attention_flops_match_formula"] for row in good)
    lines.append("counted self-attention FLOPs equal the formula (full: 14 D N^2, factorised: 14 D N (S + T) per "
                 f"block, pairs for factorised) in every row: {'yes' if matches else 'NO' if good else 'no rows measured'}")
    for attention in ATTENTIONS:
        mine = [row for row in good if row["attention"] == attention and row["tokens"] >= 512]
        if len(mine) < 2:
            continue
        tokens = [row["tokens"] for row in mine]
        fit = {"self_attention_flops": fit_exponent(tokens, [row["fused"]["self_attention_flops"] for row in mine]),
               "flops": fit_exponent(tokens, [row["fused"]["flops"] for row in mine]),
               "cpu_seconds": fit_exponent(tokens, [row["fused"]["cpu_seconds"] for row in mine]),
               "peak_added_mib": fit_exponent(tokens, [max(row["fused"]["peak_added_mib"], 1e-3) for row in mine])}
        unfused = [row for row in mine if "peak_added_mib" in row.get("unfused", {})]
        if len(unfused) >= 2:
            fit["peak_added_mib_unfused"] = fit_exponent([row["tokens"] for row in unfused],
                                                         [row["unfused"]["peak_added_mib"] for row in unfused])
        fits[attention] = fit
        lines.append(f"{attention}: fitted over N >= 512 ({min(tokens)}..{max(tokens)}): self-attention FLOPs ~ "
                     f"N^{fit['self_attention_flops']:.2f}, all FLOPs ~ N^{fit['flops']:.2f}, CPU time ~ "
                     f"N^{fit['cpu_seconds']:.2f}, peak memory ~ N^{fit['peak_added_mib']:.2f} (fused)"
                     + (f", N^{fit['peak_added_mib_unfused']:.2f} (unfused)" if "peak_added_mib_unfused" in fit else ""))
    ratios = []
    by_shape = {}
    for row in good:
        by_shape.setdefault((row["frames"], row["height"]), {})[row["attention"]] = row
    for (frames, side), pair in sorted(by_shape.items(), key=lambda item: item[0][0] * item[0][1] ** 2):
        if len(pair) == 2:
            full, factorised = pair["full"], pair["factorised"]
            ratios.append({"frames": frames, "size": side, "tokens": full["tokens"],
                           "flops": full["fused"]["flops"] / factorised["fused"]["flops"],
                           "cpu_seconds": full["fused"]["cpu_seconds"] / factorised["fused"]["cpu_seconds"],
                           "self_attention_flops": (full["fused"]["self_attention_flops"]
                                                    / factorised["fused"]["self_attention_flops"]),
                           "expected_self_attention_ratio": 2 * full["tokens"] / (full["tokens_per_frame"] + frames)})
    if ratios:
        last = ratios[-1]
        lines.append(f"full / factorised at N = {last['tokens']} ({last['frames']} x {last['size']} x {last['size']}): "
                     f"self-attention FLOPs x{last['self_attention_flops']:.1f} (2N / (S + T) = "
                     f"{last['expected_self_attention_ratio']:.1f}), all FLOPs x{last['flops']:.1f}, "
                     f"CPU time x{last['cpu_seconds']:.1f}")
        counts = [ratio["tokens"] for ratio in ratios]
        same = [ratio for ratio in ratios if counts.count(ratio["tokens"]) > 1][:2]
        if same:
            a, b = same
            lines.append(f"same N = {a['tokens']}, different shapes: {a['frames']} x {a['size']}^2 vs {b['frames']} x {b['size']}^2 "
                         f"-> full / factorised self-attention x{a['self_attention_flops']:.1f} vs "
                         f"x{b['self_attention_flops']:.1f}: factorised cost depends on S + T, full only on N")
    return {"matches_formula": matches, "fits": fits, "full_over_factorised": ratios, "lines": lines}


# == GPU section ====================================================================================================
def published_config(name: str, tiny: bool):
    """(diffusers config dict with _class_name, our DiTConfig, where they came from): minivdm.configs.dit's where it
    exists, else this bench's copy of the published values; ``tiny`` shrinks the width and depth for the smoke test."""
    from minivdm.models.dit_checkpoints import dit_config_from_diffusers

    try:
        from minivdm.configs.dit import DIT_CONFIGS, full_scale_dit_config
    except ImportError:
        published, source, full_scale = dict(PUBLISHED[name]), "bench/dit_scale.py (no minivdm.configs.dit)", None
    else:
        published, source, full_scale = dict(DIT_CONFIGS[name]), "minivdm.configs.dit", full_scale_dit_config
        differences = {key: (PUBLISHED[name].get(key), published.get(key)) for key in set(PUBLISHED[name]) | set(published)
                       if not key.startswith("_") and PUBLISHED[name].get(key) != published.get(key)}
        if differences:
            print(f"note: minivdm.configs.dit's {name} differs from this bench's copy, (bench, module): {differences}",
                  file=sys.stderr)
    if tiny:
        published.update(TINY_OVERRIDES[name])
        return published, dit_config_from_diffusers(published, name=f"{name}-tiny"), source + ", tiny overrides"
    config = full_scale(name) if full_scale else dit_config_from_diffusers(published, name=name)
    return published, config, source


def measure_pair(spec: dict) -> dict:
    """Runs in a fresh process: ours against diffusers for one published model and dtype."""
    import diffusers

    from minivdm.models.dit import VideoDiT
    from minivdm.models.dit_checkpoints import diffusers_key

    name, device, dtype = spec["name"], spec["device"], DTYPES[spec["dtype"]]
    published, config, source = published_config(name, spec["tiny"])
    class_name = published["_class_name"]
    kwargs = {key: value for key, value in published.items() if not key.startswith("_")}
    torch.manual_seed(0)
    with torch.device(device):
        reference = getattr(diffusers, class_name)(**kwargs)
    reference = reference.to(dtype).eval()
    with torch.device("meta"):
        ours = VideoDiT(config)
    state = {diffusers_key(key, class_name): value for key, value in reference.state_dict().items()}
    ours.load_state_dict(state, strict=True, assign=True)  # the same tensors: the weights are on the device once
    ours.eval()
    left_on_meta = [key for key, value in [*ours.named_parameters(), *ours.named_buffers()] if value.is_meta]
    if left_on_meta:
        raise RuntimeError(f"parameters not loaded from diffusers' state dict: {left_on_meta[:5]}")

    frames, height, width, text_tokens = (TINY_INPUTS if spec["tiny"] else PUBLISHED_INPUTS)[name]
    batch = spec["batch"]
    generator = torch.Generator().manual_seed(1)
    video = torch.randn(batch, config.in_channels, frames, height, width, generator=generator).to(device, dtype)
    text = torch.randn(batch, text_tokens, config.text_embed_dim, generator=generator).to(device, dtype)
    timestep = torch.full((batch,), 500, dtype=torch.long, device=device)
    if class_name == COGVIDEOX:  # diffusers' CogVideoX takes and returns (B, F, C, H, W)
        video_frames_first = video.permute(0, 2, 1, 3, 4).contiguous()

        def run_diffusers():
            out = reference(hidden_states=video_frames_first, encoder_hidden_states=text, timestep=timestep,
                            return_dict=False)[0]
            return out.permute(0, 2, 1, 3, 4)
    else:
        def run_diffusers():
            return reference(hidden_states=video, timestep=timestep, encoder_hidden_states=text, return_dict=False)[0]

    def run_ours():
        return ours(video, timestep, text)

    p_t, p, _ = config.patch
    row = {"name": name, "dtype": spec["dtype"], "device": device, "config_source": source, "batch": batch,
           "input": [batch, config.in_channels, frames, height, width], "text_tokens": text_tokens,
           "video_tokens": (frames // p_t) * (height // p) * (width // p),
           "parameters": sum(parameter.numel() for parameter in ours.parameters())}
    with torch.inference_mode():
        expected = run_diffusers().float()
        try:
            actual = run_ours().float()
        except Exception as error:  # recorded, and diffusers is still timed
            row["ours_error"] = f"{type(error).__name__}: {error}"
        else:
            row["max_abs_diff"] = (actual - expected).abs().max().item()
            row["output_max_abs"] = expected.abs().max().item()
            row["relative_diff"] = row["max_abs_diff"] / max(row["output_max_abs"], 1e-12)
            row["agree"] = row["relative_diff"] <= AGREEMENT[spec["dtype"]]
            del actual
        del expected
    row["diffusers"] = time_forward(run_diffusers, device, spec["repeats"])
    if "ours_error" not in row:
        row["ours"] = time_forward(run_ours, device, spec["repeats"])
        row["time_ratio"] = row["ours"]["seconds"] / row["diffusers"]["seconds"]
        if row["ours"]["peak_bytes"] is not None:
            row["memory_ratio"] = row["ours"]["peak_bytes"] / row["diffusers"]["peak_bytes"]
    return row


def time_forward(run, device: str, repeats: int, warmups: int = 2) -> dict:
    cuda = device.startswith("cuda")
    with torch.inference_mode():
        for _ in range(warmups):
            run()
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated() if cuda else None
        times = []
        for _ in range(repeats):
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                run()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end) / 1000)
            else:
                start = time.perf_counter()
                run()
                times.append(time.perf_counter() - start)
        peak = torch.cuda.max_memory_allocated() if cuda else None
    return {"seconds": statistics.median(times), "times": times, "peak_bytes": peak,
            "allocated_before_bytes": before}


def gpu_section(args, smoke: bool) -> dict:
    device = "cpu" if smoke else "cuda"
    names = ("cogvideox-2b", "latte-1")
    dtypes = ("fp32", "bf16", "fp16") if smoke else ("fp16", "bf16")
    repeats = 2 if smoke else args.gpu_repeats
    print(("SMOKE TEST on the CPU with tiny configs (no timing meaning)\n" if smoke else "")
          + f"forward of one step, batch {args.batch}, random weights shared by both models, median of {repeats} "
          f"after 2 warm-ups ({'wall clock' if smoke else 'CUDA events'}); peak = max_memory_allocated\n", flush=True)
    header = ("| model | dtype | video tokens | max abs diff (rel) | ours ms | diffusers ms | time ours/diffusers | "
              "ours peak GiB | diffusers peak GiB | memory ours/diffusers |")
    print(header + "\n|" + "---|" * (header.count("|") - 1), flush=True)
    rows = []
    started = time.perf_counter()
    for name in names:
        for dtype in dtypes:
            spec = {"name": name, "dtype": dtype, "device": device, "tiny": smoke, "batch": args.batch,
                    "repeats": repeats}
            command = [sys.executable, __file__, "--gpu-child", json.dumps(spec)]
            run = subprocess.run(command, capture_output=True, text=True)
            lines = run.stdout.strip().splitlines()
            if run.returncode == 0 and lines:
                row = json.loads(lines[-1])
            else:
                reason = "out of memory" if "out of memory" in run.stderr.lower() else f"failed (exit {run.returncode})"
                row = {"name": name, "dtype": dtype, "error": reason, "stderr_tail": run.stderr[-1500:]}
                print(f"| {name} | {dtype} | {reason} |", flush=True)
                print(run.stderr[-1500:], file=sys.stderr)
                rows.append(row)
                continue
            rows.append(row)
            gib = 2 ** 30
            theirs = row["diffusers"]
            their_memory = f"{theirs['peak_bytes'] / gib:.2f}" if theirs["peak_bytes"] is not None else "-"
            if "ours_error" in row:
                print(f"| {name} | {dtype} | {row['video_tokens']} | ours failed: {row['ours_error'][:120]} | - | "
                      f"{theirs['seconds'] * 1000:.1f} | - | - | {their_memory} | - |", flush=True)
                continue
            mine = row["ours"]
            my_memory = f"{mine['peak_bytes'] / gib:.2f}" if mine["peak_bytes"] is not None else "-"
            memory_ratio = f"{row['memory_ratio']:.3f}" if "memory_ratio" in row else "-"
            print(f"| {name} | {dtype} | {row['video_tokens']} | {row['max_abs_diff']:.3g} ({row['relative_diff']:.2g}) | "
                  f"{mine['seconds'] * 1000:.1f} | {theirs['seconds'] * 1000:.1f} | {row['time_ratio']:.3f} | "
                  f"{my_memory} | {their_memory} | {memory_ratio} |", flush=True)
            if not row["agree"]:
                print(f"WARNING: {name} {dtype}: outputs differ by {row['relative_diff']:.2g} of their scale (more than "
                      f"{AGREEMENT[dtype]}): the timings compare different computations", flush=True)
    elapsed = time.perf_counter() - started
    print(f"\n{'smoke' if smoke else 'GPU'} section: {elapsed:.0f} s", flush=True)
    return {"section": "gpu", "machine": machine(), "seconds_total": elapsed, "batch": args.batch, "repeats": repeats,
            "inputs": {name: dict(zip(("frames", "height", "width", "text_tokens"), PUBLISHED_INPUTS[name]))
                       for name in names},
            "rows": rows}


def write_section(path: Path, key: str, section: dict) -> None:
    """Both sections live in one file: write this one, keep the other."""
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = section
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {path} ({key})")


def parse_shapes(values: list[str]) -> list[tuple[int, int]]:
    shapes = []
    for value in values:
        match = re.fullmatch(r"(\d+)x(\d+)", value)
        if not match or int(match.group(2)) % PATCH:
            raise argparse.ArgumentTypeError(f"--shapes takes FRAMESxSIZE with SIZE a multiple of {PATCH}, got {value!r}")
        shapes.append((int(match.group(1)), int(match.group(2))))
    return shapes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gpu", action="store_true", help="the GPU section (published sizes, ours vs diffusers)")
    parser.add_argument("--shapes", nargs="+", default=[f"{t}x{s}" for t, s in CPU_SHAPES],
                        help="CPU: FRAMESxSIZE videos (SIZE x SIZE pixels)")
    parser.add_argument("--blocks", type=int, default=4, help="CPU: transformer blocks (factorised: half spatial, half temporal)")
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3, help="CPU: timed steps per measurement (median)")
    parser.add_argument("--min-seconds", type=float, default=1.0,
                        help="CPU: more timed steps (up to 20) until they add up to this many seconds")
    parser.add_argument("--unfused-max-tokens", type=int, default=4096,
                        help="CPU: largest N run with the unfused (math) attention as well (0: none)")
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "1")),
                        help="CPU: torch threads of each measurement (default: OMP_NUM_THREADS, else 1)")
    parser.add_argument("--cap-gib", type=float, default=8.0, help="CPU: address-space cap of each measurement")
    parser.add_argument("--batch", type=int, default=1, help="GPU: videos per forward")
    parser.add_argument("--gpu-repeats", type=int, default=5, help="GPU: timed forwards per model (median)")
    parser.add_argument("--out", default=str(RESULTS), help="JSON file: the section run is written, the other kept")
    parser.add_argument("--gpu-smoke-cpu", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cpu-child", help=argparse.SUPPRESS)
    parser.add_argument("--gpu-child", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.cpu_child:
        spec = json.loads(args.cpu_child)
        cap = int(args.cap_gib * 2 ** 30)
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
        torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
        print(json.dumps(measure_cpu_step(spec)))
        return
    if args.gpu_child:
        print(json.dumps(measure_pair(json.loads(args.gpu_child))))
        return
    if args.gpu_smoke_cpu:
        gpu_section(args, smoke=True)  # prints only: a smoke test writes no results
        return
    if args.gpu:
        if not torch.cuda.is_available():
            parser.error("--gpu measures the published models on a CUDA GPU, and torch.cuda.is_available() is False "
                         "here; run the CPU section without --gpu")
        write_section(Path(args.out), "gpu", gpu_section(args, smoke=False))
        return
    try:
        args.shapes = parse_shapes(args.shapes)
    except argparse.ArgumentTypeError as error:
        parser.error(str(error))
    if args.blocks < 2 or args.blocks % 2 or args.repeats < 1 or args.threads < 1:
        parser.error("--blocks must be even and >= 2 (factorised pairs), --repeats and --threads >= 1")
    write_section(Path(args.out), "cpu", cpu_section(args))


if __name__ == "__main__":
    main()
