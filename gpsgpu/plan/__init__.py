"""Phase 1b of GPS: the (port, prefix) priors plan, its probe cost and its blocklist cut."""

from __future__ import annotations

from gpsgpu.plan.priors import cut_blocklisted, plan_priors, probes_per_row

__all__ = ["cut_blocklisted", "plan_priors", "probes_per_row"]
