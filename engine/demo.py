"""``caseflow demo``: a realistic batch of cases through the district's five processes on an accelerated clock.

The demo builds a throw-away engine (its own SQLite file unless a database URL is given) with the demo users,
deploys the bundled models and starts a batch of cases for each process. It then plays the district's staff and
the external systems, round after round:

- staff claim and complete the open tasks as users of the directory who may act on them (candidate group and
  ``caseflow:requires``), filling each form with plausible values; decisions are mostly positive, so most
  cases take the main path and some take the refusal, objection or hearing paths;
- the police, the procuratorate and the discipline commission answer what the cases wait for, after a day or two
  of demo time, through the same envelope checks as the in-process transport (signed with their keys);
- due timers fire and messages between the district's own processes are delivered;
- when nothing is left to do at this moment, the clock moves forward.

Some cases are *tardy*: their desks leave tasks waiting for days, so statutory deadlines pass and supervision
(督办) tasks appear. The clock starts on Monday 2026-09-28, so deadlines run across the National Day holiday.

Everything goes through the engine's commands, as the API would drive them; the demo only decides what the
people and the external systems do. At the end it prints a summary table and each case's trail.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any, TextIO

from sqlalchemy import select

from adapters.envelope import build as build_envelope
from engine.directory import SYSTEM, Directory
from engine.errors import CaseflowError
from engine.store import queries
from engine.store.db import read_only
from engine.store.tables import message_subscription, process_instance, task

START = datetime(2026, 9, 28, 1, 0, tzinfo=UTC)  # Monday 09:00 in 湖滨区, before the National Day holiday
PROCESSES = (
    "clue_transfer",
    "criminal_transfer",
    "discipline_clue_transfer",
    "approval_supervision_penalty",
    "jurisdiction_dispute",
)
DEPARTMENTS = ("market_regulation", "urban_management", "ecology_environment")
ENTERPRISES = ("三门峡某食品经营有限公司", "湖滨区某建材商行", "某餐饮管理有限公司", "某物流运输有限公司")


class DemoClock:
    """The engine's clock during the demo: it moves only when the demo says so."""

    def __init__(self, start: datetime = START) -> None:
        self.current = start

    def __call__(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta) -> None:
        self.current += delta


@dataclass
class DemoCase:
    process: str
    business_key: str
    variables: dict[str, Any]
    tardy: bool
    instance_id: str | None = None
    state: str = "planned"
    steps: int = 0
    escalations: int = 0
    replies: int = 0
    problems: list[str] = field(default_factory=list)


def plan_cases(per_process: int, rng: random.Random, tardy_share: float = 0.3) -> list[DemoCase]:
    """Start variables for each process, as the registering desk would enter them."""
    cases: list[DemoCase] = []
    for p_index, process in enumerate(PROCESSES):
        for n in range(1, per_process + 1):
            case_no = f"HB-2026-{p_index + 1}{n:03d}"
            sender = DEPARTMENTS[(n - 1) % len(DEPARTMENTS)]
            receiver = DEPARTMENTS[n % len(DEPARTMENTS)]
            variables: dict[str, Any] = {"case_no": case_no}
            if process == "approval_supervision_penalty":
                variables.update(
                    enterprise=rng.choice(ENTERPRISES),
                    credit_risk_class=rng.choice("ABCD"),
                    supervising_agency=sender,
                )
            elif process == "jurisdiction_dispute":
                variables.update(
                    sender_agency=sender,
                    receiver_agency=receiver,
                    objection_reason="该违法行为不属本机关职责",
                )
            else:
                variables["sender_agency"] = sender
            cases.append(DemoCase(process, case_no, variables, tardy=rng.random() < tardy_share))
    return cases


@dataclass(frozen=True)
class Reply:
    """What an external system answers to a message a case waits for."""

    sender: str
    weight: float
    payload: Callable[[random.Random, str], dict[str, Any]]


