"""Background loop: fires due timers, relays the outbox, expires buffered messages.

It sleeps until the next due timer or the poll interval, whichever is sooner, and wakes at once when a command
commits (so a new outbox row or a timer due now is handled without waiting for the next poll).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from engine.commands import Engine

log = logging.getLogger("caseflow.scheduler")


class Scheduler:
    def __init__(
        self,
        engine: Engine,
        publish: Callable[[dict[str, Any]], None] | None,
        interval_s: float = 0.2,
        *,
        dead_letter: Callable[[Mapping[str, Any]], str | None] | None = None,
    ) -> None:
        self.engine = engine
        self.publish = publish
        self.dead_letter = dead_letter  # where an expired transferred message goes (the RabbitMQ link)
        self.interval_s = interval_s
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.last_error: str | None = None
        engine.on_commit(self._wake.set, "timers", "outbox")

    def run_once(self) -> int:
        """One pass; returns how much work was done (tests call this with a manual clock)."""
        done = self.engine.fire_due_timers()
        if self.publish is not None:
            done += self.engine.relay_outbox(self.publish)
        done += self.engine.expire_buffered(self.dead_letter)
        return done

    def _sleep_for(self) -> float:
        due = self.engine.next_timer_due()
        if due is None:
            return self.interval_s
        delta = (due - datetime.now(UTC)).total_seconds()
        return max(0.0, min(self.interval_s, delta))

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                while self.run_once() and not self._stop.is_set():
                    pass
                self.last_error = None
                wait = self._sleep_for()
            except Exception as exc:
                self.last_error = str(exc)
                log.exception("scheduler pass failed; retrying")
                wait = 1.0
            self._wake.wait(wait)
            self._wake.clear()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="caseflow-scheduler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
