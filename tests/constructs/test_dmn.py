"""Business rule tasks (camunda:decisionRef) with DMN decision tables deployed with the BPMN, via commands."""

from __future__ import annotations

import pytest

from engine.commands import Engine
from engine.errors import InvalidModel
from tests.constructs.support import audit_trail, deploy, fixture, instance, only_task, stable, tasks

PENALTY = ("行政处罚_规则.bpmn", "罚款裁量.dmn", "听证告知.dmn")
BAND = ("行政处罚_结果变量.bpmn", "罚款档次.dmn", "罚款裁量.dmn")


def test_one_deployment_holds_the_bpmn_and_its_decisions(engine: Engine) -> None:
    deployed = deploy(engine, *PENALTY)
    assert [d["key"] for d in deployed["definitions"]] == ["penalty_decision"]
    assert sorted(deployed["decisions"]) == ["fine_level", "hearing_notice"]


@pytest.mark.parametrize(
    ("amount", "repeat", "level", "hearing", "route"),
    [
        (20000, False, "major", True, "collective_discussion"),  # rule 1
        (5000, True, "major", False, "collective_discussion"),  # rules 2 and 3 match; FIRST takes rule 2
        (5000, False, "general", False, "chief_approve"),  # rule 3
        (200, False, "minor", False, "chief_approve"),  # rule 4 (all '-')
    ],
)
def test_first_hit_policy_result_is_visible_and_routes_the_gateway(
    engine: Engine, amount: int, repeat: bool, level: str, hearing: bool, route: str
) -> None:
    deploy(engine, *PENALTY)
    started = engine.start(
        key="penalty_decision",
        business_key=f"CF-{amount}-{repeat}",
        variables={"amount": amount, "repeat_offence": repeat},
    )
    iid = started["id"]
    stable(engine, iid)
    assert started["state"] == "running"
    assert started["variables"] == {
        "amount": amount,
        "repeat_offence": repeat,
        "level": level,
        "hearing": hearing,
    }
    assert started["activities"] == [route]
    assert instance(engine, iid)["variables"]["level"] == level


@pytest.mark.parametrize(
    ("amount", "repeat", "days", "text", "after"),
    [
        (20000, False, 5, "告知听证权利", ["notify_hearing"]),
        (5000, True, 3, "告知陈述申辩权利", []),  # "major","general" is a list: any of them matches
        (5000, False, 3, "告知陈述申辩权利", []),
        (200, False, 0, "当场处罚决定", []),
    ],
)
def test_unique_hit_policy_after_a_user_task(
    engine: Engine, amount: int, repeat: bool, days: int, text: str, after: list[str]
) -> None:
    deploy(engine, *PENALTY)
    iid = engine.start(key="penalty_decision", variables={"amount": amount, "repeat_offence": repeat})["id"]
    stable(engine, iid)
    done = engine.complete(only_task(engine, iid)["id"], {"opinion": "同意"}, user="reviewer")
    stable(engine, iid)
    assert done["variables"]["notice_days"] == days
    assert done["variables"]["notice_text"] == text
    assert done["activities"] == after
    assert done["state"] == ("running" if after else "completed")
    trail = audit_trail(engine, iid)
    assert [r["command"] for r in trail] == ["start", "complete"]
    assert trail[1]["details"]["changed"]["notice_days"] == days


def test_hearing_path_to_the_end(engine: Engine) -> None:
    deploy(engine, *PENALTY)
    iid = engine.start(key="penalty_decision", variables={"amount": 50000, "repeat_offence": True})["id"]
    stable(engine, iid)
    [discussion] = tasks(engine, candidate_group="legal_committee")
    engine.complete(discussion["id"], {"discussed": True}, user="committee.1")
    stable(engine, iid)
    [notify] = tasks(engine, candidate_group="officer")
    assert notify["instance_id"] == iid and notify["element_id"] == "notify_hearing"
    done = engine.complete(notify["id"], {"served": True}, user="officer.1")
    stable(engine, iid)
    assert done["state"] == "completed"
    assert done["variables"]["hearing"] is True


@pytest.mark.parametrize(
    ("amount", "region", "band", "route"),
    [
        (999, "市区", "low", "officer"),
        (1000, "市区", "medium", "officer"),  # [1000..10000[ includes 1000
        (9999, "郊区", "medium", "officer"),
        (10000, "市区", "high", "committee"),  # ... and excludes 10000
        (500, "特区", "special", "special_zone"),  # not("特区") keeps the first three rules out
    ],
)
def test_result_variable_single_entry_and_single_result(
    engine: Engine, amount: int, region: str, band: str, route: str
) -> None:
    deploy(engine, *BAND)
    started = engine.start(
        key="penalty_band", variables={"amount": amount, "region": region, "repeat_offence": False}
    )
    iid = started["id"]
    stable(engine, iid)
    assert started["incident"] is None
    variables = started["variables"]
    # camunda:resultVariable holds the result; the output columns do not become variables of their own.
    assert variables["band"] == band
    assert "result" not in variables and "level" not in variables
    assert set(variables["fine_result"]) == {"level", "hearing"}
    assert started["activities"] == [route]


