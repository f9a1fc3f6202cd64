"""start -> claim -> complete throughput of a one-user-task process, beside the bare library.

Measured in one run on this machine:
- bare SpiffWorkflow doing the same steps in memory on one core, without and with saving its state (create, run,
  serialize; then deserialize, complete, run, serialize: what any durable engine must do at least);
- caseflow on SQLite and on PostgreSQL with one client calling commands back to back (the latency view);
- caseflow on PostgreSQL as a server is used: one engine process serving several concurrent clients, and several
  engine processes on one database.

    python -m bench.throughput [--cycles N] [--clients 4] [--workers 2] [--pg URL] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lxml import etree
from SpiffWorkflow.bpmn import BpmnWorkflow
from SpiffWorkflow.bpmn.parser import BpmnParser
from SpiffWorkflow.bpmn.serializer import BpmnWorkflowSerializer
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import create_engine, text

from engine.commands import Engine
from engine.store.db import create_db_engine
from engine.store.migrate import migrate

MODEL = b"""<?xml version="1.0" encoding="UTF-8"?>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL"
    xmlns:camunda="http://camunda.org/schema/1.0/bpmn" id="d" targetNamespace="http://caseflow.local/bench">
  <bpmn:process id="bench_one_task" isExecutable="true">
    <bpmn:startEvent id="start"/>
    <bpmn:sequenceFlow id="f1" sourceRef="start" targetRef="review"/>
    <bpmn:userTask id="review" name="Review" camunda:candidateGroups="officer"/>
    <bpmn:sequenceFlow id="f2" sourceRef="review" targetRef="end"/>
    <bpmn:endEvent id="end"/>
  </bpmn:process>
