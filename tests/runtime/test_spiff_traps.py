"""The traps of SpiffWorkflow 3.2.0 (shared/domain/spiffworkflow-notes.md, items 1-6 and 9-11), each shown not
to catch the engine: driven through ``engine.commands.Engine`` (deploy, start, complete, correlate, timers,
jobs) or, where the trap lives below the commands, through the runtime.
"""

from __future__ import annotations

import locale
import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from SpiffWorkflow.util.task import TaskState
from sqlalchemy import func, select

from engine.commands import Engine
from engine.errors import InvalidModel, MessageNotCorrelated
from engine.runtime.instance import Runtime
from engine.runtime.script_engine import SafeScriptEngine
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import audit_record, deployment, job, outbox, process_instance, resource
from tests.bpmn_util import chain, definitions, flow, process
from tests.conftest import ManualClock

LIBRARY_REPR = "<Element"


# ------------------------------------------------------------------------------------------------ helpers
def _script(sid: str, text: str, fmt: str = "python") -> str:
    return (
        f'<bpmn:scriptTask id="{sid}" scriptFormat="{fmt}"><bpmn:script>{text}</bpmn:script>'
        "</bpmn:scriptTask>"
    )


def _user(tid: str, name: str = "") -> str:
    label = f' name="{name}"' if name else ""
    return f'<bpmn:userTask id="{tid}"{label} camunda:candidateGroups="officer"/>'


def _row(engine: Engine, instance_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        row = conn.execute(select(process_instance).where(process_instance.c.id == instance_id)).one()
    return dict(row._mapping)


def _instance(engine: Engine, instance_id: str) -> dict[str, Any]:
    with read_only(engine.db) as conn:
        return queries.instance(conn, instance_id)


def _open_task(engine: Engine, instance_id: str) -> dict[str, Any]:
    tasks = _instance(engine, instance_id)["tasks"]
    assert len(tasks) == 1, tasks
    return tasks[0]


def _loaded(engine: Engine, instance_id: str) -> Any:
    """The instance as the next command sees it: rebuilt from its stored snapshot."""
    row = _row(engine, instance_id)
    return engine.runtime.load(engine.model(row["definition_id"]), row["snapshot"])


def _deploy_one(engine: Engine, name: str, content: bytes) -> str:
    return str(engine.deploy([(name, content)])["definitions"][0]["key"])


# ==================================================================== 1. scripts are never eval/exec
def test_trap01_import_in_script_is_refused_at_deploy(engine: Engine, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    bpmn = process(
        "evil",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                _script("escape", f"x = __import__('os').system('touch {marker}')"),
                '<bpmn:endEvent id="end"/>',
                chain("start", "escape", "end"),
            ]
        ),
    )
    with pytest.raises(InvalidModel) as refused:
        engine.deploy([("evil.bpmn", bpmn)])
    assert "evil.bpmn" in refused.value.message
    assert refused.value.details["element_id"] == "escape"
    assert not marker.exists()
    with read_only(engine.db) as conn:
        assert conn.execute(select(func.count()).select_from(deployment)).scalar() == 0


@pytest.mark.parametrize(
    "text",
    [
        "x = ().__class__.__base__.__subclasses__()",
        "x = (lambda: 1)()",
        "import os",
        "x = open('/etc/passwd').read()",
        "x = eval('1')",
    ],
)
def test_trap01_sandbox_escapes_are_refused_at_deploy(sqlite_engine: Engine, text: str) -> None:
    bpmn = process(
        "escape",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                _script("s", text),
                '<bpmn:endEvent id="end"/>',
                chain("start", "s", "end"),
            ]
        ),
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("escape.bpmn", bpmn)])
    assert refused.value.details["element_id"] == "s"


def test_trap01_escape_in_a_condition_is_refused_at_deploy(sqlite_engine: Engine) -> None:
    bpmn = process(
        "cond",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:exclusiveGateway id="gw" default="no"/>',
                '<bpmn:endEvent id="yes_end"/>',
                '<bpmn:endEvent id="no_end"/>',
                flow("f0", "start", "gw"),
                flow("yes", "gw", "yes_end", "__import__('os').getcwd() != ''"),
                flow("no", "gw", "no_end"),
            ]
        ),
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("cond.bpmn", bpmn)])
    assert refused.value.details["element_id"] == "gw"


def _grow_process() -> bytes:
    return process(
        "grow",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                _user("review"),
                _script("calc", "y = x * 2"),
                _script("grow_text", "s = 'a' * n"),
                _user("after"),
                '<bpmn:endEvent id="end"/>',
                chain("start", "review", "calc", "grow_text", "after", "end"),
            ]
        ),
    )


