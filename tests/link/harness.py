"""Two agencies, each with its own engine process and its own database, linked by the real RabbitMQ.

Used by the crash tests (tests/link/test_crash.py, tests/link/test_broker_restart.py) and by the benchmark
(bench/transfers.py):

- ``Database``: one agency's own database, a fresh PostgreSQL schema (migrated, the link_bench models deployed)
  with an in-process ``Engine`` on it, through which the test starts transfers and counts what happened;
- ``EngineProcess``: ``.venv/bin/caseflow <command>`` as a subprocess with its ``CASEFLOW_*`` environment,
  killed with SIGKILL and started again at will;
- ``Churn``: a thread that SIGKILLs each process at random moments and restarts it;
- ``Link``: the sender (market_regulation) and the receiver (urban_management) with a broker prefix unique to
  the run, the counts that show "exactly once" in both databases and on the broker, and the cleanup.
"""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pika
import pika.exceptions
import pytest
from sqlalchemy import create_engine, func, select, text
from sqlalchemy.engine import make_url

from engine.commands import Engine, EngineConfig, system_clock
from engine.store.db import create_db_engine, read_only
from engine.store.migrate import migrate
from engine.store.tables import incident, outbox, process_instance, processed_message
from tests.link.support import CASEFLOW, ROOT, caseflow_environ