</bpmn:definitions>
"""
TARGET = 0.25


def bare(cycles: int, serialize: bool) -> float:
    parser = BpmnParser()
    parser.add_bpmn_xml(etree.fromstring(MODEL), "bench.bpmn")
    spec = parser.get_spec("bench_one_task")
    serializer = BpmnWorkflowSerializer()
    t0 = time.perf_counter()
    for i in range(cycles):
        wf = BpmnWorkflow(spec)
        wf.get_tasks(state=TaskState.READY)[0].set_data(case=i)
        wf.do_engine_steps()
        task = wf.get_tasks(state=TaskState.READY, manual=True)[0]
        task.data["assignee"] = "zhang.san"  # the claim: no library step
        if serialize:
            state = serializer.serialize_json(wf)  # start saves its state ...
            wf = serializer.deserialize_json(state)  # ... and complete loads it again
            task = wf.get_tasks(state=TaskState.READY, manual=True)[0]
        task.set_data(approved=True)
        task.run()
        wf.do_engine_steps()
        if serialize:
            serializer.serialize_json(wf)
        assert wf.is_completed()
    return cycles / (time.perf_counter() - t0)


def cycle(engine: Engine, i: int) -> None:
    started = engine.start(key="bench_one_task", business_key=f"B-{i}", variables={"case": i})
    task_id = started["tasks"][0]["id"]
    engine.claim(task_id, "zhang.san")
    done = engine.complete(task_id, {"approved": True}, user="zhang.san")
    assert done["state"] == "completed", done


def sequential(engine: Engine, cycles: int) -> tuple[float, float]:
    latencies = []
    t0 = time.perf_counter()
    for i in range(cycles):
        c0 = time.perf_counter()
        cycle(engine, i)
        latencies.append(time.perf_counter() - c0)
    return cycles / (time.perf_counter() - t0), statistics.median(latencies) * 1000


def concurrent(engine: Engine, cycles: int, clients: int) -> float:
    per_client = max(1, cycles // clients)
    errors: list[BaseException] = []

    def client(offset: int) -> None:
        try:
            for i in range(per_client):
                cycle(engine, offset + i)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=client, args=(k * per_client,)) for k in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return clients * per_client / (time.perf_counter() - t0)


def _process(url: str, schema: str | None, cycles: int, clients: int, ready: Any, go: Any, out: Any) -> None:
    db = create_db_engine(url, schema=schema)
    engine = Engine(db)
    ready.put(True)
    go.wait()
    t0 = time.perf_counter()
    concurrent(engine, cycles, clients)
    out.put(time.perf_counter() - t0)
    db.dispose()


def processes(url: str, schema: str | None, cycles: int, workers: int, clients: int) -> float:
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    per_process = max(clients, cycles // workers)
    procs = [
        ctx.Process(target=_process, args=(url, schema, per_process, clients, ready, go, out))
        for _ in range(workers)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=120)
    go.set()
    elapsed = max(out.get(timeout=900) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    return workers * (per_process // clients) * clients / elapsed


@contextmanager
def database(url: str) -> Iterator[tuple[Engine, str | None]]:
    """A fresh, migrated database with the model deployed: a temporary file, or a PostgreSQL schema."""
    if url.startswith("sqlite"):
        with tempfile.TemporaryDirectory() as tmp:
            db = create_db_engine(f"sqlite:///{Path(tmp) / 'bench.db'}")
            migrate(db)
            engine = Engine(db)
            engine.deploy([("bench.bpmn", MODEL)])
            yield engine, None
            db.dispose()
        return
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        db = create_db_engine(url, schema=schema, pool_size=16)
        migrate(db)
        engine = Engine(db)
        engine.deploy([("bench.bpmn", MODEL)])
        yield engine, schema
        db.dispose()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def measure(label: str, results: dict[str, float], key: str, fn: Callable[[], float]) -> None:
    try:
        results[key] = fn()
    except Exception as exc:
        print(f"{label}: not measured ({exc.__class__.__name__}: {exc})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=4, help="concurrent clients of one engine process")
    ap.add_argument("--workers", type=int, default=2, help="engine processes on one PostgreSQL (0 to skip)")
    ap.add_argument(
        "--pg",
        default=os.environ.get("CASEFLOW_BENCH_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test"),
    )
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    n = args.cycles
    r: dict[str, float] = {}
    bare(50, False)
    r["bare_in_memory"] = bare(n, False)
    r["bare_with_serialization"] = bare(n, True)
    with database("sqlite") as (engine, _):
        r["sqlite_sequential"], r["sqlite_p50_ms"] = sequential(engine, n)
    try:
        with database(args.pg) as (engine, schema):
            r["postgresql_sequential"], r["postgresql_p50_ms"] = sequential(engine, n)
            measure(
                "PostgreSQL, concurrent clients",
                r,
                "postgresql_one_process",
                lambda: concurrent(engine, n, args.clients),
            )
            if args.workers > 1:
                measure(
                    "PostgreSQL, several processes",
                    r,
                    "postgresql_processes",
                    lambda: processes(args.pg, schema, n, args.workers, args.clients),
                )
    except Exception as exc:
        print(f"PostgreSQL: not measured ({exc.__class__.__name__}: {exc})")

    base, base_ser = r["bare_in_memory"], r["bare_with_serialization"]
    print(f"start -> claim -> complete of a one-user-task process, {n} cycles per figure, cycles/s")
    print(f"  {'bare SpiffWorkflow, in memory, one core':58s} {base:8.1f}")
    print(f"  {'bare SpiffWorkflow, saving its state, one core':58s} {base_ser:8.1f}")
    rows = [
        ("sqlite_sequential", "caseflow SQLite, one client", "sqlite_p50_ms"),
        ("postgresql_sequential", "caseflow PostgreSQL, one client", "postgresql_p50_ms"),
        ("postgresql_one_process", f"caseflow PostgreSQL, one engine process, {args.clients} clients", None),
        (
            "postgresql_processes",
            f"caseflow PostgreSQL, {args.workers} engine processes x {args.clients} clients",
            None,
        ),
    ]
    for key, label, p50 in rows:
        if key in r:
            extra = f", p50 {r[p50]:.2f} ms/cycle" if p50 else ""
            print(
                f"  {label:58s} {r[key]:8.1f}   {r[key] / base:6.1%} of in memory, "
                f"{r[key] / base_ser:6.1%} of saving state{extra}"
            )
    for key in ("postgresql_sequential", "postgresql_one_process", "postgresql_processes"):
        if key in r:
            for label, ref in (("bare in memory", base), ("bare saving its state", base_ser)):
                ratio = r[key] / ref
                verdict = "met" if ratio >= TARGET else "not met"
                print(f"target {TARGET:.0%} of {label}, {key}: {ratio:.1%} ({verdict})")
    if args.json:
        Path(args.json).write_text(json.dumps(r, indent=2))


if __name__ == "__main__":
    main()
