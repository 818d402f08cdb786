"""Phase 2 of GPS: priors-scan services x rules -> predicted services."""

from __future__ import annotations

from gpsgpu.predict.services import PredictTables, predict_services, prepare_predict

__all__ = ["PredictTables", "predict_services", "prepare_predict"]