def test_trap01_runtime_unsafe_operation_becomes_an_incident(engine: Engine) -> None:
    key = _deploy_one(engine, "grow.bpmn", _grow_process())
    started = engine.start(key=key, variables={"x": 21, "n": 10**10})
    done = engine.complete(_open_task(engine, started["id"])["id"], {})
    assert done["state"] == "incident"
    assert done["incident"]["element_id"] == "grow_text"
    assert done["variables"]["y"] == 42  # the safe script before it ran
    assert "s" not in done["variables"]
    incident = _instance(engine, started["id"])["incidents"][0]
    assert incident["error_type"] == "UnsafeExpressionError"
    assert "NameError" not in incident["message"]


def test_trap01_script_engine_is_set_again_after_every_load(engine: Engine) -> None:
    key = _deploy_one(engine, "grow.bpmn", _grow_process())
    started = engine.start(key=key, variables={"x": 21, "n": 3})
    # The next command rebuilds the workflow from the stored snapshot: it runs with the safe engine again.
    reloaded = _loaded(engine, started["id"])
    assert type(reloaded.script_engine) is SafeScriptEngine
    for sub in reloaded.subprocesses.values():
        assert type(sub.script_engine) is SafeScriptEngine
    done = engine.complete(_open_task(engine, started["id"])["id"], {"x": 5})
    assert done["state"] == "running"
    assert done["variables"]["y"] == 10 and done["variables"]["s"] == "aaa"
    # ... and after another load the unsafe operation is still stopped, not executed.
    second = engine.start(key=key, variables={"x": 1, "n": 3})
    done = engine.complete(_open_task(engine, second["id"])["id"], {"n": 10**12})
    assert done["state"] == "incident" and "s" not in done["variables"]
    assert type(_loaded(engine, second["id"]).script_engine) is SafeScriptEngine


# ================================================================== 2. timers: bare ISO 8601, injected clock
def _timer_process(kind: str, value: str) -> bytes:
    return process(
        "wait_timer",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:intermediateCatchEvent id="wait"><bpmn:timerEventDefinition>'
                f"<bpmn:{kind}>{value}</bpmn:{kind}>"
                "</bpmn:timerEventDefinition></bpmn:intermediateCatchEvent>",
                _user("after"),
                '<bpmn:endEvent id="end"/>',
                chain("start", "wait", "after", "end"),
            ]
        ),
    )


def test_trap02_bare_duration_fires_when_the_injected_clock_says(engine: Engine, clock: ManualClock) -> None:
    # Decades before the wall clock: a timer reading datetime.now() would be long overdue.
    clock.set(datetime(2000, 1, 1, tzinfo=UTC))
    key = _deploy_one(engine, "timer.bpmn", _timer_process("timeDuration", "PT1S"))
    started = engine.start(key=key)
    assert started["activities"] == ["wait"]
    timers = _instance(engine, started["id"])["waiting_for"]["timers"]
    due = [datetime.fromisoformat(t["due_at"]) for t in timers]
    assert due == [datetime(2000, 1, 1, 0, 0, 1, tzinfo=UTC)]
    assert engine.fire_due_timers() == 0
    assert _instance(engine, started["id"])["activities"] == ["wait"]
    clock.advance(seconds=1)
    assert engine.fire_due_timers() == 1
    assert _instance(engine, started["id"])["activities"] == ["after"]


def test_trap02_bare_date_fires_when_the_injected_clock_says(engine: Engine, clock: ManualClock) -> None:
    key = _deploy_one(engine, "timer.bpmn", _timer_process("timeDate", "2099-01-01T00:00:00Z"))
    started = engine.start(key=key)
    clock.set(datetime(2098, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert engine.fire_due_timers() == 0
    # Long before the wall clock reaches 2099: only the injected clock can make it fire.
    clock.set(datetime(2099, 1, 1, tzinfo=UTC))
    assert engine.fire_due_timers() == 1
    assert _instance(engine, started["id"])["activities"] == ["after"]


def test_trap02_bare_cycle_and_boundary_duration_use_the_clock(engine: Engine, clock: ManualClock) -> None:
    bpmn = process(
        "boundary",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                _user("review"),
                '<bpmn:boundaryEvent id="late" attachedToRef="review"><bpmn:timerEventDefinition>'
                "<bpmn:timeDuration>P2D</bpmn:timeDuration></bpmn:timerEventDefinition></bpmn:boundaryEvent>",
                _user("escalated"),
                '<bpmn:endEvent id="end"/>',
                '<bpmn:endEvent id="end2"/>',
                chain("start", "review", "end"),
                flow("f_late", "late", "escalated"),
                flow("f_esc", "escalated", "end2"),
            ]
        ),
    )
    key = _deploy_one(engine, "boundary.bpmn", bpmn)
    started = engine.start(key=key)
    clock.advance(days=1, hours=23, minutes=59)
    assert engine.fire_due_timers() == 0
    clock.advance(minutes=1)
    assert engine.fire_due_timers() == 1
    assert _instance(engine, started["id"])["activities"] == ["escalated"]


