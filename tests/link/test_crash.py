"""Crash test: transfers keep flowing while both engines are SIGKILLed at random moments, and each is handled once.

market_regulation's engine (sender) and urban_management's engine (receiver) run as ``caseflow worker``
processes, each on its own database, linked by the real RabbitMQ. The test starts 2,000 transfers on the
sender's database while a churn thread kills each process with SIGKILL at random moments (no cleanup, no acks,
transactions cut off) and starts it again. At the end, counted in both databases and on the broker:

- the sender wrote one outbox row per transfer and every row is marked sent;
- the receiver processed exactly the sender's message ids, each once, and started exactly one instance per
  transfer (no case number twice);
- no incident on either side, the receiver's inbox is drained and the dead-letter queues are empty.

A failure prints the counts, the broker's queue depths, the seed and the tail of each process's log.
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from tests.link.harness import (
    RECEIVER_AGENCY,
    SENDER_AGENCY,
    Churn,
    Counts,
    EngineProcess,
    Link,
    describe,
    require_services,
)

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TRANSFERS = int(os.environ.get("CASEFLOW_CRASH_TRANSFERS", "2000"))
MIN_KILLS = 3


def assert_exactly_once(link: Link, counts: Counts, expected: int, context: str) -> None:
    assert counts.transfers_started == expected, context
    assert counts.outbox_rows == expected, context  # one throw per sender instance
    assert counts.outbox_unsent == 0, context
    assert counts.missing == [], context
    assert counts.unexpected == [], context
    assert counts.processed == expected, context
    assert counts.duplicate_cases == [], context
    assert counts.receiver_instances == expected and counts.distinct_cases == expected, context
    assert counts.sender_incidents == 0 and counts.receiver_incidents == 0, context
    depths = link.broker_depths()
    assert depths[link.inbox_queue(RECEIVER_AGENCY)] == 0, f"{depths}\n{context}"
    for agency in (SENDER_AGENCY, RECEIVER_AGENCY):
        assert depths[link.dead_letter_queue(agency)] == 0, f"dead letters: {depths}\n{context}"


def test_sigkill_sender_and_receiver_at_random_while_2000_transfers_flow(tmp_path: Path) -> None:
    require_services()
    seed = int(os.environ.get("CASEFLOW_CRASH_SEED", str(random.randrange(1 << 30))))
    link = Link(tmp_path)
    with link.running():
        mid_flow: dict[str, int] = {"sender": 0, "receiver": 0}  # kills while transfers were in flight

        def on_kill(process: EngineProcess) -> None:
            if link.processed_count() < len(link.started_instances):
                mid_flow[process.name] += 1

        with Churn([link.sender, link.receiver], seed=seed, on_kill=on_kill) as churn:
            # Paced so that the flow lasts long enough for several kills of each process mid-stream.
            link.start_transfers(TRANSFERS, threads=2, rate=250)
            deadline = time.monotonic() + 90
            while time.monotonic() < deadline:
                handled = link.processed_count() >= len(link.started_instances)
                if handled and min(mid_flow.values()) >= MIN_KILLS:
                    break
                if handled:  # all through before enough kills landed mid-flow: keep the flow going
                    link.start_transfers(100, threads=1, first=len(link.started_instances))
                time.sleep(0.5)
        expected = len(link.started_instances)
        info = f"seed={seed} {describe(link)}"
        assert churn.errors == [], info
        assert min(mid_flow.values()) >= MIN_KILLS, f"kills while transfers were in flight: {mid_flow} {info}"
        # The churn is over and both engines run: whatever was cut off is redelivered or republished.
        counts = link.wait_all_handled(expected, timeout=120)
        time.sleep(1.0)  # a duplicate still in flight would show up now
        counts = link.counts()
        info = f"seed={seed} {counts.summary()} {describe(link)}"
        assert_exactly_once(link, counts, expected, info)
        print(
            f"\n{expected} transfers handled exactly once; SIGKILLs: sender {link.sender.kills}, receiver "
            f"{link.receiver.kills}, of which while transfers were in flight {mid_flow} (seed {seed})"
        )
