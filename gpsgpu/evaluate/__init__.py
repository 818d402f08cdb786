"""Evaluation against a simulated ground truth: metrics, baselines (optimal port order, the XGBoost
scanner of Sarabi et al. 2021), tables and plots."""

from __future__ import annotations

from gpsgpu.evaluate.metrics import Curve, Summary, Truth, dominates, make_truth, summarize

__all__ = ["Curve", "Summary", "Truth", "dominates", "make_truth", "summarize"]
