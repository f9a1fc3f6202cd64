"""The port between the engine and whatever carries messages between instances and agencies."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

Envelope = Mapping[str, Any]
Handler = Callable[[Envelope], Any]


class Transport(Protocol):
    def publish(self, envelope: Envelope) -> None:
        """Hand one envelope over; return only once it is safely accepted (or raise)."""

    def subscribe(self, handler: Handler) -> None:
        """Deliver every envelope addressed to this engine to ``handler``."""
