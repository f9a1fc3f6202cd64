"""Conformance: BPMN/DMN files nobody on this project wrote, from ../shared/conformance.

1. Every file deploys, or is refused with ``InvalidModel``/``PayloadTooLarge`` naming the resource -- never
   another exception type, never a message with a library ``<Element ... at 0x...>`` repr. Files meant to be
   invalid (SpiffWorkflow's ``Invalid-Workflows/`` and ``*_unsupported``) are refused. Every deployed process
   starts without a crash (running, completed or an incident).
2. The executable Camunda 7 examples run: user tasks are completed with their form's fields, jobs (external
   and former Java service tasks) are completed, messages correlated, timers fired by advancing the clock.
   The engine must do better than the bare library's baseline in ``MANIFEST.csv``.
"""

from __future__ import annotations

import csv
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from engine.commands import Engine, EngineConfig
from engine.errors import CaseflowError, InvalidModel, PayloadTooLarge
from engine.store import queries
from engine.store.db import create_db_engine, read_only
from engine.store.migrate import migrate
from tests.conftest import SHARED, ManualClock, require_shared

CORPUS = SHARED / "conformance"
CAMUNDA = "camunda-bpm-examples"
BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
CAMUNDA_NS = "http://camunda.org/schema/1.0/bpmn"
SUFFIXES = (".bpmn", ".bpmn20.xml", ".dmn")
LIBRARY_REPR = re.compile(r"<Element|at 0x[0-9a-f]+>")
UNKNOWN_VARIABLE = re.compile(r"unknown variable '([^']+)'")
# Why a Camunda example may be refused: caseflow never runs code in a language it cannot make safe.
POLICY_REFUSALS = (
    "script format",  # javascript, groovy, xslt script tasks
    "camunda:executionListener",
    "camunda:taskListener",  # listeners run Java or script code
    "cron expression",  # timers are ISO 8601
    "is not allowed in expression",  # e.g. Camunda Spin's customer.prop("age").numberValue()
)


def _corpus() -> list[Path]:
    if not CORPUS.is_dir():
        return []
    return sorted(p for p in CORPUS.rglob("*") if p.is_file() and p.name.endswith(SUFFIXES))


FILES = _corpus()
PARAMS = [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in FILES] or [
    pytest.param(None, id="corpus-missing")
]


def _relative(path: Path) -> Path:
    return path.relative_to(CORPUS)


def _is_camunda(path: Path) -> bool:
    return _relative(path).parts[0] == CAMUNDA


def _meant_invalid(path: Path) -> bool:
    return "Invalid-Workflows" in path.parts or path.name.split(".")[0].endswith("_unsupported")


def deployment_files(path: Path) -> list[tuple[str, bytes]]:
    """The file alone; a Camunda example's BPMN goes with its folder's DMN files, as Camunda deploys it."""
    files = [(path.name, path.read_bytes())]
    if _is_camunda(path) and not path.name.endswith(".dmn"):
        files += [(d.name, d.read_bytes()) for d in sorted(path.parent.glob("*.dmn"))]
    return files


def _assert_precise(exc: CaseflowError, path: Path) -> None:
    assert path.name in exc.message, f"the refusal does not name the resource: {exc.message}"
    assert not LIBRARY_REPR.search(exc.message), f"library repr in the message: {exc.message}"


def _fresh_engine(tmp_path: Path, name: str, clock: ManualClock) -> Engine:
    db = create_db_engine(f"sqlite:///{tmp_path / name}.db")
    migrate(db)
    return Engine(db, clock, EngineConfig())


# ================================================================================ 1. deploy or refuse
@pytest.mark.parametrize("path", PARAMS)
def test_deploys_or_is_refused_precisely(path: Path | None, sqlite_engine: Engine) -> None:
    require_shared()
    if path is None:
        pytest.fail(f"{CORPUS} holds no .bpmn/.bpmn20.xml/.dmn files")
    try:
        deployed = sqlite_engine.deploy(deployment_files(path), name=path.name)
    except (InvalidModel, PayloadTooLarge) as exc:
        _assert_precise(exc, path)
        return
    except Exception as exc:  # the point of the test: nothing else may escape
        pytest.fail(f"{type(exc).__name__} leaked from deploy: {exc}")
    assert not _meant_invalid(path), f"{_relative(path)} is meant to be invalid but was deployed"
    assert deployed["definitions"] or deployed.get("decisions")
    for definition in deployed["definitions"]:
        try:
            started = sqlite_engine.start(key=definition["key"], actor="conformance")
        except Exception as exc:
            pytest.fail(f"{type(exc).__name__} leaked from start of {definition['key']}: {exc}")
        assert started["state"] in ("running", "completed", "incident")
        if started["incident"]:
            assert not LIBRARY_REPR.search(started["incident"]["message"])


