"""Need-to-know for discipline clues (enforcement rules A3; issue 4 acceptance).

Given a confidential process (caseflow:confidential="true"): its instances and tasks stay out of general lists
and searches, do not exist for other agencies (404), show to those their tasks name and to the discipline
commission's case supervision, and every read of them is written to the audit trail. Its messages go only to
the discipline commission.
"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from engine.commands import Engine
from engine.directory import ANONYMOUS, SYSTEM, Directory, Viewer
from engine.errors import InvalidModel, NotFound
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import outbox, process_definition, process_instance
from tests.access.conftest import audit_commands, deploy, model, open_task
from tests.bpmn_util import process

CLUE = {"agency": "market_regulation", "case_no": "线索〔2026〕7号", "receiver": "discipline_commission"}


def start_clue(engine: Engine, **variables: Any) -> dict[str, Any]:
    deploy(engine, "discipline_clue.bpmn")
    return engine.start(
        key="discipline_clue",
        business_key="线索〔2026〕7号",
        variables={**CLUE, **variables},
        actor="zhaomin",
    )


def start_ordinary(engine: Engine) -> dict[str, Any]:
    deploy(engine, "enforcement_case.bpmn")
    return engine.start(key="enforcement_case", variables={"agency": "market_regulation"}, actor="zhaomin")


def task_ids(engine: Engine, viewer: Viewer | None, **filters: Any) -> set[str]:
    with read_only(engine.db) as conn:
        return {t["instance_id"] for t in queries.tasks(conn, viewer=viewer, **filters)}


def instance_ids(engine: Engine, viewer: Viewer | None, **filters: Any) -> set[str]:
    with read_only(engine.db) as conn:
        return {i["id"] for i in queries.instances(conn, viewer=viewer, **filters)}


def test_confidential_is_recorded_on_definition_instance_and_task(guarded: Engine) -> None:
    clue = start_clue(guarded)
    with read_only(guarded.db) as conn:
        assert conn.execute(
            select(process_definition.c.confidential).where(process_definition.c.key == "discipline_clue")
        ).scalar()
        assert conn.execute(
            select(process_instance.c.confidential).where(process_instance.c.id == clue["id"])
        ).scalar()
    assert open_task(guarded, clue["id"], "register_clue")["confidential"] is True


def test_hidden_from_general_lists_and_searches(guarded: Engine, directory: Directory) -> None:
    clue = start_clue(guarded)
    ordinary = start_ordinary(guarded)
    # No viewer (an engine test, a request without a user) and other agencies: only the ordinary case.
    for viewer in (None, ANONYMOUS, directory.viewer("sunlei"), directory.viewer("chenjing")):
        assert task_ids(guarded, viewer) == {ordinary["id"]}
        assert instance_ids(guarded, viewer) == {ordinary["id"]}
        # Searching for it by business key, by its group or by its instance finds nothing either.
        assert instance_ids(guarded, viewer, business_key="线索〔2026〕7号") == set()
        assert task_ids(guarded, viewer, candidate_group="market_regulation:officer") == {ordinary["id"]}
        assert task_ids(guarded, viewer, instance_id=clue["id"]) == set()
    # The officers its task is offered to, case supervision and the engine itself see it.
    for viewer in (directory.viewer("zhangwei"), directory.viewer("caoyun"), SYSTEM):
        assert task_ids(guarded, viewer) == {ordinary["id"], clue["id"]}
        assert instance_ids(guarded, viewer) == {ordinary["id"], clue["id"]}


def test_other_agencies_get_404_and_case_supervision_reads_with_a_trace(
    guarded: Engine, directory: Directory
) -> None:
    clue = start_clue(guarded)
    task = open_task(guarded, clue["id"], "register_clue")
    outsider = directory.viewer("sunlei")  # 区城市管理局
    with pytest.raises(NotFound, match="does not exist"):
        guarded.read_instance(clue["id"], outsider)
    with pytest.raises(NotFound):
        guarded.read_audit(clue["id"], outsider)
    with pytest.raises(NotFound):
        guarded.read_task(task["id"], outsider)
    with pytest.raises(NotFound):
        guarded.ensure_visible(clue["id"], outsider)
    assert ("read", "sunlei") not in audit_commands(guarded, clue["id"])

    supervision = directory.viewer("caoyun")
    detail = guarded.read_instance(clue["id"], supervision)
    assert detail["variables"]["case_no"] == "线索〔2026〕7号"
    trail = guarded.read_audit(clue["id"], supervision)
    assert [(r["command"], r["actor"]) for r in trail[-2:]] == [("read", "caoyun"), ("read", "caoyun")]
    assert trail[-1]["details"] == {"what": "audit", "agency": "discipline_commission"}
    guarded.read_task(task["id"], directory.viewer("zhangwei"))
    assert audit_commands(guarded, clue["id"])[-1] == ("read", "zhangwei")


def test_reading_an_ordinary_instance_writes_nothing(guarded: Engine, directory: Directory) -> None:
    ordinary = start_ordinary(guarded)
    before = audit_commands(guarded, ordinary["id"])
    guarded.read_instance(ordinary["id"], directory.viewer("sunlei"))
    guarded.read_audit(ordinary["id"], ANONYMOUS)
    assert audit_commands(guarded, ordinary["id"]) == before


def test_an_outsider_cannot_claim_what_does_not_exist_for_them(guarded: Engine) -> None:
    clue = start_clue(guarded)
    task = open_task(guarded, clue["id"], "register_clue")
    with pytest.raises(NotFound):
        guarded.claim(task["id"], "sunlei")
    assert guarded.claim(task["id"], "zhangwei")["assignee"] == "zhangwei"


def test_the_clue_goes_only_to_the_discipline_commission(guarded: Engine, directory: Directory) -> None:
    clue = start_clue(guarded)
    after = guarded.complete(open_task(guarded, clue["id"], "register_clue")["id"], {}, user="zhangwei")
    assert after["state"] == "running"
    with read_only(guarded.db) as conn:
        sent = conn.execute(select(outbox.c.target, outbox.c.envelope)).all()
    assert [(s.target, s.envelope["payload"]) for s in sent] == [
        ("discipline_commission", {"case_no": "线索〔2026〕7号"})
    ]
    # Case supervision registers it: the task is theirs, and the officer who sent it still sees the case.
    acknowledge = open_task(guarded, clue["id"], "acknowledge")
    assert guarded.claim(acknowledge["id"], "caoyun")["assignee"] == "caoyun"
    assert clue["id"] in instance_ids(guarded, directory.viewer("zhangwei"))


def test_a_computed_recipient_elsewhere_is_an_incident_and_nothing_is_sent(guarded: Engine) -> None:
    clue = start_clue(guarded, receiver="market_regulation")
    after = guarded.complete(open_task(guarded, clue["id"], "register_clue")["id"], {}, user="zhangwei")
    assert after["state"] == "incident"
    assert after["incident"]["element_id"] == "send_clue"
    assert "only to the discipline commission" in after["incident"]["message"]
    with read_only(guarded.db) as conn:
        assert conn.execute(select(outbox)).all() == []
        [incident] = queries.incidents(conn, viewer=SYSTEM)
        assert queries.incidents(conn) == []  # the incident of a confidential case is not listed generally
    retried = guarded.retry_incident(incident["id"], {"receiver": "discipline_commission"}, actor="caoyun")
    assert retried["instance"]["state"] == "running"
    with read_only(guarded.db) as conn:
        assert [r.target for r in conn.execute(select(outbox.c.target))] == ["discipline_commission"]


def test_deploy_refuses_a_confidential_process_messaging_another_agency(engine: Engine) -> None:
    with pytest.raises(InvalidModel) as refused:
        engine.deploy([model("confidential_leak.bpmn")])
    message = refused.value.message
    assert "element 'copy_to_market'" in message and "confidential_leak.bpmn" in message
    assert "only to the discipline commission, not to 'market_regulation'" in message


def test_deploy_refuses_a_confidential_throw_without_recipient(engine: Engine) -> None:
    xml = process(
        "no_recipient",
        '<bpmn:startEvent id="s"/>'
        '<bpmn:intermediateThrowEvent id="tell"><bpmn:messageEventDefinition messageRef="m"/>'
        "</bpmn:intermediateThrowEvent>"
        '<bpmn:endEvent id="e"/><bpmn:sequenceFlow id="f1" sourceRef="s" targetRef="tell"/>'
        '<bpmn:sequenceFlow id="f2" sourceRef="tell" targetRef="e"/>',
        extra='<bpmn:message id="m" name="tell"/>',
    ).replace(b'isExecutable="true"', b'isExecutable="true" caseflow:confidential="true"')
    with pytest.raises(InvalidModel, match="element 'tell'"):
        engine.deploy([("no_recipient.bpmn", xml)])
    # The same process, not confidential, deploys.
    engine.deploy([("open.bpmn", xml.replace(b' caseflow:confidential="true"', b""))])
