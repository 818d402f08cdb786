"""Read-only HTTP API over port2dist stores (``gpsgpu serve``); needs the ``web`` extra."""

from __future__ import annotations