@pytest.mark.parametrize(
    ("kind", "value"),
    [
        ("timeDate", "2099-13-01T00:00:00Z"),
        ("timeCycle", "R0/PT1M"),
        ("timeCycle", "0 0/5 * * * ?"),
        ("timeDuration", "PT1M + "),
    ],
)
def test_trap02_timer_value_is_checked_at_deploy(sqlite_engine: Engine, kind: str, value: str) -> None:
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("timer.bpmn", _timer_process(kind, value))])
    assert refused.value.details["element_id"] == "wait" and "timer" in refused.value.message


# ==================================================================== 3. correlation is strict
RECEIVER = process(
    "receiver",
    "\n".join(
        [
            '<bpmn:startEvent id="start"/>',
            '<bpmn:intermediateCatchEvent id="wait_reply"><bpmn:messageEventDefinition messageRef="reply"/>'
            "</bpmn:intermediateCatchEvent>",
            '<bpmn:endEvent id="end"/>',
            chain("start", "wait_reply", "end"),
        ]
    ),
    extra='<bpmn:message id="reply" name="reply" caseflow:correlationKeys="case_no"/>',
)

# The same receiver with a standard BPMN correlationProperty (the key is its id), not caseflow's attribute.
BPMN_RECEIVER = definitions(
    '<bpmn:message id="reply" name="reply"/>',
    '<bpmn:correlationProperty id="case_no" name="案件编号">'
    '<bpmn:correlationPropertyRetrievalExpression messageRef="reply">'
    "<bpmn:messagePath>case_no</bpmn:messagePath>"
    "</bpmn:correlationPropertyRetrievalExpression></bpmn:correlationProperty>",
    '<bpmn:process id="receiver" isExecutable="true"><bpmn:startEvent id="start"/>'
    '<bpmn:intermediateCatchEvent id="wait_reply"><bpmn:messageEventDefinition messageRef="reply"/>'
    '</bpmn:intermediateCatchEvent><bpmn:endEvent id="end"/>'
    + chain("start", "wait_reply", "end")
    + "</bpmn:process>",
)

RECEIVERS = [RECEIVER, BPMN_RECEIVER]
RECEIVER_IDS = ["caseflow-keys", "bpmn-correlationProperty"]


@pytest.mark.parametrize("model", RECEIVERS, ids=RECEIVER_IDS)
def test_trap03_first_message_with_a_wrong_key_is_not_accepted(engine: Engine, model: bytes) -> None:
    key = _deploy_one(engine, "receiver.bpmn", model)
    started = engine.start(key=key, variables={"case_no": "A-1"})
    before = _row(engine, started["id"])
    # The instance has no correlations yet: the library would take this first message whatever its key.
    with pytest.raises(MessageNotCorrelated):
        engine.correlate("reply", correlation_keys={"case_no": "B-2"}, variables={"verdict": "x"})
    assert _row(engine, started["id"]) == before
    done = engine.correlate("reply", correlation_keys={"case_no": "A-1"}, variables={"verdict": "ok"})
    assert [(i["id"], i["state"]) for i in done["instances"]] == [(started["id"], "completed")]
    assert done["instances"][0]["variables"]["verdict"] == "ok"


@pytest.mark.parametrize("model", RECEIVERS, ids=RECEIVER_IDS)
def test_trap03_payload_without_the_key_leaves_the_stored_instance_untouched(
    engine: Engine, model: bytes
) -> None:
    key = _deploy_one(engine, "receiver.bpmn", model)
    started = engine.start(key=key, variables={"case_no": "A-1"})
    before = _row(engine, started["id"])
    for keys in (None, {}, {"other": "A-1"}):
        with pytest.raises(MessageNotCorrelated):  # never a NameError, never a half-delivered message
            engine.correlate("reply", correlation_keys=keys, variables={"verdict": "x"})
    assert _row(engine, started["id"]) == before
    done = engine.correlate("reply", correlation_keys={"case_no": "A-1"})
    assert done["instances"][0]["state"] == "completed"


def test_trap03_a_receiver_without_its_key_catches_nothing(engine: Engine) -> None:
    key = _deploy_one(engine, "receiver.bpmn", RECEIVER)
    keyless = engine.start(key=key)  # no case_no: its subscription cannot match anything
    keyed = engine.start(key=key, variables={"case_no": "A-1"})
    before = _row(engine, keyless["id"])
    done = engine.correlate("reply", correlation_keys={"case_no": "A-1"})
    assert [i["id"] for i in done["instances"]] == [keyed["id"]]
    with pytest.raises(MessageNotCorrelated):
        engine.correlate("reply")
    assert _row(engine, keyless["id"]) == before


