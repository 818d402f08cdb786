"""gpsgpu: predict Internet services across all ports (GPS) and learn semantic port distances.

Importing this package imports no GPU library; the backend is chosen when data is read
(:mod:`gpsgpu.backend`).
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
