"""A simulated external agency system (``caseflow agency-sim AGENCY``), built only on the SDK (adapters/client.py).

It answers the messages of ``bpmn/criminal_transfer.bpmn`` the way the real systems would, correlated on
``case_no``:

- ``public_security`` gets ``criminal_case_transfer`` (or ``criminal_case_supplement``): it returns a
  ``police_receipt`` {case_no, receipt_no} (回执) at once and a ``police_filing_decision`` {case_no, filed: true,
  filing_notice_no} after ``--filing-delay`` seconds; a ``reconsideration_request`` gets a
  ``police_reconsideration_decision`` {reconsideration_filed: true, reconsideration_decision_no} at once.
- ``procuratorate`` answers a ``filing_supervision_request`` with a ``procuratorate_supervision_result``
  {ordered_to_file: true, supervision_opinion}; copies and notices are only acknowledged.
- any other agency acknowledges and logs what it receives.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from adapters.client import AgencyClient

log = logging.getLogger("caseflow.agency_sim")


class Simulator:
    def __init__(self, client: AgencyClient, filing_delay: float = 5.0) -> None:
        self.client = client
        self.filing_delay = filing_delay
        self.received: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self._timers: list[threading.Timer] = []

    def on_message(self, envelope: dict[str, Any]) -> None:
        self.received.append(envelope)
        name = envelope["name"]
        case_no = (envelope.get("correlation_keys") or {}).get("case_no") or envelope["payload"].get(
            "case_no"
        )
        number = str(case_no or envelope["message_id"][:8])
        log.info("%s received %s for case %s from %s", self.client.agency, name, case_no, envelope["from"])
        agency = self.client.agency
        if agency == "public_security" and name in ("criminal_case_transfer", "criminal_case_supplement"):
            self._reply(envelope, "police_receipt", {"case_no": case_no, "receipt_no": f"回执-{number}"})
            self._later(
                self.filing_delay,
                envelope,
                "police_filing_decision",
                {"case_no": case_no, "filed": True, "filing_notice_no": f"立案-{number}"},
            )
        elif agency == "public_security" and name == "reconsideration_request":
            self._reply(
                envelope,
                "police_reconsideration_decision",
                {
                    "case_no": case_no,
                    "reconsideration_filed": True,
                    "reconsideration_decision_no": f"复议-{number}",
                },
            )
        elif agency == "procuratorate" and name == "filing_supervision_request":
            self._reply(
                envelope,
                "procuratorate_supervision_result",
                {"case_no": case_no, "ordered_to_file": True, "supervision_opinion": "通知公安机关立案"},
            )

    def _reply(self, received: dict[str, Any], name: str, payload: dict[str, Any]) -> None:
        # A reply's id derives from what it answers: answering a redelivered message again is deduplicated.
        message_id = f"{received['message_id']}.{name}"[:64]
        self.sent.append(self.client.reply(received, name, payload, message_id=message_id))
        log.info("%s sent %s to %s", self.client.agency, name, received["from"])

    def _later(self, delay: float, received: dict[str, Any], name: str, payload: dict[str, Any]) -> None:
        timer = threading.Timer(delay, self._safely(lambda: self._reply(received, name, payload)))
        timer.daemon = True
        timer.start()
        self._timers.append(timer)

    @staticmethod
    def _safely(action: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                action()
            except Exception:
                log.exception("a delayed reply could not be sent")

        return run

    def cancel(self) -> None:
        for timer in self._timers:
            timer.cancel()


def simulate(
    agency: str,
    amqp_url: str,
    *,
    prefix: str = "caseflow",
    agencies_file: str | Path | None = None,
    filing_delay: float = 5.0,
    production: bool = False,
    stop: threading.Event | None = None,
) -> Simulator:
    client = AgencyClient(agency, amqp_url, prefix=prefix, agencies_file=agencies_file, production=production)
    simulator = Simulator(client, filing_delay)
    print(
        f"caseflow agency-sim: {agency} listening on {client.names.inbox(agency)} (Ctrl+C to stop)",
        flush=True,
    )
    try:
        client.run(simulator.on_message, stop)
    finally:
        simulator.cancel()
    return simulator