def test_trap03_sender_missing_its_key_is_an_incident_not_a_name_error(engine: Engine) -> None:
    sender = process(
        "sender",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:intermediateThrowEvent id="send_reply"><bpmn:messageEventDefinition messageRef="reply"/>'
                "</bpmn:intermediateThrowEvent>",
                '<bpmn:endEvent id="end"/>',
                chain("start", "send_reply", "end"),
            ]
        ),
        extra='<bpmn:message id="reply" name="reply" caseflow:correlationKeys="case_no"/>',
    )
    _deploy_one(engine, "receiver.bpmn", RECEIVER)
    _deploy_one(engine, "sender.bpmn", sender)
    receiver = engine.start(key="receiver", variables={"case_no": "A-1"})
    before = _row(engine, receiver["id"])
    sent = engine.start(key="sender", variables={"unrelated": 1})
    assert sent["state"] == "incident"
    assert sent["incident"]["element_id"] == "send_reply"
    incident = _instance(engine, sent["id"])["incidents"][0]
    assert incident["error_type"] != "NameError" and "case_no" in incident["message"]
    assert engine.relay_outbox(engine.receive) == 0
    assert _row(engine, receiver["id"]) == before


# ================================================================= 4. throws carry only the declared payload
def _sender(payload: str | None) -> bytes:
    attribute = f' caseflow:payload="{payload}"' if payload is not None else ""
    return process(
        "sender",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                f'<bpmn:intermediateThrowEvent id="send_reply"{attribute}>'
                '<bpmn:messageEventDefinition messageRef="reply"/>'
                "</bpmn:intermediateThrowEvent>",
                '<bpmn:endEvent id="end"/>',
                chain("start", "send_reply", "end"),
            ]
        ),
        extra='<bpmn:message id="reply" name="reply" caseflow:correlationKeys="case_no"/>',
    )


def _outbox_variables(engine: Engine) -> list[dict[str, Any]]:
    with read_only(engine.db) as conn:
        return [r.envelope["payload"] for r in conn.execute(select(outbox).order_by(outbox.c.id))]


def test_trap04_throw_copies_only_the_declared_payload(engine: Engine) -> None:
    _deploy_one(engine, "receiver.bpmn", RECEIVER)
    _deploy_one(engine, "sender.bpmn", _sender("case_no, summary=clue_summary"))
    receiver = engine.start(key="receiver", variables={"case_no": "A-1"})
    engine.start(key="sender", variables={"case_no": "A-1", "clue_summary": "s", "informant": "secret name"})
    assert _outbox_variables(engine) == [{"case_no": "A-1", "summary": "s"}]
    assert engine.relay_outbox(engine.receive) == 1
    caught = _instance(engine, receiver["id"])
    assert caught["state"] == "completed"
    assert caught["variables"] == {"case_no": "A-1", "summary": "s"}
    assert "secret name" not in str(caught)


def test_trap04_throw_without_payload_carries_no_variables(engine: Engine) -> None:
    _deploy_one(engine, "receiver.bpmn", RECEIVER)
    _deploy_one(engine, "sender.bpmn", _sender(None))
    receiver = engine.start(key="receiver", variables={"case_no": "A-1"})
    engine.start(key="sender", variables={"case_no": "A-1", "informant": "secret name"})
    assert _outbox_variables(engine) == [{}]
    engine.relay_outbox(engine.receive)
    assert _instance(engine, receiver["id"])["variables"] == {"case_no": "A-1"}


# ==================================================================== 5. a plain serviceTask saves and loads
PLAIN_SERVICE = process(
    "plain_service",
    "\n".join(
        [
            '<bpmn:startEvent id="start"/>',
            '<bpmn:serviceTask id="lookup" name="查询"/>',
            _user("after"),
            '<bpmn:endEvent id="end"/>',
            chain("start", "lookup", "after", "end"),
        ]
    ),
)


def test_trap05_plain_service_task_instance_saves_and_loads(engine: Engine) -> None:
    key = _deploy_one(engine, "service.bpmn", PLAIN_SERVICE)
    started = engine.start(key=key, variables={"case_no": "A-1"})
    assert started["state"] == "running" and started["activities"] == ["lookup"]
    reloaded = _loaded(engine, started["id"])
    waiting = [t for t in reloaded.get_tasks() if getattr(t.task_spec, "bpmn_id", None) == "lookup"]
    assert [t.state for t in waiting] == [TaskState.STARTED]
    with read_only(engine.db) as conn:
        jobs = conn.execute(select(job).where(job.c.instance_id == started["id"])).all()
    assert [(j.element_id, j.topic) for j in jobs] == [("lookup", "lookup")]
    done = engine.complete_job(jobs[0].id, {"found": True})
    assert done["state"] == "running" and done["activities"] == ["after"]
    assert done["variables"] == {"case_no": "A-1", "found": True}


