"""``caseflow demo``: a batch through all five district processes with an accelerated clock."""

from __future__ import annotations

import io
import random
from datetime import timedelta
from pathlib import Path

import pytest

from engine.app import build, deploy_directory, load_users
from engine.cli import main
from engine.demo import PROCESSES, Demo, DemoClock, plan_cases
from engine.settings import Settings
from engine.store import audit
from engine.store.db import read_only

ROOT = Path(__file__).resolve().parents[1]


def _run(tmp_path: Path, per_process: int, seed: int, tardy: float) -> tuple[Demo, str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'demo.db'}", bpmn_dir=str(ROOT / "bpmn"))
    clock = DemoClock()
    app = build(settings, clock, directory=load_users(settings))
    deploy_directory(app.engine, settings.bpmn_dir)
    rng = random.Random(seed)
    demo = Demo(app, clock, plan_cases(per_process, rng, tardy), rng=rng)
    demo.run()
    out = io.StringIO()
    demo.report(out, settings.tz)
    return demo, out.getvalue()


def test_every_case_of_every_process_reaches_its_end_with_a_verified_trail(tmp_path: Path) -> None:
    demo, report = _run(tmp_path, per_process=2, seed=7, tardy=0.0)
    assert {c.process for c in demo.cases} == set(PROCESSES)
    assert [c.state for c in demo.cases] == ["completed"] * len(demo.cases), [
        (c.business_key, c.state, c.problems) for c in demo.cases
    ]
    assert all(not c.problems for c in demo.cases)
    # staff acted as directory users who may act on each task, and the external systems answered
    assert sum(c.replies for c in demo.cases if c.process == "criminal_transfer") >= 2
    assert sum(c.replies for c in demo.cases if c.process == "discipline_clue_transfer") >= 2
    with read_only(demo.engine.db) as conn:
        for case in demo.cases:
            checked, problems = audit.verify(conn, case.instance_id)
            assert checked > 2 and not problems
    assert "演示结束" in report and "合计：completed 10" in report
    for case in demo.cases:
        assert f"== {case.business_key}  {case.process} ==" in report


def test_tardy_desks_miss_deadlines_and_supervision_tasks_appear(tmp_path: Path) -> None:
    demo, report = _run(tmp_path, per_process=1, seed=3, tardy=1.0)
    assert all(c.tardy for c in demo.cases)
    assert sum(c.escalations for c in demo.cases) >= 3
    assert demo.clock() - DemoClock().current > timedelta(days=10)
    assert "timer" in report  # the missed deadlines are in the trails


def test_the_command_prints_the_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    assert main(["demo", "--cases", "1", "--seed", "1", "--no-trails", "--database", url]) == 0
    printed = capsys.readouterr().out
    assert "案件编号" in printed and "合计：" in printed
    assert "== HB-2026-" not in printed


def test_the_same_seed_plays_the_same_run(tmp_path: Path) -> None:
    first, _ = _run(tmp_path / "a", per_process=1, seed=11, tardy=0.5)
    second, _ = _run(tmp_path / "b", per_process=1, seed=11, tardy=0.5)
    summary = [(c.business_key, c.state, c.steps, c.escalations, c.replies, c.tardy) for c in first.cases]
    assert summary == [
        (c.business_key, c.state, c.steps, c.escalations, c.replies, c.tardy) for c in second.cases
    ]
    assert first.clock() == second.clock()