MODELS = ROOT / "tests" / "fixtures" / "link_bench"
AMQP_URL = os.environ.get("CASEFLOW_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
PG_URL = os.environ.get("CASEFLOW_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")

SENDER_AGENCY = "market_regulation"
RECEIVER_AGENCY = "urban_management"
SENDER_KEY = "link_bench_sender"
RECEIVER_KEY = "link_bench_receiver"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_http(url: str, timeout: float = 60) -> None:
    """Until ``url`` answers (any status below 500)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")
        time.sleep(0.2)


def amqp_reachable(url: str = AMQP_URL) -> str | None:
    """None when the broker answers, else why not."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
        connection.close()
    except Exception as exc:
        return f"{exc.__class__.__name__}: {exc}"
    return None


# -- one agency's database ------------------------------------------------------------------------------------


class Database:
    """A PostgreSQL schema of its own, migrated, with the link_bench models deployed."""

    def __init__(self, label: str, base_url: str = PG_URL) -> None:
        self.base_url = base_url
        self.schema = f"link_{label}_{uuid.uuid4().hex[:10]}"
        admin = create_engine(base_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{self.schema}"'))
        admin.dispose()
        self.db = create_db_engine(base_url, schema=self.schema, pool_size=8)
        migrate(self.db)
        self.engine = Engine(self.db, system_clock, EngineConfig(timezone=UTC))
        for path in sorted(MODELS.glob("*.bpmn")):
            self.engine.deploy([(path.name, path.read_bytes())], name=path.stem, source="tests", actor="test")

    @property
    def url(self) -> str:
        """The URL a subprocess gets in CASEFLOW_DATABASE_URL: the schema travels as libpq's search_path."""
        url = make_url(self.base_url)
        return url.update_query_dict({"options": f"-csearch_path={self.schema}"}).render_as_string(
            hide_password=False
        )

    def drop(self) -> None:
        self.db.dispose()
        admin = create_engine(self.base_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("SET lock_timeout = '30s'"))  # a stray session must not hang the test run
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE'))
        admin.dispose()


# -- engine processes -----------------------------------------------------------------------------------------


class EngineProcess:
    """``caseflow <argv>`` in its own process group; output appended to a log file across restarts."""

    def __init__(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str],
        log_path: Path,
        program: list[str] | None = None,
    ) -> None:
        self.name = name
        self.argv = argv
        self.program = program or [str(CASEFLOW)]
        self.env = env
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.kills = 0
        self._lock = threading.Lock()

    def start(self) -> None:
        with self._lock:
            if self.alive:
                return
            with self.log_path.open("ab") as log:
                log.write(f"\n--- start #{self.starts + 1} at {datetime.now(UTC).isoformat()}\n".encode())
                log.flush()
                self.proc = subprocess.Popen(
                    [*self.program, *self.argv],
                    env=self.env,
                    cwd=ROOT,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,
                )
            self.starts += 1

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no cleanup, no acks, no commits; whatever was in flight is cut off."""
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                return
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
            self.kills += 1
            with self.log_path.open("ab") as log:
                log.write(f"\n--- SIGKILL at {datetime.now(UTC).isoformat()}\n".encode())

    def stop(self, timeout: float = 15) -> None:
        with self._lock:
            if self.proc is None or self.proc.poll() is not None:
                return
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.send_signal(signal.SIGKILL)
                self.proc.wait(10)

    def exited_unexpectedly(self) -> int | None:
        """The exit code when the process ended by itself (not by our kill), else None."""
        if self.proc is None:
            return None
        code = self.proc.poll()
        if code is None or code == -signal.SIGKILL:
            return None
        return code

    def log_tail(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Churn:
    """Kill each process with SIGKILL at random moments and start it again after a short random pause."""

    def __init__(
        self,
        processes: list[EngineProcess],
        *,
        seed: int,
        up: tuple[float, float] = (1.5, 4.0),
        down: tuple[float, float] = (0.0, 0.6),
        on_kill: Callable[[EngineProcess], None] | None = None,
    ) -> None:
        self.processes = processes
        self.on_kill = on_kill
        self.random = random.Random(seed)
        self.up = up
        self.down = down
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.errors: list[str] = []

    def _run(self, process: EngineProcess, rnd: random.Random) -> None:
        while not self._stop.wait(rnd.uniform(*self.up)):
            try:
                if self.on_kill is not None:
                    self.on_kill(process)
                process.kill()
                if self._stop.wait(rnd.uniform(*self.down)):
                    break
                process.start()
            except Exception as exc:  # reported by the test, the churn goes on
                self.errors.append(f"{process.name}: {exc!r}")
        process.start()  # whatever happens, the process is running when the churn ends

    def __enter__(self) -> Churn:
        for process in self.processes:
            rnd = random.Random(self.random.random())
            thread = threading.Thread(target=self._run, args=(process, rnd), name=f"churn-{process.name}")
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(30)


# -- the broker -----------------------------------------------------------------------------------------------


def rabbitmqctl(*args: str, timeout: float = 120) -> str:
    done = subprocess.run(
        ["rabbitmqctl", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(
            f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip() or done.stdout.strip()}"
        )
    return done.stdout


def wait_for_broker(url: str = AMQP_URL, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        reason = amqp_reachable(url)
        if reason is None:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the broker did not come back within {timeout:.0f} s: {reason}")
        time.sleep(0.5)


def queue_depth(queue: str, url: str = AMQP_URL) -> int | None:
    """Messages ready in ``queue`` (passive declare), or None when the queue does not exist."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.message_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return None
            raise
    finally:
        with suppress(Exception):
            connection.close()


def consumer_count(queue: str, url: str = AMQP_URL) -> int:
    """Consumers attached to ``queue`` (0 when it does not exist)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        try:
            return int(channel.queue_declare(queue, passive=True).method.consumer_count)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code == 404:
                return 0
            raise
    finally:
        with suppress(Exception):
            connection.close()


def delete_broker_objects(prefix: str, url: str = AMQP_URL) -> None:
    """Remove every queue and exchange whose name starts with ``prefix.`` (the run's own topology)."""
    queues = [q for q in rabbitmqctl("list_queues", "-q", "--no-table-headers", "name").split() if q]
    exchanges = [e for e in rabbitmqctl("list_exchanges", "-q", "--no-table-headers", "name").split() if e]
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        for q in queues:
            if q.startswith(prefix + "."):
                channel.queue_delete(q)
        for e in exchanges:
            if e.startswith(prefix + "."):
                channel.exchange_delete(e)
    finally:
        with suppress(Exception):
            connection.close()


# -- the two agencies -----------------------------------------------------------------------------------------


@dataclass
class Counts:
    transfers_started: int = 0
    outbox_rows: int = 0
    outbox_unsent: int = 0
    sender_incidents: int = 0
    processed: int = 0
    receiver_instances: int = 0
    distinct_cases: int = 0
    receiver_incidents: int = 0
    missing: list[str] = field(default_factory=list)  # message ids sent but not processed
    unexpected: list[str] = field(default_factory=list)  # processed ids the sender never wrote
    duplicate_cases: list[str] = field(default_factory=list)

    def summary(self) -> str:
        return (
            f"started={self.transfers_started} outbox={self.outbox_rows} unsent={self.outbox_unsent} "
            f"processed={self.processed} receiver_instances={self.receiver_instances} "
            f"distinct_cases={self.distinct_cases} duplicates={len(self.duplicate_cases)} "
            f"missing={len(self.missing)} unexpected={len(self.unexpected)} "
            f"incidents(sender/receiver)={self.sender_incidents}/{self.receiver_incidents}"
        )


class Link:
    """market_regulation's engine sends, urban_management's engine receives; one broker prefix per run."""

    def __init__(
        self,
        workdir: Path,
        *,
        sender_command: tuple[str, ...] = ("worker",),
        receiver_command: tuple[str, ...] = ("worker",),
        senders: int = 1,
        receivers: int = 1,
        extra_env: dict[str, str] | None = None,
        amqp_url: str = AMQP_URL,
    ) -> None:
        self.workdir = workdir
        self.amqp_url = amqp_url
        self.prefix = f"lt{uuid.uuid4().hex[:10]}"
        self.extra_env = dict(extra_env or {})
        self.sender_db: Database | None = None
        self.receiver_db: Database | None = None
        self.sender_command = sender_command
        self.receiver_command = receiver_command
        self.sender_count = senders
        self.receiver_count = receivers
        self.processes: list[EngineProcess] = []
        self.started_cases: list[str] = []
        self.started_instances: dict[str, int] = {}  # sender instance id -> seq
        self._started_lock = threading.Lock()

    # setup / teardown

    def setup(self) -> None:
        self.sender_db = Database("sender")
        self.receiver_db = Database("receiver")
        self.topology_apply()
        # Extra processes of one agency share its database (relays: SKIP LOCKED) and compete for its inbox.
        self.senders = [
            self._process(f"sender{i or ''}", self.sender_command, self.sender_db, SENDER_AGENCY)
            for i in range(self.sender_count)
        ]
        self.receivers = [
            self._process(f"receiver{i or ''}", self.receiver_command, self.receiver_db, RECEIVER_AGENCY)
            for i in range(self.receiver_count)
        ]
        self.sender, self.receiver = self.senders[0], self.receivers[0]

    def env(self, db: Database, agencies: str) -> dict[str, str]:
        env = caseflow_environ(
            CASEFLOW_ENV="test",
            CASEFLOW_DATABASE_URL=db.url,
            CASEFLOW_AMQP_URL=self.amqp_url,
            CASEFLOW_AGENCIES=agencies,
            CASEFLOW_AMQP_PREFIX=self.prefix,
            CASEFLOW_BPMN_DIR=str(MODELS),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    def _process(self, name: str, command: tuple[str, ...], db: Database, agencies: str) -> EngineProcess:
        process = EngineProcess(name, list(command), self.env(db, agencies), self.workdir / f"{name}.log")
        self.processes.append(process)
        return process

    def topology_apply(self) -> None:
        assert self.sender_db is not None
        done = subprocess.run(
            [str(CASEFLOW), "topology", "apply"],
            env=self.env(self.sender_db, f"{SENDER_AGENCY},{RECEIVER_AGENCY}"),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"caseflow topology apply failed:\n{done.stdout}\n{done.stderr}")

    def start_processes(self) -> None:
        for process in self.processes:
            process.start()

    def close(self) -> None:
        for process in self.processes:
            with suppress(Exception):
                process.stop()
        with suppress(Exception):
            delete_broker_objects(self.prefix, self.amqp_url)
        for db in (self.sender_db, self.receiver_db):
            if db is not None:
                with suppress(Exception):
                    db.drop()

    @contextmanager
    def running(self) -> Iterator[Link]:
        try:
            self.setup()
            self.start_processes()
            yield self
        finally:
            self.close()

    # queues named by the link's convention

    def inbox_queue(self, agency: str = RECEIVER_AGENCY) -> str:
        return f"{self.prefix}.inbox.{agency}"

    def dead_letter_queue(self, agency: str) -> str:
        return f"{self.prefix}.dead-letter.{agency}"

    def wait_consumers(self, count: int, agency: str = RECEIVER_AGENCY, timeout: float = 60) -> None:
        """Until ``count`` consumers are attached to the agency's inbox."""
        deadline = time.monotonic() + timeout
        while consumer_count(self.inbox_queue(agency), self.amqp_url) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"fewer than {count} consumers on {self.inbox_queue(agency)} after {timeout:.0f} s"
                )
            self.check_processes()
            time.sleep(0.2)

    # transfers

    def start_transfer(self, seq: int, api: httpx.Client | None = None) -> str:
        """Start one sender instance: through the sender's API when given a client, else on its database."""
        assert self.sender_db is not None
        case_no = f"LB-{seq:06d}"
        variables = {
            "case_no": case_no,
            "seq": seq,
            "clue_summary": "某商户占道经营，移交城市管理部门处理",
            "sender_agency": SENDER_AGENCY,
            "receiver_agency": RECEIVER_AGENCY,
        }
        for attempt in range(20):
            try:
                if api is not None:
                    response = api.post(
                        f"/api/process-definitions/key/{SENDER_KEY}/start",
                        json={"business_key": case_no, "variables": variables},
                    )
                    response.raise_for_status()
                    started = response.json()
                else:
                    started = self.sender_db.engine.start(
                        key=SENDER_KEY, business_key=case_no, variables=variables, actor="test"
                    )
                break
            except Exception:
                # The sender's database is shared with processes being killed; a transient failure is retried.
                if attempt == 19:
                    raise
                time.sleep(0.05)
        with self._started_lock:
            self.started_cases.append(case_no)
            self.started_instances[str(started["id"])] = seq
        return str(started["id"])

    def start_transfers(
        self,
        count: int,
        *,
        threads: int = 2,
        rate: float | None = None,
        first: int = 0,
        on_progress: Callable[[int], None] | None = None,
        api_url: str | None = None,
    ) -> float:
        """Start ``count`` sender instances (each throws one transfer); returns the seconds it took.

        ``rate`` paces the starts (transfers per second over all threads); None starts them back to back.
        """
        t0 = time.monotonic()
        counter = iter(range(first, first + count))
        lock = threading.Lock()

        def worker() -> None:
            api = httpx.Client(base_url=api_url, timeout=30) if api_url else None
            try:
                while True:
                    with lock:
                        seq = next(counter, None)
                    if seq is None:
                        return
                    if rate:
                        delay = t0 + (seq - first) / rate - time.monotonic()
                        if delay > 0:
                            time.sleep(delay)
                    self.start_transfer(seq, api)
                    if on_progress is not None:
                        on_progress(seq)
            finally:
                if api is not None:
                    api.close()

        with ThreadPoolExecutor(threads) as pool:
            for future in [pool.submit(worker) for _ in range(threads)]:
                future.result()
        return time.monotonic() - t0

    # counting

    def counts(self) -> Counts:
        assert self.sender_db is not None and self.receiver_db is not None
        c = Counts(transfers_started=len(self.started_cases))
        with read_only(self.sender_db.db) as conn:
            sent_ids = {r.message_id for r in conn.execute(select(outbox.c.message_id)).all()}
            c.outbox_rows = len(sent_ids)
            c.outbox_unsent = conn.execute(
                select(func.count()).select_from(outbox).where(outbox.c.sent_at.is_(None))
            ).scalar_one()
            c.sender_incidents = conn.execute(select(func.count()).select_from(incident)).scalar_one()
        with read_only(self.receiver_db.db) as conn:
            done_ids = {r.message_id for r in conn.execute(select(processed_message.c.message_id)).all()}
            rows = conn.execute(
                select(process_instance.c.variables).where(process_instance.c.definition_key == RECEIVER_KEY)
            ).all()
            c.receiver_incidents = conn.execute(select(func.count()).select_from(incident)).scalar_one()
        c.processed = len(done_ids)
        c.receiver_instances = len(rows)
        seen: dict[str, int] = {}
        for r in rows:
            case_no = str((r.variables or {}).get("case_no"))
            seen[case_no] = seen.get(case_no, 0) + 1
        c.distinct_cases = len(seen)
        c.duplicate_cases = sorted(k for k, n in seen.items() if n > 1)
        c.missing = sorted(sent_ids - done_ids)
        c.unexpected = sorted(done_ids - sent_ids)
        return c

    def wait_all_handled(self, expected: int, timeout: float) -> Counts:
        """Until every transfer is sent and processed, or ``timeout``; fails fast when an engine process died
        by itself (not by our SIGKILL)."""
        deadline = time.monotonic() + timeout
        while True:
            counts = self.counts()
            if counts.processed >= expected and counts.outbox_unsent == 0 and counts.outbox_rows >= expected:
                return counts
            if time.monotonic() > deadline:
                return counts
            self.check_processes()
            time.sleep(0.5)

    def check_processes(self) -> None:
        for process in self.processes:
            code = process.exited_unexpectedly()
            if code is not None:
                raise RuntimeError(f"engine process {process.name} exited with {code}:\n{process.log_tail()}")

    def broker_depths(
        self, agencies: tuple[str, ...] = (SENDER_AGENCY, RECEIVER_AGENCY)
    ) -> dict[str, int | None]:
        queues = [self.inbox_queue(a) for a in agencies] + [self.dead_letter_queue(a) for a in agencies]
        return {q: queue_depth(q, self.amqp_url) for q in queues}

    def _timings(self, instances: set[str] | None) -> tuple[dict[str, datetime], dict[str, datetime]]:
        assert self.sender_db is not None and self.receiver_db is not None
        with read_only(self.sender_db.db) as conn:
            rows = conn.execute(select(outbox.c.message_id, outbox.c.instance_id, outbox.c.created_at)).all()
        created = {
            r.message_id: r.created_at for r in rows if instances is None or r.instance_id in instances
        }
        with read_only(self.receiver_db.db) as conn:
            done = {
                r.message_id: r.processed_at
                for r in conn.execute(
                    select(processed_message.c.message_id, processed_message.c.processed_at)
                )
            }
        return created, done

    def latencies_ms(self, instances: set[str] | None = None) -> list[float]:
        """Sender's commit (outbox row created) -> receiver's commit (message processed), per transfer."""
        created, done = self._timings(instances)
        return [(done[m] - created[m]).total_seconds() * 1000 for m in created if m in done]

    def handled_span(self, instances: set[str] | None = None) -> tuple[datetime, datetime] | None:
        """First outbox row created, last of their messages processed."""
        created, done = self._timings(instances)
        handled = [done[m] for m in created if m in done]
        if not created or not handled:
            return None
        return min(created.values()), max(handled)

    def processed_count(self) -> int:
        assert self.receiver_db is not None
        with read_only(self.receiver_db.db) as conn:
            count: int = conn.execute(select(func.count()).select_from(processed_message)).scalar_one()
        return count

    def first_sent_at(self) -> datetime | None:
        assert self.sender_db is not None
        with read_only(self.sender_db.db) as conn:
            value: datetime | None = conn.execute(select(func.min(outbox.c.sent_at))).scalar_one()
        return value


def describe(link: Link) -> dict[str, Any]:
    """What a failing test prints: counts, broker depths, process restarts and log tails."""
    info: dict[str, Any] = {"prefix": link.prefix}
    with suppress(Exception):
        info["counts"] = link.counts().summary()
    with suppress(Exception):
        info["broker"] = link.broker_depths()
    for p in link.processes:
        info[p.name] = {"starts": p.starts, "kills": p.kills, "log": p.log_tail()}
    return info


# -- guards ---------------------------------------------------------------------------------------------------


def require_services() -> None:
    """PostgreSQL, RabbitMQ and the ``caseflow`` command; skip without them, fail when CI=true."""
    from tests import conftest

    conftest.require_postgres()
    conftest.require_rabbitmq()
    if not CASEFLOW.exists():
        pytest.fail(f"{CASEFLOW} is missing: install the project into .venv (make)")


def require_rabbitmqctl() -> None:
    """The broker must be local and controllable (``rabbitmqctl``) to stop and start it."""
    from tests import conftest

    try:
        rabbitmqctl("status", timeout=60)
    except Exception as exc:
        message = f"rabbitmqctl cannot control the local broker: {exc}"
        if conftest.IN_CI:
            pytest.fail(message + " (CI=true: the broker-restart test must run)")
        pytest.skip(message)