REPLIES: dict[str, Reply] = {
    "police_receipt": Reply("public_security", 8, lambda r, n: {"receipt_no": f"回执-{n}"}),
    "police_not_competent": Reply(
        "public_security",
        1,
        lambda r, n: {"passed_to": "三门峡市公安局经侦支队", "pass_on_reason": "案件属市局管辖"},
    ),
    "police_materials_incomplete": Reply(
        "public_security", 1, lambda r, n: {"missing_materials": "涉案物品检验报告"}
    ),
    "police_filing_decision": Reply(
        "public_security",
        1,
        lambda r, n: (
            {"filed": True, "filing_notice_no": f"立案-{n}"}
            if r.random() < 0.7
            else {"filed": False, "not_filed_reasons": "现有证据不足以证明有犯罪事实"}
        ),
    ),
    "police_reconsideration_decision": Reply(
        "public_security",
        1,
        lambda r, n: {
            "reconsideration_filed": r.random() < 0.5,
            "reconsideration_decision_no": f"复议-{n}",
            "reconsideration_reasons": "经复议，维持不予立案决定",
        },
    ),
    "procuratorate_supervision_result": Reply(
        "procuratorate",
        1,
        lambda r, n: {"ordered_to_file": True, "supervision_opinion": "通知公安机关立案"},
    ),
    "police_case_closed_non_criminal": Reply(
        "public_security", 1, lambda r, n: {"closing_reasons": "涉案金额未达刑事立案标准"}
    ),
    "procuratorate_non_prosecution": Reply(
        "procuratorate", 1, lambda r, n: {"non_prosecution_decision_no": f"不诉-{n}"}
    ),
    "procuratorate_prosecuted": Reply("procuratorate", 2, lambda r, n: {"indictment_no": f"起诉-{n}"}),
    "discipline_clue_registered": Reply(
        "discipline_commission", 4, lambda r, n: {"registration_no": f"纪线-{n}"}
    ),
    "discipline_clue_passed_on": Reply(
        "discipline_commission",
        1,
        lambda r, n: {"passed_to": "三门峡市纪委监委", "pass_on_reason": "涉及市管干部"},
    ),
}


@dataclass
class FormField:
    id: str
    type: str
    required: bool
    options: list[str] = field(default_factory=list)
    label: str | None = None
    minimum: float | None = None
    maximum: float | None = None
    max_length: int | None = None
    readonly: bool = False
    current: Any = None


def fill_form(fields: list[FormField], rng: random.Random, serial: int, today: datetime) -> dict[str, Any]:
    """Plausible values for a form: decisions mostly positive, amounts spread over the DMN thresholds."""
    values: dict[str, Any] = {}
    for f in fields:
        if f.readonly:
            if f.current is not None:
                values[f.id] = f.current
            continue
        if f.type == "boolean":
            values[f.id] = rng.random() < 0.8
        elif f.type == "enum" and f.options:
            values[f.id] = rng.choice(f.options)
        elif f.type in ("long", "decimal"):
            value = rng.choice([2_000, 8_000, 30_000, 80_000, 150_000, 250_000])
            if f.minimum is not None:
                value = max(value, int(f.minimum))
            if f.maximum is not None:
                value = min(value, int(f.maximum))
            values[f.id] = value
        elif f.type == "date":
            values[f.id] = (today + timedelta(days=7)).date().isoformat()
        else:
            text = f"演示{f.label or f.id}{serial}"
            values[f.id] = text[: f.max_length] if f.max_length else text
    return values


def form_fields(engine: Any, task_id: str) -> list[FormField]:
    """The task's form as the demo needs it (empty when the task declares none)."""
    form = engine.task_form(task_id)
    result = []
    for f in form.get("fields", []):
        constraints = f.get("constraints") or {}
        result.append(
            FormField(
                id=f["id"],
                type=f.get("type", "string"),
                required=bool(f.get("required")),
                options=[o["id"] if isinstance(o, dict) else str(o) for o in f.get("options") or []],
                label=f.get("label"),
                minimum=_number(constraints.get("min")),
                maximum=_number(constraints.get("max")),
                max_length=_whole(constraints.get("maxlength")),
                readonly=bool(constraints.get("readonly")),
                current=f.get("value"),
            )
        )
    return result


def _number(value: Any) -> float | None:
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None  # a date bound, for instance: the demo's dates are near the clock anyway


def _whole(value: Any) -> int | None:
    number = _number(value)
    return int(number) if number is not None else None


