"""The relay and the consumers reconnect by themselves when their connections to the broker are cut.

The engine reaches RabbitMQ through a small TCP proxy that the test cuts and restores (the broker itself keeps
running, so other tests are not disturbed; restarting the broker is tests/link/test_broker_restart*.py's job).
"""

from __future__ import annotations

import socket
import threading
from pathlib import Path

from tests.link.support import (
    Broker,
    app_for,
    broker_fixture,  # noqa: F401 - the broker fixture
    deploy,
    instances,
    outbox_rows,
    wait_for,
)


class Proxy:
    """Forwards 127.0.0.1:<port> to the broker; ``cut()`` closes every connection and refuses new ones."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.port = self.listener.getsockname()[1]
        self.open = threading.Event()
        self.open.set()
        self.sockets: list[socket.socket] = []
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(self.target)
            except OSError:
                client.close()
                continue
            with self.lock:
                self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                try:
                    s.close()
                except OSError:
                    pass

    def cut(self) -> None:
        self.open.clear()
        with self.lock:
            for s in self.sockets:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self.sockets.clear()

    def restore(self) -> None:
        self.open.set()

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_relay_and_consumers_reconnect_after_the_connection_is_cut(tmp_path: Path, broker: Broker) -> None:
    proxy = Proxy(("127.0.0.1", 5672))
    url = f"amqp://guest:guest@127.0.0.1:{proxy.port}/%2F"
    a = app_for((f"sqlite:///{tmp_path / 'a.db'}", None), broker, ("market_regulation",), amqp_url=url)
    b = app_for((f"sqlite:///{tmp_path / 'b.db'}", None), broker, ("urban_management",), amqp_url=url)
    assert a.link is not None and b.link is not None
    deploy(a.engine, "clue_sender.bpmn")
    deploy(b.engine, "clue_receiver.bpmn")
    for app in (a, b):
        app.scheduler.start()
        app.link.start()

    def transfer(case_no: str) -> None:
        a.engine.start(
            key="link_clue_sender",
            variables={"case_no": case_no, "summary": "占道经营", "sender_agency": "market_regulation"},
        )

    def completed() -> int:
        return sum(1 for i in instances(a.engine, "link_clue_sender") if i.state == "completed")

    try:
        transfer("HB-1")
        wait_for(lambda: completed() == 1, 30, "the first round trip")
        proxy.cut()
        for n in range(2, 6):
            transfer(f"HB-{n}")  # committed while the broker cannot be reached
        wait_for(lambda: a.link is not None and a.link.relay_error, 15, "the relay to notice")
        assert all(r.sent_at is None for r in outbox_rows(a.engine)[1:])
        proxy.restore()
        wait_for(lambda: completed() == 5, 60, "every round trip after the connection is back")
    finally:
        for app in (a, b):
            assert app.link is not None
            app.link.stop()
            app.scheduler.stop()
        proxy.close()
    assert len(instances(b.engine, "link_clue_receiver")) == 5