def test_files_meant_to_be_invalid_are_refused(tmp_path: Path, clock: ManualClock) -> None:
    require_shared()
    invalid = [p for p in FILES if _meant_invalid(p)]
    assert invalid, "the corpus should contain SpiffWorkflow's Invalid-Workflows/"
    for index, path in enumerate(invalid):
        engine = _fresh_engine(tmp_path, f"invalid{index}", clock)
        with pytest.raises(InvalidModel) as refused:
            engine.deploy(deployment_files(path))
        _assert_precise(refused.value, path)
        engine.db.dispose()


# ================================================================================ 2. Camunda examples run
@dataclass
class Outcome:
    path: Path
    refusal: str | None = None
    states: list[str] = field(default_factory=list)  # per process: completed | wait | incident | stuck
    retries: int = 0  # incidents fixed by supplying the variable a service or form would have set
    steps: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)  # task metadata that differs from the model's
    checked: int = 0  # user tasks whose metadata was compared with the model

    @property
    def deployed(self) -> bool:
        return self.refusal is None


def _called_process_files(path: Path) -> list[Path]:
    """Files of the same folder that define the processes this one calls (deployed first, as libraries)."""
    called = set(re.findall(r'calledElement="([^"$#{}]+)"', path.read_text(encoding="utf-8")))
    found = []
    for sibling in sorted(path.parent.glob("*.bpmn")):
        if sibling == path:
            continue
        text = sibling.read_text(encoding="utf-8")
        defined = set(re.findall(r'<(?:\w+:)?process\b[^>]*\bid="([^"]+)"', text))
        if called & defined:
            found.append(sibling)
    return found


def _task_expectations(path: Path) -> dict[str, dict[str, Any]]:
    """What the model says of each user task (literal values only): form key, assignee, candidate groups."""
    parser = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)
    root = etree.fromstring(path.read_bytes(), parser=parser)
    expected: dict[str, dict[str, Any]] = {}
    for node in root.iter(f"{{{BPMN_NS}}}userTask"):

        def literal(name: str, node: Any = node) -> str | None:
            value = node.get(f"{{{CAMUNDA_NS}}}{name}")
            return None if value is None or "{" in value else value.strip()

        groups = literal("candidateGroups")
        expected[node.get("id")] = {
            "form_key": literal("formKey"),
            "assignee": literal("assignee"),
            "candidate_groups": [g.strip() for g in groups.split(",")] if groups else None,
        }
    return expected


def _check_task(open_task: dict[str, Any], expected: dict[str, dict[str, Any]], outcome: Outcome) -> None:
    want = expected.get(open_task["element_id"], {})
    element = open_task["element_id"]
    outcome.checked += any(v is not None for v in want.values())
    for name in ("form_key", "assignee"):
        if want.get(name) is not None and open_task[name] != want[name]:
            outcome.mismatches.append(f"{element}.{name}: {open_task[name]!r} != {want[name]!r}")
    groups = want.get("candidate_groups")
    if groups and not set(groups) <= set(open_task["candidate_groups"] or []):
        outcome.mismatches.append(f"{element}.candidate_groups: {open_task['candidate_groups']}")


def _form_values(engine: Engine, definition_id: str, element_id: str) -> dict[str, Any]:
    """What a user fills in: the camunda:formField ids of the task with a plain value of their type."""
    model = engine.model(definition_id)
    specs = [model.spec, *[s for s in model.subprocess_specs.values() if s is not None]]
    spec = next((s.task_specs[element_id] for s in specs if element_id in s.task_specs), None)
    values: dict[str, Any] = {}
    plain = {"boolean": True, "long": 1, "decimal": 1, "date": "2026-01-02", "string": "x"}
    for form_field in getattr(getattr(spec, "form", None), "fields", None) or []:
        if form_field.readonly:
            continue
        if form_field.default is not None:
            values[form_field.id] = form_field.default
        elif form_field.type == "enum":
            values[form_field.id] = form_field.options[0].id
        else:
            values[form_field.id] = plain[form_field.type]
    return values