def test_trap05_runtime_dump_and_load_of_a_waiting_service_task(engine: Engine) -> None:
    key = _deploy_one(engine, "service.bpmn", PLAIN_SERVICE)
    definition_id = engine.start(key=key)["definition_id"]
    model = engine.model(definition_id)
    runtime = engine.runtime
    workflow = runtime.new(model, {"case_no": "A-1"})
    runtime.run(workflow)
    jobs = runtime.project(workflow).jobs
    text = runtime.dump(workflow)
    again = runtime.load(model, text)
    assert runtime.dump(again) == text
    runtime.complete_job(again, jobs[0].task_id, {"found": 1})
    assert [t.element_id for t in runtime.project(again).user_tasks] == ["after"]


# ==================================================================== 6. service errors keep the real error
def test_trap06_service_errors_are_reported_with_the_real_error(engine: Engine) -> None:
    key = _deploy_one(engine, "service.bpmn", PLAIN_SERVICE)
    started = engine.start(key=key)
    with read_only(engine.db) as conn:
        job_id = conn.execute(select(job.c.id).where(job.c.instance_id == started["id"])).scalar_one()

    def ledger(variables: dict[str, Any]) -> dict[str, Any]:
        raise ConnectionError("ledger offline at 10.0.0.7")

    for _ in range(engine.config.job_retries):
        failed = engine.run_job(job_id, ledger)
    assert failed["retries"] == 0 and failed["incident_id"]
    instance = _instance(engine, started["id"])
    assert instance["state"] == "incident"
    [incident] = instance["incidents"]
    assert incident["message"] == "ConnectionError: ledger offline at 10.0.0.7"
    assert "NameError" not in incident["message"]


def test_trap06_script_engine_service_call_is_a_clear_error(engine: Engine) -> None:
    key = _deploy_one(engine, "service.bpmn", PLAIN_SERVICE)
    model = engine.model(engine.start(key=key)["definition_id"])
    workflow = engine.runtime.new(model, {})
    task = workflow.get_tasks()[0]
    with pytest.raises(Exception) as raised:
        workflow.script_engine.call_service(task, operation_name="lookup")
    assert not isinstance(raised.value, NameError)
    assert "service tasks are jobs" in str(raised.value)


# ==================================================================== 9. parser robustness
def test_trap09_message_without_name_uses_its_id(engine: Engine) -> None:
    bpmn = definitions(
        '<bpmn:message id="clue_reply"/>',
        '<bpmn:process id="p" isExecutable="true">'
        '<bpmn:startEvent id="start"/><bpmn:intermediateCatchEvent id="c">'
        '<bpmn:messageEventDefinition messageRef="clue_reply"/></bpmn:intermediateCatchEvent>'
        '<bpmn:endEvent id="end"/>' + chain("start", "c", "end") + "</bpmn:process>",
    )
    started = engine.start(key=_deploy_one(engine, "noname.bpmn", bpmn))
    assert [m["name"] for m in _instance(engine, started["id"])["waiting_for"]["messages"]] == ["clue_reply"]
    assert engine.correlate("clue_reply")["instances"][0]["state"] == "completed"


def test_trap09_message_ref_to_nothing_is_refused_clearly(sqlite_engine: Engine) -> None:
    bpmn = process(
        "p",
        '<bpmn:startEvent id="start"/><bpmn:intermediateCatchEvent id="c">'
        '<bpmn:messageEventDefinition messageRef="missing"/></bpmn:intermediateCatchEvent>'
        '<bpmn:endEvent id="end"/>' + chain("start", "c", "end"),
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("dangling.bpmn", bpmn)])
    assert "missing" in refused.value.message and refused.value.details["element_id"] == "c"


@pytest.mark.parametrize(
    "body",
    [
        '<bpmn:task id="a"/><bpmn:task id="b"/>'
        + flow("f1", "start", "a")
        + flow("f2", "a", "b")
        + flow("f3", "b", "a"),
        '<bpmn:userTask id="a"/>' + flow("f1", "start", "a") + flow("f2", "a", "a"),
    ],
    ids=["two-tasks", "self-loop"],
)
def test_trap09_loop_without_gateway_is_refused_naming_an_element(sqlite_engine: Engine, body: str) -> None:
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("loop.bpmn", process("loop", '<bpmn:startEvent id="start"/>' + body))])
    assert "loop" in refused.value.message and "gateway" in refused.value.message
    assert refused.value.details["element_id"] == "a"
    assert refused.value.details["line"]


