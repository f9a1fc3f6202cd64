"""The composition root: what `caseflow serve` builds and deploys on start."""

from __future__ import annotations

from pathlib import Path

from engine.app import build, deploy_directory
from engine.settings import Settings
from engine.store import queries
from engine.store.db import read_only

BUNDLED = Path(__file__).resolve().parents[1] / "bpmn"


def test_every_bundled_model_deploys_and_a_second_start_creates_nothing(tmp_path: Path) -> None:
    app = build(Settings(database_url=f"sqlite:///{tmp_path / 'caseflow.db'}"))
    first = deploy_directory(app.engine, BUNDLED)
    models = sorted(p.name for p in BUNDLED.iterdir() if p.suffix == ".bpmn")
    assert len(first) == len(models) and all(d["created"] for d in first)
    again = deploy_directory(app.engine, BUNDLED)
    assert [d["created"] for d in again] == [False] * len(models)
    with read_only(app.engine.db) as conn:
        keys = {d["key"] for d in queries.definitions(conn)}
    assert "demo_clue_intake" in keys


def test_the_demo_process_runs_through_the_built_application(tmp_path: Path) -> None:
    app = build(Settings(database_url=f"sqlite:///{tmp_path / 'caseflow.db'}"))
    deploy_directory(app.engine, BUNDLED)
    started = app.engine.start(
        key="demo_clue_intake", business_key="HB-2026-001", variables={"clue": "无证经营"}
    )
    (register,) = started["tasks"]
    with read_only(app.engine.db) as conn:
        offered = queries.tasks(conn, candidate_group="执法人员")
    assert [t["id"] for t in offered] == [register["id"]]
    approve = app.engine.complete(register["id"], {"summary": "现场检查发现无证经营"})["tasks"][0]
    done = app.engine.complete(approve["id"], {"approved": True})
    assert done["state"] == "completed"
    assert app.scheduler.run_once() == 0  # nothing due, nothing in the outbox


def test_a_missing_models_directory_deploys_nothing(tmp_path: Path) -> None:
    app = build(Settings(database_url=f"sqlite:///{tmp_path / 'caseflow.db'}"))
    assert deploy_directory(app.engine, tmp_path / "no-such-dir") == []


def test_a_calling_process_deploys_after_the_file_it_calls_and_a_broken_file_is_only_logged(
    tmp_path: Path,
) -> None:
    from tests.bpmn_util import chain, process

    models = tmp_path / "models"
    models.mkdir()
    # "a_" sorts first, but it calls the process in "z_": it must wait for it.
    (models / "a_caller.bpmn").write_bytes(
        process(
            "caller",
            f"""
  <bpmn:startEvent id="start"/>
  <bpmn:callActivity id="call" calledElement="callee"/>
  <bpmn:endEvent id="end"/>
  {chain("start", "call", "end")}""",
        )
    )
    (models / "z_callee.bpmn").write_bytes(
        process("callee", '<bpmn:startEvent id="s"/><bpmn:endEvent id="e"/>' + chain("s", "e"))
    )
    (models / "m_broken.bpmn").write_bytes(b"<not-bpmn/>")
    app = build(Settings(database_url=f"sqlite:///{tmp_path / 'caseflow.db'}"))
    deployed = deploy_directory(app.engine, models)
    assert sorted(d["definitions"][0]["key"] for d in deployed) == ["callee", "caller"]
    assert app.engine.start(key="caller")["state"] == "completed"
