"""In-process transport for the single-machine default: publishing delivers to the subscribed handler."""

from __future__ import annotations

from adapters.transport import Envelope, Handler


class LocalTransport:
    def __init__(self) -> None:
        self._handlers: list[Handler] = []

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def publish(self, envelope: Envelope) -> None:
        if not self._handlers:
            raise RuntimeError("no receiver is subscribed to the local transport")
        for handler in self._handlers:
            handler(envelope)