class Demo:
    """One run of the demo over an application built by :func:`engine.app.build`."""

    def __init__(
        self,
        app: Any,
        clock: DemoClock,
        cases: list[DemoCase],
        *,
        rng: random.Random,
        step: timedelta = timedelta(hours=4),
        reply_after: timedelta = timedelta(days=1),
        tardy_delay: timedelta = timedelta(days=8),
        max_rounds: int = 5_000,
        give_up_after: timedelta = timedelta(days=45),
    ) -> None:
        self.app = app
        self.engine = app.engine
        self.directory: Directory | None = self.engine.directory
        self.clock = clock
        self.cases = cases
        self.rng = rng
        self.step = step
        self.reply_after = reply_after
        self.tardy_delay = tardy_delay
        self.max_rounds = max_rounds
        self.give_up_after = give_up_after
        self.rounds = 0
        self._stuck: set[str] = set()
        self._pending = 0  # tasks and external answers waiting for demo time to pass (not for a timer)
        self._serial = 0
        self._by_instance: dict[str, DemoCase] = {}
        self._seen: dict[str, datetime] = {}

    # ------------------------------------------------------------------ the loop
    def run(self) -> None:
        for case in self.cases:
            try:
                result = self.engine.start(
                    key=case.process, business_key=case.business_key, variables=case.variables, actor="demo"
                )
            except CaseflowError as exc:
                case.state = "not started"
                case.problems.append(exc.message)
                continue
            case.instance_id = result["id"]
            case.state = result["state"]
            self._by_instance[result["id"]] = case
        idle = timedelta(0)
        for rounds in range(1, self.max_rounds + 1):
            self.rounds = rounds
            worked = self._work_tasks() + self._answer_external() + self._settle()
            if not self._refresh_states():
                break
            if worked:
                idle = timedelta(0)
                continue
            if self._pending:
                if idle >= self.give_up_after:
                    break  # what is left waits for something no one in the demo will do
                self.clock.advance(self.step)
                idle += self.step
                continue
            due = self.engine.next_timer_due()
            if due is None:
                break  # nothing left that time could change
            self.clock.advance(max(self.step, due - self.clock()))  # only timers are left: go to the next
        self._refresh_states()

    def _settle(self) -> int:
        """Fire due timers and deliver messages until nothing more happens at this moment."""
        done = 0
        for _ in range(100):
            n = self.app.scheduler.run_once()
            if not n:
                break
            done += n
        return done

    def _refresh_states(self) -> int:
        """Update each case's state; returns how many are still open."""
        ids = [c.instance_id for c in self.cases if c.instance_id]
        with read_only(self.engine.db) as conn:
            rows = conn.execute(
                select(process_instance.c.id, process_instance.c.state).where(process_instance.c.id.in_(ids))
            ).all()
        states = {r.id: r.state for r in rows}
        for case in self.cases:
            if case.instance_id in states:
                case.state = states[case.instance_id]
        return sum(1 for c in self.cases if c.state in ("running", "incident"))

    def _order(self, instance_id: str) -> str:
        case = self._by_instance.get(instance_id)
        return case.business_key if case is not None else "~" + instance_id

    def _waited(self, key: str, case: DemoCase | None, delay: timedelta) -> bool:
        first = self._seen.setdefault(key, self.clock())
        wait = delay + (self.tardy_delay if case is not None and case.tardy else timedelta(0))
        return self.clock() - first >= wait

    def _work_tasks(self) -> int:
        with read_only(self.engine.db) as conn:
            open_tasks = queries.tasks(conn, viewer=SYSTEM, limit=1000)
            requires = {
                r.id: r.requires
                for r in conn.execute(select(task.c.id, task.c.requires).where(task.c.state == "open"))
            }
        # A stable order (not the random task ids), so that the same seed plays the same run.
        open_tasks.sort(key=lambda t: (self._order(t["instance_id"]), t["created_at"], t["element_id"]))
        worked = 0
        self._pending = sum(1 for t in open_tasks if t["id"] not in self._stuck)
        for t in open_tasks:
            case = self._by_instance.get(t["instance_id"])
            if t["id"] in self._stuck:
                continue
            if not self._waited(t["id"], case, timedelta(0)):
                continue  # this desk lets the case wait: deadlines run out
            if str(t.get("name") or "").startswith("司法局督办") and case is not None:
                case.escalations += 1
            if self._complete(t, list(requires.get(t["id"]) or []), case):
                worked += 1
        return worked

    def _complete(self, t: dict[str, Any], requires: list[str], case: DemoCase | None) -> bool:
        user = self.pick_user(t, requires)
        self._serial += 1
        fields = form_fields(self.engine, t["id"])
        for attempt in range(4):
            values = fill_form(fields, self.rng, self._serial * 10 + attempt, self.clock())
            try:
                if t.get("assignee") is None and attempt == 0:
                    self.engine.claim(t["id"], user, actor=user)
                self.engine.complete(t["id"], values, user=user, actor=user)
            except CaseflowError as exc:
                if attempt == 3 or exc.status in (401, 403, 404):
                    self._stuck.add(t["id"])  # reported once; no one in the demo can do this task
                    if case is not None:
                        case.problems.append(f"{t.get('name')}: {exc.message}")
                    return False
                continue
            if case is not None:
                case.steps += 1
            return True
        return False

    def pick_user(self, t: dict[str, Any], requires: list[str]) -> str:
        """A directory user who may act on the task (candidate group and requirements), else a stand-in."""
        groups = set(t.get("candidate_groups") or [])
        users = list(t.get("candidate_users") or [])
        if self.directory is not None:
            today = self.clock().date()
            for person in self.directory:
                if (person.id in users or person.groups & groups) and not person.missing(requires, today):
                    return person.id
        if users:
            return str(users[0])
        return "demo"

    def _answer_external(self) -> int:
        """The external systems answer what the cases wait for, after ``reply_after`` of demo time."""
        ids = list(self._by_instance)
        with read_only(self.engine.db) as conn:
            waiting = conn.execute(
                select(
                    message_subscription.c.instance_id,
                    message_subscription.c.element_id,
                    message_subscription.c.message_name,
                    process_instance.c.variables,
                )
                .join(process_instance, process_instance.c.id == message_subscription.c.instance_id)
                .where(
                    message_subscription.c.instance_id.in_(ids),
                    message_subscription.c.message_name.in_(list(REPLIES)),
                    process_instance.c.state == "running",
                )
            ).all()
        by_instance: dict[str, list[Any]] = {}
        for w in waiting:
            by_instance.setdefault(w.instance_id, []).append(w)
        answered = 0
        self._pending += len(by_instance)
        for instance_id, subs in sorted(by_instance.items(), key=lambda item: self._order(item[0])):
            subs.sort(key=lambda sub: (sub.element_id, sub.message_name))
            case = self._by_instance[instance_id]
            key = "reply:" + instance_id + ":" + ",".join(sorted(s.element_id for s in subs))
            if not self._waited(key, None, self.reply_after):
                continue
            names = sorted({s.message_name for s in subs})
            name = self.rng.choices(names, weights=[REPLIES[n].weight for n in names])[0]
            variables = subs[0].variables or {}
            self._reply(case, name, variables)
            self._seen.pop(key, None)
            answered += 1
        return answered

    def _reply(self, case: DemoCase, name: str, variables: dict[str, Any]) -> None:
        reply = REPLIES[name]
        envelope = build_envelope(
            name,
            sender=reply.sender,
            to=variables.get("sender_agency"),
            correlation_keys={"case_no": case.business_key},
            payload=reply.payload(self.rng, case.business_key),
            sent_at=self.clock(),
        )
        try:
            # Signed with the simulated agency's key and checked as any transfer, then correlated.
            self.app.transport.publish(envelope)
        except CaseflowError as exc:
            case.problems.append(f"{name}: {exc.message}")
            return
        except ValueError as exc:  # an envelope the checks refuse
            case.problems.append(f"{name}: {exc}")
            return
        case.replies += 1

    # ------------------------------------------------------------------ report
    def report(self, out: TextIO, timezone: tzinfo, trails: bool = True) -> None:
        w = out.write
        days = (self.clock() - START).total_seconds() / 86_400
        w(f"\n演示结束：{len(self.cases)} 件案件，模拟时间 {days:.1f} 天（{self.rounds} 轮）\n\n")
        w(f"{'案件编号':<12}{'流程':<30}{'状态':<11}{'办理步骤':>6}{'督办':>4}{'外部回复':>6}  {'拖延':<4}\n")
        w("-" * 86 + "\n")
        counts: dict[str, int] = {}
        for case in self.cases:
            counts[case.state] = counts.get(case.state, 0) + 1
            w(
                f"{case.business_key:<16}{case.process:<32}{case.state:<13}{case.steps:>10}"
                f"{case.escalations:>6}{case.replies:>10}  {'是' if case.tardy else '否'}\n"
            )
        w("-" * 86 + "\n")
        w("合计：" + "，".join(f"{k} {v}" for k, v in sorted(counts.items())) + "\n")
        if not trails:
            return
        with read_only(self.engine.db) as conn:
            for case in self.cases:
                if case.instance_id is None:
                    continue
                w(f"\n== {case.business_key}  {case.process} ==\n")
                names = self._element_names(conn, case.instance_id)
                for record in queries.audit_trail(conn, case.instance_id):
                    at = _when(record["at"]).astimezone(timezone)
                    element = record.get("element_id") or ""
                    label = names.get(element, element)
                    actor = record.get("actor") or "-"
                    w(f"  {at:%Y-%m-%d %H:%M}  {actor:<26} {record['command']:<10} {label}\n")
                for problem in case.problems:
                    w(f"  ! {problem}\n")

    def _element_names(self, conn: Any, instance_id: str) -> dict[str, str]:
        """Element id -> its Chinese name as drawn (tasks, events, subprocesses), for the trails."""
        definition_id = conn.execute(
            select(process_instance.c.definition_id).where(process_instance.c.id == instance_id)
        ).scalar()
        model = self.engine.model(definition_id, conn)
        names: dict[str, str] = {}
        for task_spec in model.task_specs():
            bpmn_id = getattr(task_spec, "bpmn_id", None)
            bpmn_name = getattr(task_spec, "bpmn_name", None)
            if bpmn_id and bpmn_name:
                names.setdefault(bpmn_id, f"{bpmn_name} ({bpmn_id})")
        return names


def _when(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def default_database() -> str:
    path = Path(tempfile.mkdtemp(prefix="caseflow-demo-")) / "demo.db"
    return f"sqlite:///{path}"
