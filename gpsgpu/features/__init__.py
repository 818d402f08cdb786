"""Service -> canonical feature strings -> 64-bit keys (``XXH64(utf8(string), 0)``), by preset.

Only ``gps2022`` (the GPS reference's features) exists so far; :data:`PRESETS` names the presets
a model may be built with, so a model of an unknown preset is refused when it is read.
"""

from __future__ import annotations

from gpsgpu.features.gps2022 import (
    FeatureArrays,
    FeatureTable,
    extract_features,
    feature_arrays,
    feature_arrays_of_frame,
)

PRESETS: tuple[str, ...] = ("gps2022",)

__all__ = [
    "PRESETS",
    "FeatureArrays",
    "FeatureTable",
    "extract_features",
    "feature_arrays",
    "feature_arrays_of_frame",
]