def test_result_variable_routes_on_a_field_of_a_single_result(engine: Engine) -> None:
    deploy(engine, *BAND)
    # band 'medium', but a repeated offence of 5000 is 'major' in fine_level: ${fine_result.level == 'major'}.
    started = engine.start(
        key="penalty_band", variables={"amount": 5000, "region": "市区", "repeat_offence": True}
    )
    stable(engine, started["id"])
    assert started["variables"]["band"] == "medium"
    assert started["variables"]["fine_result"] == {"level": "major", "hearing": False}
    assert started["activities"] == ["committee"]


def _dmn(policy: str, extra: str = "") -> bytes:
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<definitions xmlns="https://www.omg.org/spec/DMN/20191111/MODEL/" id="d" name="d" namespace="x">
  <decision id="fine_band" name="档次">
    <decisionTable id="t" hitPolicy="{policy}"{extra}>
      <input id="i"><inputExpression id="ie" typeRef="integer"><text>amount</text></inputExpression></input>
      <output id="o" name="result" typeRef="string"/>
      <rule id="r1"><inputEntry id="r1i"><text>&gt;= 100</text></inputEntry>
        <outputEntry id="r1o"><text>"big"</text></outputEntry></rule>
      <rule id="r2"><inputEntry id="r2i"><text>&gt;= 1000</text></inputEntry>
        <outputEntry id="r2o"><text>"bigger"</text></outputEntry></rule>
    </decisionTable>
  </decision>
</definitions>""".encode()


def test_unique_table_with_two_matching_rules_is_an_incident(engine: Engine) -> None:
    engine.deploy([fixture("行政处罚_结果变量.bpmn"), ("档次.dmn", _dmn("UNIQUE")), fixture("罚款裁量.dmn")])
    ok = engine.start(
        key="penalty_band", variables={"amount": 500, "region": "市区", "repeat_offence": False}
    )
    stable(engine, ok["id"])
    assert ok["variables"]["band"] == "big"
    clash = engine.start(
        key="penalty_band", variables={"amount": 5000, "region": "市区", "repeat_offence": False}
    )
    stable(engine, clash["id"])
    assert clash["state"] == "incident"
    assert clash["incident"]["element_id"] == "decide_band"
    assert "UNIQUE" in clash["incident"]["message"] and "1, 2" in clash["incident"]["message"]


def test_collect_with_result_list_and_unsupported_hit_policies(engine: Engine) -> None:
    bpmn = fixture("行政处罚_结果变量.bpmn")[1].replace(
        b'camunda:mapDecisionResult="singleEntry"', b'camunda:mapDecisionResult="collectEntries"'
    )
    engine.deploy([("collect.bpmn", bpmn), ("档次.dmn", _dmn("COLLECT")), fixture("罚款裁量.dmn")])
    started = engine.start(
        key="penalty_band", variables={"amount": 5000, "region": "市区", "repeat_offence": False}
    )
    stable(engine, started["id"])
    assert started["variables"]["band"] == ["big", "bigger"]

    for policy, extra in (("RULE ORDER", ""), ("COLLECT", ' aggregation="SUM"'), ("PRIORITY", "")):
        with pytest.raises(InvalidModel) as refused:
            engine.deploy(
                [("collect.bpmn", bpmn), ("档次.dmn", _dmn(policy, extra)), fixture("罚款裁量.dmn")]
            )
        assert "hit policy" in refused.value.message
        assert refused.value.details["element_id"] == "decide_band"


def test_a_changed_decision_table_makes_a_new_version_and_an_unchanged_one_nothing(engine: Engine) -> None:
    first = deploy(engine, *PENALTY)
    assert deploy(engine, *PENALTY)["created"] is False
    bpmn, (dmn_name, dmn), hearing = (fixture(name) for name in PENALTY)
    stricter = dmn.replace(b"&gt;= 10000", b"&gt;= 1000", 1)
    assert stricter != dmn, "the fixture's threshold moved; update this test"
    changed = engine.deploy([bpmn, (dmn_name, stricter), hearing])
    assert changed["created"] is True
    assert [d["version"] for d in changed["definitions"]] == [first["definitions"][0]["version"] + 1]
    started = engine.start(key="penalty_decision", variables={"amount": 5000, "repeat_offence": False})
    assert started["variables"]["level"] == "major"  # the new threshold, compiled into version 2
