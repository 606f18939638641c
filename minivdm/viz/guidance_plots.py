"""What the classifier-free guidance scale w changes (chapter 2): caption accuracy with its 95% interval
and the diversity of samples, side by side. A pure function of ``minivdm.toy.text_to_image.guidance_sweep``'s
results; the tutorial calls it."""

from __future__ import annotations

from matplotlib.figure import Figure


def plot_guidance_sweep(results: list[dict], *, title: str = "Classifier-free guidance on the toy model") -> Figure:
    """Two panels against w: caption accuracy (error bars: 95% Wilson interval) and diversity."""
    if not results or not all({"guidance_scale", "caption_accuracy", "interval", "diversity"} <= set(r) for r in results):
        raise ValueError("results must be guidance_sweep's list of dicts (guidance_scale, caption_accuracy, interval, "
                         f"diversity), got {results!r}")
    scales = [r["guidance_scale"] for r in results]
    accuracy = [r["caption_accuracy"] for r in results]
    below = [r["caption_accuracy"] - r["interval"][0] for r in results]
    above = [r["interval"][1] - r["caption_accuracy"] for r in results]
    figure = Figure(figsize=(9, 3.2), layout="constrained")
    left, right = figure.subplots(1, 2)
    left.errorbar(scales, accuracy, yerr=[below, above], marker="o", capsize=4)
    left.set(xlabel="guidance scale w", ylabel="caption accuracy (oracle)", ylim=(0, 1.05),
             title=f"faithfulness: {results[0]['prompts']} prompts, 95% intervals")
    right.plot(scales, [r["diversity"] for r in results], marker="o", color="tab:green")
    right.set(xlabel="guidance scale w", ylabel="spread of the object's centre (px)",
              title="diversity: where samples of one prompt put the object"
                    + (" ({} prompts x {} draws)".format(*results[0]["diversity_draws"]) if "diversity_draws" in results[0] else ""))
    right.set_ylim(bottom=0)
    figure.suptitle(title)
    return figure
