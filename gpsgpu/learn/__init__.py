"""Phase 1a of GPS (compatible mode): pair counts, hitrates, best predictors, patterns, rules."""

from __future__ import annotations

from gpsgpu.learn.patterns import DEFAULT_HITRATE, DEFAULT_STEP, LearnResult, learn_patterns

__all__ = ["DEFAULT_HITRATE", "DEFAULT_STEP", "LearnResult", "learn_patterns"]
