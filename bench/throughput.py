"""start -> claim -> complete throughput of a one-user-task process.

Measures, in one run and on this machine: bare SpiffWorkflow doing the same steps in memory (with and without
serializing the state, which any persistent engine must do), then caseflow on SQLite and on PostgreSQL (when
reachable). Prints cycles per second and caseflow's ratio to the bare library.

    python -m bench.throughput [--cycles N] [--pg URL]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
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
            # start saved its state; complete loads it, advances and saves again
            state = serializer.serialize_json(wf)
            wf = serializer.deserialize_json(state)
            task = wf.get_tasks(state=TaskState.READY, manual=True)[0]
        task.set_data(approved=True)
        task.run()
        wf.do_engine_steps()
        if serialize:
            serializer.serialize_json(wf)
        assert wf.is_completed()
    return cycles / (time.perf_counter() - t0)


def caseflow(engine: Engine, cycles: int) -> tuple[float, list[float]]:
    engine.deploy([("bench.bpmn", MODEL)])
    latencies = []
    t0 = time.perf_counter()
    for i in range(cycles):
        c0 = time.perf_counter()
        started = engine.start(key="bench_one_task", business_key=f"B-{i}", variables={"case": i})
        task_id = started["tasks"][0]["id"]
        engine.claim(task_id, "zhang.san")
        done = engine.complete(task_id, {"approved": True}, user="zhang.san")
        assert done["state"] == "completed", done
        latencies.append(time.perf_counter() - c0)
    return cycles / (time.perf_counter() - t0), latencies


def run_engine(url: str, schema: str | None, cycles: int) -> tuple[float, list[float]]:
    db = create_db_engine(url, schema=schema)
    migrate(db)
    try:
        return caseflow(Engine(db), cycles)
    finally:
        db.dispose()


def _client(url: str, schema: str | None, cycles: int, ready: Any, go: Any, out: Any) -> None:
    db = create_db_engine(url, schema=schema)
    engine = Engine(db)
    ready.put(True)
    go.wait()
    t0 = time.perf_counter()
    for i in range(cycles):
        started = engine.start(key="bench_one_task", variables={"case": i})
        task_id = started["tasks"][0]["id"]
        engine.claim(task_id, "zhang.san")
        engine.complete(task_id, {"approved": True}, user="zhang.san")
    out.put(time.perf_counter() - t0)
    db.dispose()


def run_parallel(url: str, schema: str | None, cycles: int, workers: int) -> float:
    """Several engine processes on one database (as in a multi-process deployment): aggregate cycles/s."""
    db = create_db_engine(url, schema=schema)
    migrate(db)
    Engine(db).deploy([("bench.bpmn", MODEL)])
    db.dispose()
    ctx = mp.get_context("spawn")
    ready, out, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    procs = [ctx.Process(target=_client, args=(url, schema, cycles, ready, go, out)) for _ in range(workers)]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    go.set()
    elapsed = max(out.get(timeout=600) for _ in procs)
    for p in procs:
        p.join(timeout=30)
    return workers * cycles / elapsed


def with_pg_schema(url: str, body: Callable[[str], tuple[float, list[float]]]) -> tuple[float, list[float]]:
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        return body(schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cycles", type=int, default=1000)
    ap.add_argument("--pg", default=os.environ.get("CASEFLOW_BENCH_PG",
                                                    "postgresql+psycopg://postgres@127.0.0.1:5432/test"))
    ap.add_argument("--workers", type=int, default=2,
                    help="engine processes for the parallel PostgreSQL run (0 to skip)")
    ap.add_argument("--json", help="also write the figures to this file")
    args = ap.parse_args()
    n = args.cycles
    results: dict[str, float] = {}
    bare(50, False)
    results["bare_in_memory"] = bare(n, False)
    results["bare_with_serialization"] = bare(n, True)
    with tempfile.TemporaryDirectory() as tmp:
        rate, lat = run_engine(f"sqlite:///{Path(tmp) / 'bench.db'}", None, n)
    results["caseflow_sqlite"] = rate
    results["caseflow_sqlite_p50_ms"] = statistics.median(lat) * 1000
    try:
        rate, lat = with_pg_schema(args.pg, lambda schema: run_engine(args.pg, schema, n))
        results["caseflow_postgresql"] = rate
        results["caseflow_postgresql_p50_ms"] = statistics.median(lat) * 1000
        if args.workers > 1:
            results["caseflow_postgresql_parallel"] = with_pg_schema(
                args.pg, lambda schema: (run_parallel(args.pg, schema, n, args.workers), []))[0]
    except Exception as exc:  # noqa: BLE001 - print why PostgreSQL was left out
        print(f"PostgreSQL not measured: {exc.__class__.__name__}: {exc}")
    base = results["bare_in_memory"]
    base_ser = results["bare_with_serialization"]
    print(f"start -> claim -> complete of a one-user-task process, {n} cycles each (cycles/s)")
    print(f"  bare SpiffWorkflow in memory            {base:10.1f}")
    print(f"  bare SpiffWorkflow + JSON serialization {base_ser:10.1f}")
    for name in ("caseflow_sqlite", "caseflow_postgresql"):
        if name in results:
            rate = results[name]
            print(f"  {name:39s} {rate:10.1f}   {rate / base:6.1%} of bare in memory, "
                  f"{rate / base_ser:6.1%} of bare + serialization, p50 {results[name + '_p50_ms']:.2f} ms/cycle")
    if "caseflow_postgresql_parallel" in results:
        rate = results["caseflow_postgresql_parallel"]
        print(f"  caseflow_postgresql, {args.workers} engine processes  {rate:10.1f}   {rate / base:6.1%} of bare in "
              f"memory (one core), {rate / base_ser:6.1%} of bare + serialization (one core)")
    if "caseflow_postgresql" in results:
        for label, ref in (("bare in memory", base), ("bare + serialization", base_ser)):
            ratio = results["caseflow_postgresql"] / ref
            print(f"PostgreSQL, one engine process: {ratio:.1%} of {label} "
                  f"(target 25%: {'met' if ratio >= 0.25 else 'not met'})")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