def test_trap09_loop_through_a_gateway_runs(engine: Engine) -> None:
    bpmn = process(
        "loop",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:exclusiveGateway id="merge"/>',
                _user("review"),
                '<bpmn:exclusiveGateway id="again" default="out"/>',
                '<bpmn:endEvent id="end"/>',
                flow("f1", "start", "merge"),
                flow("f2", "merge", "review"),
                flow("f3", "review", "again"),
                flow("back", "again", "merge", "redo == True"),
                flow("out", "again", "end"),
            ]
        ),
    )
    started = engine.start(key=_deploy_one(engine, "loop.bpmn", bpmn))
    again = engine.complete(_open_task(engine, started["id"])["id"], {"redo": True})
    assert again["activities"] == ["review"]
    assert engine.complete(_open_task(engine, started["id"])["id"], {"redo": False})["state"] == "completed"


def test_trap09_self_calling_call_activity_is_refused(sqlite_engine: Engine) -> None:
    bpmn = process(
        "selfie",
        '<bpmn:startEvent id="start"/>'
        '<bpmn:callActivity id="again" calledElement="selfie"/>'
        '<bpmn:endEvent id="end"/>' + chain("start", "again", "end"),
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("selfie.bpmn", bpmn)])
    assert refused.value.details["element_id"] == "again" and "calls" in refused.value.message


def test_trap09_mutually_recursive_call_activities_are_refused(sqlite_engine: Engine) -> None:
    bpmn = definitions(
        '<bpmn:process id="ping" isExecutable="true"><bpmn:startEvent id="s1"/>'
        '<bpmn:callActivity id="call_pong" calledElement="pong"/><bpmn:endEvent id="e1"/>'
        + chain("s1", "call_pong", "e1")
        + "</bpmn:process>",
        '<bpmn:process id="pong" isExecutable="true"><bpmn:startEvent id="s2"/>'
        '<bpmn:callActivity id="call_ping" calledElement="ping"/><bpmn:endEvent id="e2"/>'
        + chain("s2", "call_ping", "e2")
        + "</bpmn:process>",
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("pingpong.bpmn", bpmn)])
    assert refused.value.details["element_id"] in ("call_pong", "call_ping")


def test_trap09_comments_inside_script_task_and_script_are_fine(engine: Engine) -> None:
    bpmn = process(
        "commented",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:scriptTask id="calc" scriptFormat="python"><!-- set by the clerk -->'
                "<bpmn:script>total = 1 <!-- inline --> + 2\nlabel = 'ok'</bpmn:script><!-- trailing -->"
                "</bpmn:scriptTask>",
                '<bpmn:endEvent id="end"/>',
                chain("start", "calc", "end"),
            ]
        ),
    )
    done = engine.start(key=_deploy_one(engine, "commented.bpmn", bpmn))
    assert done["state"] == "completed" and done["variables"] == {"total": 3, "label": "ok"}


def _chinese_model(encoding: str) -> bytes:
    text = process(
        "clue_transfer",
        "\n".join(
            [
                '<bpmn:startEvent id="开始" name="收到线索"/>',
                _user("审核", name="审核线索"),
                '<bpmn:endEvent id="结束" name="移送完毕"/>',
                chain("开始", "审核", "结束"),
            ]
        ),
        name="线索移送",
    ).decode("utf-8")
    return text.replace('encoding="UTF-8"', f'encoding="{encoding}"').encode(encoding)


@pytest.mark.parametrize("encoding", ["GBK", "UTF-8", "GB18030"])
def test_trap09_non_ascii_names_decode_by_the_xml_declaration(
    engine: Engine, encoding: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The locale says ASCII: the library's add_bpmn_file would decode with it; the engine reads the XML.
    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: "ascii")
    content = _chinese_model(encoding)
    if encoding != "UTF-8":
        with pytest.raises(UnicodeDecodeError):
            content.decode("utf-8")
    deployed = engine.deploy([("线索移送.bpmn", content)])
    assert deployed["definitions"][0]["name"] == "线索移送"
    started = engine.start(key="clue_transfer")
    task = _open_task(engine, started["id"])
    assert (task["element_id"], task["name"]) == ("审核", "审核线索")


