"""Exceptions of the lxdex Python API."""

from __future__ import annotations

from .enums import Reason


class OrderRejected(ValueError):
    """A command was rejected; nothing changed.

    ``reason`` is the :class:`lxdex.enums.Reason`; the message names the field
    and the rule it broke.
    """

    def __init__(self, message: str, reason: int) -> None:
        super().__init__(message)
        self.reason = _REASONS.get(reason, reason)


_REASONS = {int(r): r for r in Reason}
