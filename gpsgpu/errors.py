"""Errors the user sees as one line (the CLI prints them and exits non-zero, never a traceback)."""

from __future__ import annotations


class GpsgpuError(Exception):
    """Base class: the message is a complete, one-line explanation for the user."""

    exit_code = 1


class UsageError(GpsgpuError):
    """A bad flag, parameter or combination of them."""

    exit_code = 2


class InputError(GpsgpuError):
    """Input that cannot be used: empty, unreadable, of the wrong kind, or too many rejects."""

    exit_code = 3