def test_trap09_errors_name_non_ascii_elements_and_never_print_library_reprs(sqlite_engine: Engine) -> None:
    content = (
        process(
            "bad",
            "\n".join(
                [
                    '<bpmn:startEvent id="开始"/>',
                    _script("计算", "import os"),
                    '<bpmn:endEvent id="结束"/>',
                    chain("开始", "计算", "结束"),
                ]
            ),
        )
        .decode()
        .replace('encoding="UTF-8"', 'encoding="GBK"')
        .encode("gbk")
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("坏.bpmn", content)])
    assert refused.value.details["element_id"] == "计算" and "坏.bpmn" in refused.value.message
    # An association to a data object that does not exist: the library's message embeds an lxml repr.
    dangling = process(
        "data",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                '<bpmn:task id="fill"><bpmn:dataOutputAssociation id="out"><bpmn:targetRef>nowhere</bpmn:targetRef>'
                "</bpmn:dataOutputAssociation></bpmn:task>",
                '<bpmn:endEvent id="end"/>',
                chain("start", "fill", "end"),
            ]
        ),
    )
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("data.bpmn", dangling)])
    assert LIBRARY_REPR not in refused.value.message and " at 0x" not in refused.value.message
    assert refused.value.details["element_id"] == "fill"


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"<not-closed",
        b'<?xml version="1.0"?><root/>',
        b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"/>',
        b'<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">'
        b'<bpmn:process id="p" isExecutable="true"/></bpmn:definitions>',
    ],
    ids=["empty", "not-well-formed", "not-bpmn", "no-process", "empty-process"],
)
def test_trap09_broken_files_are_invalid_models(sqlite_engine: Engine, content: bytes) -> None:
    with pytest.raises(InvalidModel) as refused:
        sqlite_engine.deploy([("broken.bpmn", content)])
    assert "broken.bpmn" in refused.value.message and LIBRARY_REPR not in refused.value.message


# ==================================================================== 10. XML hardening
PASSWD = Path("/etc/passwd")


def _entity_model(doctype: str, use: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + doctype + "\n"
        '<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d">'
        f'<bpmn:process id="p" isExecutable="true" name="{use}"><bpmn:startEvent id="start"/>'
        f'<bpmn:scriptTask id="s"><bpmn:script>leak = "{use}"</bpmn:script></bpmn:scriptTask>'
        '<bpmn:endEvent id="end"/>' + chain("start", "s", "end") + "</bpmn:process></bpmn:definitions>"
    ).encode()


XXE = _entity_model('<!DOCTYPE d [<!ENTITY e SYSTEM "file:///etc/passwd">]>', "&e;")
XXE_PARAMETER = _entity_model('<!DOCTYPE d [<!ENTITY % p SYSTEM "file:///etc/passwd"> %p;]>', "x")
EXTERNAL_DTD = _entity_model('<!DOCTYPE d SYSTEM "http://127.0.0.1:9/evil.dtd">', "x")
LAUGHS = _entity_model(
    '<!DOCTYPE d [<!ENTITY lol "lol">'
    + "".join(
        f'<!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">' for i in range(1, 10)
    )
    + "]>",
    "&lol9;",
)


@pytest.mark.parametrize(
    "content",
    [XXE, XXE_PARAMETER, EXTERNAL_DTD, LAUGHS],
    ids=["xxe", "parameter-entity", "external-dtd", "billion-laughs"],
)
def test_trap10_entities_and_dtds_are_refused(engine: Engine, content: bytes) -> None:
    began = time.monotonic()
    with pytest.raises(InvalidModel) as refused:
        engine.deploy([("entities.bpmn", content)])
    assert time.monotonic() - began < 5
    message = refused.value.message
    assert "entities.bpmn" in message and ("DOCTYPE" in message or "entit" in message)
    secret_lines = (
        [line for line in PASSWD.read_text().splitlines() if line.strip()] if PASSWD.exists() else []
    )
    with read_only(engine.db) as conn:
        stored = [
            *(str(r) for r in conn.execute(select(resource))),
            *(str(r) for r in conn.execute(select(deployment))),
            *(str(r) for r in conn.execute(select(audit_record))),
        ]
    assert stored == []  # nothing of a refused file is kept
    for line in secret_lines:
        assert line not in message and line not in str(refused.value.to_dict())
    assert "lollollol" not in message


# ==================================================================== 11. task data keeps its types
ROUND_TRIP = process(
    "round_trip",
    "\n".join(
        [
            '<bpmn:startEvent id="start"/>',
            _script(
                "make",
                "\n".join(
                    [
                        "opened = date(2026, 3, 2)",
                        "fine = Decimal('1234.50')",
                        "pair = (1, 'two')",
                        "tags = {'clue', 'urgent'}",
                        "meta = {'typename': 'not-a-converter', 'inner': [{'typename': 'deep'}], 'ok': True}",
                        "at = datetime(2026, 3, 2, 9, 30)",
                        "span = timedelta(days=2, seconds=5)",
                        "by_year = {2025: 'closed', (2026, 1): 'open'}",
                        "pages = range(1, 4)",
                    ]
                ),
            ),
            _user("review"),
            _script(
                "use", "doubled = fine * 2\nnext_day = opened + timedelta(days=1)\nhas_tag = 'clue' in tags"
            ),
            _user("after"),
            '<bpmn:endEvent id="end"/>',
            chain("start", "make", "review", "use", "after", "end"),
        ]
    ),
)