def drive(
    engine: Engine,
    clock: ManualClock,
    instance_id: str,
    outcome: Outcome,
    expected: dict[str, dict[str, Any]],
) -> str:
    """Advance an instance as its users, workers and the clock would, until it ends or nothing moves it."""
    for _ in range(60):
        with read_only(engine.db) as conn:
            instance = queries.instance(conn, instance_id)
        state = instance["state"]
        if state == "incident":
            incidents = instance["incidents"]
            missing = [m.group(1) for m in (UNKNOWN_VARIABLE.search(i["message"]) for i in incidents) if m]
            if not missing or outcome.retries >= 5:
                outcome.steps.append(f"incident: {incidents[0]['message'][:80] if incidents else '?'}")
                return "incident"
            # The variable a Java delegate or an embedded form would have set: the operator supplies it.
            engine.retry_incident(incidents[0]["id"], {missing[0]: True})
            outcome.retries += 1
            outcome.steps.append(f"retry+{missing[0]}")
            continue
        if state != "running":
            return str(state)
        waiting = instance["waiting_for"]
        if instance["tasks"]:
            open_task = instance["tasks"][0]
            _check_task(open_task, expected, outcome)
            values = _form_values(engine, instance["definition_id"], open_task["element_id"])
            engine.complete(open_task["id"], values, user=open_task["assignee"] or "demo")
            outcome.steps.append(f"task:{open_task['element_id']}")
        elif waiting["jobs"]:
            job = waiting["jobs"][0]
            engine.complete_job(job["id"], {})
            outcome.steps.append(f"job:{job['topic']}")
        elif waiting["messages"]:
            message = waiting["messages"][0]
            engine.correlate(message["name"], correlation_keys=message["correlation"] or None)
            outcome.steps.append(f"message:{message['name']}")
        elif waiting["timers"]:
            due = min(datetime.fromisoformat(t["due_at"]) for t in waiting["timers"])
            clock.set(max(clock(), due) + timedelta(seconds=1))
            assert engine.fire_due_timers() >= 1
            outcome.steps.append("timer")
        else:
            return "stuck"
    return "wait"


def run_camunda_example(path: Path, tmp_path: Path, clock: ManualClock, index: int) -> Outcome:
    outcome = Outcome(path)
    engine = _fresh_engine(tmp_path, f"camunda{index}", clock)
    try:
        for library in _called_process_files(path):
            try:
                engine.deploy(deployment_files(library))
            except InvalidModel:
                pass  # the file's own deployment then reports what is missing
        try:
            deployed = engine.deploy(deployment_files(path))
        except (InvalidModel, PayloadTooLarge) as exc:
            _assert_precise(exc, path)
            outcome.refusal = exc.message
            return outcome
        for definition in deployed["definitions"]:
            started = engine.start(key=definition["key"], variables={}, actor="demo")
            outcome.states.append(drive(engine, clock, started["id"], outcome, _task_expectations(path)))
    finally:
        engine.db.dispose()
    return outcome


@dataclass
class Baseline:
    files: int
    parsed: int  # the bare library parses it (best of its three parsers)
    completed: int  # processes run to the end (best parser)
    finished_files: int  # files whose every process runs to the end (best parser)


def manifest_baseline() -> Baseline:
    rows = [
        r
        for r in csv.DictReader((CORPUS / "MANIFEST.csv").open(encoding="utf-8"))
        if r["source"] == CAMUNDA and r["kind"] == "bpmn" and (CORPUS / CAMUNDA / r["path"]).is_file()
    ]
    columns = ("bpmn_exec", "camunda_exec", "spiff_exec")

    def parsed(value: str) -> bool:
        return bool(value) and "spec-error" not in value and "parse-fail" not in value

    def completed(value: str) -> int:
        found = re.search(r"completed=(\d+)", value or "")
        return int(found.group(1)) if found else 0

    return Baseline(
        files=len(rows),
        parsed=max(sum(parsed(r[c]) for r in rows) for c in columns),
        completed=max(sum(completed(r[c]) for r in rows) for c in columns),
        finished_files=max(
            sum(completed(r[c]) > 0 and "=" not in re.sub(r"completed=\d+;?", "", r[c]) for r in rows)
            for c in columns
        ),
    )


