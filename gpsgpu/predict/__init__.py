"""Phase 2 of GPS: priors-scan services x rules -> predicted services."""

from __future__ import annotations

from gpsgpu.predict.services import predict_services

__all__ = ["predict_services"]