EXPECTED: dict[str, Any] = {
    "opened": date(2026, 3, 2),
    "fine": Decimal("1234.50"),
    "pair": (1, "two"),
    "tags": {"clue", "urgent"},
    "meta": {"typename": "not-a-converter", "inner": [{"typename": "deep"}], "ok": True},
    "at": datetime(2026, 3, 2, 9, 30),
    "span": timedelta(days=2, seconds=5),
    "by_year": {2025: "closed", (2026, 1): "open"},
    "pages": range(1, 4),
}


def _typed_variables(engine: Engine, instance_id: str) -> dict[str, Any]:
    return dict(engine.runtime.variables(_loaded(engine, instance_id)))


def _assert_typed(variables: dict[str, Any], expected: dict[str, Any]) -> None:
    for name, value in expected.items():
        assert variables[name] == value, name
        assert type(variables[name]) is type(value), name


def test_trap11_task_data_types_survive_start_reload_complete(engine: Engine) -> None:
    try:
        key = _deploy_one(engine, "round_trip.bpmn", ROUND_TRIP)
    except InvalidModel as exc:  # pragma: no cover - the evaluator must allow these constructors
        pytest.fail(f"the round-trip script was refused: {exc.message}")
    started = engine.start(key=key)
    assert started["state"] == "running", started["incident"]
    _assert_typed(_typed_variables(engine, started["id"]), EXPECTED)
    # The JSON view (projection, API) is plain JSON; the snapshot keeps the types.
    assert started["variables"]["opened"] == "2026-03-02" and started["variables"]["fine"] == "1234.50"
    assert sorted(started["variables"]["tags"]) == ["clue", "urgent"]
    engine.complete(_open_task(engine, started["id"])["id"], {"note": "checked"})
    after = _typed_variables(engine, started["id"])
    _assert_typed(
        after,
        {
            **EXPECTED,
            "doubled": Decimal("2469.00"),
            "next_day": date(2026, 3, 3),
            "has_tag": True,
            "note": "checked",
        },
    )
    done = engine.complete(_open_task(engine, started["id"])["id"], {})
    assert done["state"] == "completed"
    _assert_typed(_typed_variables(engine, started["id"]), EXPECTED)


def test_trap11_runtime_round_trip_of_every_type(clock: ManualClock) -> None:
    from engine.definitions.compiler import Checkers, compile_resources
    from engine.lang.expressions import Evaluator

    checker = Evaluator()
    one = process(
        "one",
        '<bpmn:startEvent id="start"/>'
        + _user("review")
        + '<bpmn:endEvent id="end"/>'
        + chain("start", "review", "end"),
    )
    compiled = compile_resources(
        [("one.bpmn", one)], Checkers(expression=checker.check, script=checker.check_script)
    )
    model = compiled.processes["one"]
    runtime = Runtime(clock, UTC)
    values = {
        **EXPECTED,
        "mixed": [1, (2, 3), {4}],
        "nested": {"typename": {"typename": "x"}},
        "span": timedelta(days=2),
    }
    workflow = runtime.new(model, dict(values))
    runtime.run(workflow)
    text = runtime.dump(workflow)
    again = runtime.load(model, text)
    _assert_typed(runtime.variables(again), values)
    [task] = runtime.project(again).user_tasks
    runtime.complete_user_task(again, task.id, {"when": date(2027, 1, 1)})
    final = runtime.load(model, runtime.dump(again))
    assert final.is_completed()
    _assert_typed(runtime.variables(final), {**values, "when": date(2027, 1, 1)})


def test_trap11_timezone_and_clock_helpers_in_scripts(engine: Engine, clock: ManualClock) -> None:
    bpmn = process(
        "clocked",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                _script("stamp", "stamped = now()"),
                _user("review"),
                '<bpmn:endEvent id="end"/>',
                chain("start", "stamp", "review", "end"),
            ]
        ),
    )
    started = engine.start(key=_deploy_one(engine, "clocked.bpmn", bpmn))
    stamped = _typed_variables(engine, started["id"])["stamped"]
    assert stamped == clock() and isinstance(stamped, datetime)


def test_trap11_non_finite_numbers_from_scripts_are_stored(engine: Engine) -> None:
    """JSON has no NaN/Infinity (PostgreSQL's json type refuses them): the snapshot keeps them, the JSON view
    spells them out, and the command does not fail."""
    bpmn = process(
        "odd_numbers",
        "\n".join(
            [
                '<bpmn:startEvent id="start"/>',
                _script("calc", "ratio = float('nan')\nlimit = float('inf')"),
                _user("review"),
                '<bpmn:endEvent id="end"/>',
                chain("start", "calc", "review", "end"),
            ]
        ),
    )
    started = engine.start(key=_deploy_one(engine, "odd.bpmn", bpmn))
    assert started["state"] == "running"
    assert started["variables"] == {"ratio": "nan", "limit": "inf"}
    typed = _typed_variables(engine, started["id"])
    assert typed["limit"] == float("inf") and typed["ratio"] != typed["ratio"]
