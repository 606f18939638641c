"""Spearman's rank correlation: how well one quantity orders the samples as another does, whatever the scale
(the toy image-to-video model's measured speed against the requested one; chapter 5's motion scores)."""

from __future__ import annotations

import math

import numpy as np


def ranks(values) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their ranks (as Spearman's rho needs)."""
    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(values, kind="stable")
    sorted_values = values[order]
    rank = np.empty(len(values))
    start = 0
    while start < len(values):
        end = start
        while end + 1 < len(values) and sorted_values[end + 1] == sorted_values[start]:
            end += 1
        rank[order[start: end + 1]] = (start + end) / 2 + 1
        start = end + 1
    return rank


def spearman(a, b) -> float:
    """Pearson correlation of the ranks; nan when either side is constant (no order to follow)."""
    if len(a) != len(b) or len(a) < 2:
        raise ValueError(f"spearman needs two sequences of the same length >= 2, got {len(a)} and {len(b)}")
    rank_a, rank_b = ranks(a), ranks(b)
    rank_a, rank_b = rank_a - rank_a.mean(), rank_b - rank_b.mean()
    denominator = math.sqrt((rank_a**2).sum() * (rank_b**2).sum())
    return float("nan") if denominator == 0 else float((rank_a * rank_b).sum() / denominator)
