"""Broker restart mid-run: ``rabbitmqctl stop_app`` / ``start_app`` while transfers flow; each is handled once.

**This test stops and starts the local RabbitMQ application** (every connection to the broker drops for a few
seconds). It needs ``rabbitmqctl`` for the broker at 127.0.0.1 and always starts the application again
(try/finally), also when the test fails. It is marked ``slow``; run it alone::

    .venv/bin/pytest -q tests/link/test_broker_restart.py

Both engines keep running through the outage: the sender's relay retries with backoff and marks nothing sent
without a confirm; the receiver's consumer reconnects. Transfers started while the broker is down wait in the
sender's outbox. The checks are those of the crash test (tests/link/test_crash.py).
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from tests.link.harness import (
    Link,
    describe,
    rabbitmqctl,
    require_rabbitmqctl,
    require_services,
    wait_for_broker,
)
from tests.link.test_crash import assert_exactly_once

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRANSFERS = int(os.environ.get("CASEFLOW_RESTART_TRANSFERS", "2000"))
OUTAGE_S = 4.0


def test_broker_stop_app_and_start_app_while_transfers_flow(tmp_path: Path) -> None:
    require_services()
    require_rabbitmqctl()
    link = Link(tmp_path)
    with link.running():
        errors: list[BaseException] = []

        def produce() -> None:
            try:
                link.start_transfers(TRANSFERS, threads=2, rate=200)
            except BaseException as exc:  # reported below
                errors.append(exc)

        producer = threading.Thread(target=produce, name="transfers")
        producer.start()
        try:
            time.sleep(3.0)  # transfers are flowing
            before = link.counts()
            during = None
            try:
                rabbitmqctl("stop_app")
                time.sleep(OUTAGE_S)
                during = link.counts()  # transfers started meanwhile wait in the sender's outbox
            finally:
                # Whatever happened (even a failed or interrupted stop_app), leave the broker running.
                rabbitmqctl("start_app")
                wait_for_broker()
        finally:
            producer.join(120)
        assert not errors, errors
        assert before.processed < TRANSFERS, f"the outage came too late to matter: {before.summary()}"
        assert during is not None and during.outbox_unsent > 0, during
        for process in link.processes:
            assert process.exited_unexpectedly() is None, describe(link)
        counts = link.wait_all_handled(TRANSFERS, timeout=120)
        time.sleep(1.0)
        counts = link.counts()
        info = f"{counts.summary()} {describe(link)}"
        assert_exactly_once(link, counts, TRANSFERS, info)
        assert link.sender.starts == 1 and link.receiver.starts == 1, info  # nobody had to be restarted
        print(
            f"\n{TRANSFERS} transfers handled exactly once across a {OUTAGE_S:.0f} s broker outage "
            f"(processed before: {before.processed}; waiting in the outbox during it: {during.outbox_unsent})"
        )