def summary_table(outcomes: list[Outcome], baseline: Baseline) -> str:
    processes = Counter(state for o in outcomes for state in o.states)
    clean = sum(1 for o in outcomes for s in o.states if s == "completed" and o.retries == 0)
    deployed = sum(o.deployed for o in outcomes)
    finished = sum(1 for o in outcomes if o.deployed and o.states and set(o.states) == {"completed"})
    lines = [
        "| Camunda 7 examples (files on disk) | bare SpiffWorkflow 3.2.0 (MANIFEST) | caseflow |",
        "|---|---|---|",
        f"| BPMN files | {baseline.files} | {len(outcomes)} |",
        f"| files parsed / deployed | {baseline.parsed} | {deployed} |",
        f"| processes run to completion | {baseline.completed} | {processes['completed']} |",
        f"| files whose every process runs to completion | {baseline.finished_files} | {finished} |",
        f"| ... of these without any incident retry | - | {clean} |",
        f"| processes left waiting / stuck | - | {processes['wait'] + processes['stuck']} |",
        f"| processes ending in an incident | - | {processes['incident']} |",
        f"| files refused (InvalidModel, by policy) | - | {len(outcomes) - deployed} |",
        "",
        "| file | result |",
        "|---|---|",
    ]
    for o in outcomes:
        name = str(_relative(o.path).relative_to(CAMUNDA))
        if o.refusal:
            result = "refused: " + o.refusal.split(": ", 1)[-1][:90]
        else:
            result = ", ".join(o.states) + (f" ({o.retries} retry)" if o.retries else "")
        lines.append(f"| {name} | {result} |")
    return "\n".join(lines)


@pytest.fixture
def camunda_outcomes(tmp_path: Path, clock: ManualClock) -> Iterator[list[Outcome]]:
    require_shared()
    examples = [p for p in FILES if _is_camunda(p) and not p.name.endswith(".dmn")]
    assert examples, f"no Camunda examples under {CORPUS / CAMUNDA}"
    yield [run_camunda_example(p, tmp_path, clock, i) for i, p in enumerate(examples)]


def test_camunda_examples_run_better_than_the_bare_library(camunda_outcomes: list[Outcome]) -> None:
    baseline = manifest_baseline()
    print("\n" + summary_table(camunda_outcomes, baseline))
    outcomes = camunda_outcomes
    completed = sum(state == "completed" for o in outcomes for state in o.states)
    completed_clean = sum(1 for o in outcomes for s in o.states if s == "completed" and o.retries == 0)
    deployed = sum(o.deployed for o in outcomes)
    # Runs: more processes reach their end event than the bare library gets to, even without any help.
    assert completed_clean > baseline.completed
    assert completed > baseline.completed
    assert sum(1 for o in outcomes if o.states and set(o.states) == {"completed"}) > baseline.finished_files
    # Deploys: every file the bare library parses is deployed, unless caseflow refuses it at deploy time for a
    # stated reason (JavaScript/Groovy/XSLT code, listeners, cron, Java bean calls in expressions) -- code the
    # bare library accepts and then fails on at run time, or never reaches because it waits forever at a Java
    # service task it cannot run.
    for o in outcomes:
        if o.refusal is not None:
            assert any(reason in o.refusal for reason in POLICY_REFUSALS), o.refusal
    assert deployed + sum(o.refusal is not None for o in outcomes) >= baseline.parsed
    assert deployed >= baseline.finished_files
    # User tasks carry the model's camunda:formKey, camunda:assignee and camunda:candidateGroups.
    assert [m for o in outcomes for m in o.mismatches] == []
    assert sum(o.checked for o in outcomes) >= 5
    # Nothing that deployed is left without an explanation: an incident is the only other way to stop.
    assert all(state in ("completed", "wait", "incident", "stuck") for o in outcomes for state in o.states)


def test_camunda_java_delegates_become_jobs_on_their_topic(tmp_path: Path, clock: ManualClock) -> None:
    """A camunda:class service task cannot run Java here: it is a job on the class's topic for a worker."""
    require_shared()
    path = (
        CORPUS
        / CAMUNDA
        / "servicetask/service-invocation-synchronous/src/main/resources"
        / "synchronousServiceInvocation.bpmn"
    )
    if not path.is_file():
        pytest.skip(f"{path} is not in this corpus")
    engine = _fresh_engine(tmp_path, "java", clock)
    deployed = engine.deploy(deployment_files(path))
    started = engine.start(key=deployed["definitions"][0]["key"])
    engine.complete(started["tasks"][0]["id"], {})
    with read_only(engine.db) as conn:
        jobs = queries.jobs(conn)
    topic = "org.camunda.quickstart.servicetask.invocation.sync.SynchronousServiceTask"
    assert [j["topic"] for j in jobs] == [topic]
    done = engine.complete_job(jobs[0]["id"], {"result": "ok"})
    assert done["variables"]["result"] == "ok"
    engine.db.dispose()
