"""Text2Video-Zero: time and peak memory of minivdm's pipeline vs diffusers' TextToVideoZeroPipeline.

    .venv/bin/python bench/text2video_zero.py [--frames 8 16 32] [--steps 10] [--repeats 3]

Both run the same tiny random Stable Diffusion (written once in the published layout; ours loads it through
minivdm's loader) with the same seed, motion field and t0/t1, and return latents. Each (implementation,
frame count) runs in its own subprocess, so its peak RSS is its own; time is the median of ``--repeats``
calls after a warm-up. Prints both and the ratio ours / diffusers (the goal: <= 1.0), and the largest
difference of their latents (they agree to ~1e-5: tests/test_text2video_zero.py).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STEPS_T0_T1 = (3, 7)


def worker(implementation: str, folder: str, frames: int, steps: int, repeats: int, out: str) -> None:
    import torch

    torch.manual_seed(0)
    t0, t1 = STEPS_T0_T1
    if implementation == "diffusers":
        from diffusers import StableDiffusionPipeline, TextToVideoZeroPipeline

        parts = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False)
        pipe = TextToVideoZeroPipeline(vae=parts.vae, text_encoder=parts.text_encoder, tokenizer=parts.tokenizer,
                                       unet=parts.unet, scheduler=parts.scheduler, safety_checker=None,
                                       feature_extractor=None, requires_safety_checker=False)
        pipe.set_progress_bar_config(disable=True)

        def run():
            return pipe("a red circle", video_length=frames, num_inference_steps=steps, t0=t0, t1=t1,
                        motion_field_strength_x=40, motion_field_strength_y=-20, output_type="latent",
                        generator=torch.Generator().manual_seed(0)).images
    else:
        from minivdm.methods.text2video_zero import diffusers_frame_shifts, text2video_zero_latents
        from minivdm.methods.text_to_image import load_components

        unet, _, text_encoder, tokenizer, settings = load_components(folder)
        size = unet.config.sample_size

        def run():
            latents = text2video_zero_latents(
                unet, text_encoder, tokenizer, settings, "a red circle", num_frames=frames,
                shifts=diffusers_frame_shifts(frames, 40, -20, size, size), delta_t=t1 - t0, start_index=steps - t1 - 1,
                num_steps=steps, generator=torch.Generator().manual_seed(0), renoise_with="diffusers")
            return latents[0].transpose(0, 1)

    with torch.no_grad():
        latents = run()  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            run()
            times.append(time.perf_counter() - start)
    torch.save(latents, out)
    print(json.dumps({"seconds": statistics.median(times),
                      "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", nargs=5, metavar=("IMPL", "FOLDER", "FRAMES", "OUT", "REPEATS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        implementation, folder, frames, out, repeats = args.worker
        worker(implementation, folder, int(frames), args.steps, int(repeats), out)
        return

    import torch

    sys.path.insert(0, str(ROOT / "tests"))
    from sd_fixtures import make_tiny_sd_pipeline

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch) / "tiny_sd"
        make_tiny_sd_pipeline(folder)
        print(f"tiny random SD (latents 8x8), {args.steps} DDIM steps, t0/t1 = {STEPS_T0_T1}, CFG 7.5, CPU, "
              f"{torch.get_num_threads()} threads; median of {args.repeats}")
        print("| frames | ours s | diffusers s | ratio | ours peak MiB | diffusers peak MiB | max latent diff |")
        print("|---|---|---|---|---|---|---|")
        for frames in args.frames:
            figures, latents = {}, {}
            for implementation in ("minivdm", "diffusers"):
                out = str(Path(scratch) / f"{implementation}_{frames}.pt")
                result = subprocess.run([sys.executable, __file__, "--steps", str(args.steps), "--worker", implementation,
                                         str(folder), str(frames), out, str(args.repeats)],
                                        capture_output=True, text=True, check=True)
                figures[implementation] = json.loads(result.stdout.strip().splitlines()[-1])
                latents[implementation] = torch.load(out)
            ours, theirs = figures["minivdm"], figures["diffusers"]
            difference = (latents["minivdm"] - latents["diffusers"]).abs().max().item()
            print(f"| {frames} | {ours['seconds']:.3f} | {theirs['seconds']:.3f} | {ours['seconds'] / theirs['seconds']:.2f} | "
                  f"{ours['peak_rss_mib']:.0f} | {theirs['peak_rss_mib']:.0f} | {difference:.1e} |")


if __name__ == "__main__":
    main()
