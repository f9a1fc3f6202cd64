"""What need-to-know costs in the task and instance lists: the same list for different viewers.

Starts N ordinary cases (enforcement_case) and N/10 confidential ones (discipline_clue) from the access test
fixtures, then times `queries.tasks` and `queries.instances` (limit 100) for: no viewer (confidential hidden by a
plain condition), the engine itself (no condition), case supervision (no condition), an officer the clues' tasks
name and an officer of another agency (both through the need-to-know subqueries).

    python -m bench.access_lists [--cases 3000] [--runs 50] [--pg URL]

One run on this machine (2 cores, shared; 3000 + 301 cases, p50 ms of tasks / instances): PostgreSQL no viewer
4.3 / 3.5, case supervision 4.0 / 2.7, named officer 5.7 / 4.7, other agency 6.3 / 5.2; SQLite 3.7 / 6.6,
2.6 / 7.0, 5.9 / 10.5, 12.0 / 16.4. The viewer's subqueries read task.completed_by and
process_instance.started_by, which have no index: at a million instances they want one (or a partial index on
the confidential rows).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from engine.commands import Engine
from engine.directory import SYSTEM, Viewer, load_directory
from engine.store import queries
from engine.store.db import create_db_engine, read_only
from engine.store.migrate import migrate

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures" / "access"


def _populate(engine: Engine, cases: int) -> None:
    for name in ("enforcement_case.bpmn", "discipline_clue.bpmn"):
        engine.deploy([(name, (FIXTURES / name).read_bytes())], name="bench")
    agencies = ["market_regulation", "urban_management", "ecology_environment", "township_jiaokou"]
    for i in range(cases):
        engine.start(key="enforcement_case", variables={"agency": agencies[i % len(agencies)]}, actor="bench")
        if i % 10 == 0:
            engine.start(
                key="discipline_clue",
                variables={
                    "agency": "market_regulation",
                    "case_no": f"C{i}",
                    "receiver": "discipline_commission",
                },
                actor="bench",
            )


def _time(runs: int, call: Callable[[], Any]) -> tuple[float, float, int]:
    samples = []
    size = 0
    for _ in range(runs):
        started = time.perf_counter()
        size = len(call())
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], size


def run(engine: Engine, cases: int, runs: int, label: str) -> None:
    started = time.perf_counter()
    _populate(engine, cases)
    print(
        f"{label}: {cases} ordinary + {cases // 10 + 1} confidential cases in {time.perf_counter() - started:.1f} s"
    )
    directory = load_directory(ROOT / "deployments" / "users.yaml")
    viewers: list[tuple[str, Viewer | None]] = [
        ("no viewer", None),
        ("engine (SYSTEM)", SYSTEM),
        ("case supervision", directory.viewer("caoyun")),
        ("officer named by clues", directory.viewer("zhangwei")),
        ("officer of another agency", directory.viewer("sunlei")),
    ]
    print(f"{'viewer':<28}{'tasks p50/p95 ms':>20}{'rows':>6}{'instances p50/p95 ms':>24}{'rows':>6}")
    for name, viewer in viewers:
        with read_only(engine.db) as conn:
            t50, t95, tn = _time(runs, lambda v=viewer: queries.tasks(conn, limit=100, viewer=v))
            i50, i95, inn = _time(runs, lambda v=viewer: queries.instances(conn, limit=100, viewer=v))
        print(f"{name:<28}{t50:>10.2f} /{t95:>7.2f}{tn:>6}{i50:>14.2f} /{i95:>7.2f}{inn:>6}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--pg", help="PostgreSQL URL (a fresh schema is created and dropped)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = create_db_engine(f"sqlite:///{tmp}/bench.db")
        migrate(db)
        run(Engine(db), args.cases, args.runs, "SQLite")
        db.dispose()
    if args.pg:
        schema = f"bench_{uuid.uuid4().hex[:8]}"
        admin = create_engine(args.pg, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            db = create_db_engine(args.pg, schema=schema)
            migrate(db)
            run(Engine(db), args.cases, args.runs, "PostgreSQL")
            db.dispose()
        finally:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
