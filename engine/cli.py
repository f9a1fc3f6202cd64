"""The ``caseflow`` command."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from engine.errors import CaseflowError, InvalidVariables
from engine.settings import Settings, SettingsError


def _print(value: Any) -> None:
    print(json.dumps(value, ensure_ascii=False, indent=2, default=str))


def _variables(text: str | None, option: str = "--variables") -> dict[str, Any]:
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidVariables(f"{option} is not JSON: {exc}", field=option) from None
    if not isinstance(value, dict):
        raise InvalidVariables(f"{option} must be a JSON object", field=option)
    return value


def _app(settings: Settings, *, users: bool = False) -> Any:
    from engine.app import build, load_users

    return build(settings, directory=load_users(settings) if users else None)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    from engine.api.main import create_app
    from engine.app import deploy_directory

    app = _app(settings, users=True)
    deployed = deploy_directory(app.engine, settings.bpmn_dir)
    for d in deployed:
        for definition in d.get("definitions", []):
            logging.info("deployed %s", definition["id"])
    app.scheduler.start()
    if app.link is not None:
        app.link.start()
    api = create_app(app.engine)
    print(
        f"caseflow is serving on http://{args.host}:{args.port} (API docs at /docs, database "
        f"{settings.database_url})",
        flush=True,
    )
    try:
        uvicorn.run(api, host=args.host, port=args.port, log_level="info")
    finally:
        if app.link is not None:
            app.link.stop()
        app.scheduler.stop()
    return 0


def cmd_worker(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    app.scheduler.start()
    if app.link is not None:
        app.link.start()
    print("caseflow worker: firing timers and relaying messages (Ctrl+C to stop)", flush=True)
    stop.wait()
    if app.link is not None:
        app.link.stop()
    app.scheduler.stop()
    return 0


def _needs_broker(settings: Settings, what: str) -> str:
    if not settings.amqp_url:
        raise SettingsError(f"caseflow {what} needs CASEFLOW_AMQP_URL (the RabbitMQ broker)")
    return settings.amqp_url


def _until_signalled() -> threading.Event:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    return stop


def cmd_relay(args: argparse.Namespace, settings: Settings) -> int:
    _needs_broker(settings, "relay")
    app = _app(settings)
    stop = _until_signalled()
    app.link.start(relay=True, consume=False)
    print(f"caseflow relay: publishing the outbox to {app.link.names.exchange} (Ctrl+C to stop)", flush=True)
    stop.wait()
    app.link.stop()
    return 0


def cmd_topology_apply(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import amqp
    from adapters.agencies import AgencyError
    from adapters.agencies import load as load_agencies

    url = _needs_broker(settings, "topology apply")
    try:
        codes = load_agencies(settings.agencies_file).codes()
    except AgencyError as exc:
        raise SettingsError(str(exc)) from None
    names = amqp.Names(settings.amqp_prefix)
    try:
        queues = amqp.apply(url, names, codes)
    except amqp.BROKER_ERRORS as exc:
        raise CaseflowError(f"cannot declare the topology: {type(exc).__name__} {exc}") from None
    _print({"exchange": names.exchange, "dead_letter_exchange": names.dead_letter_exchange, "queues": queues})
    return 0


def cmd_topology_export(args: argparse.Namespace, settings: Settings) -> int:
    from adapters import amqp
    from adapters.agencies import AgencyError
    from adapters.agencies import load as load_agencies

    try:
        registry = load_agencies(settings.agencies_file)
    except AgencyError as exc:
        raise SettingsError(str(exc)) from None
    codes = registry.codes()
    passwords = amqp.generate_passwords(codes, args.passwords_dir) if args.passwords_dir else None
    data = amqp.definitions(
        amqp.Names(settings.amqp_prefix), codes, passwords=passwords, engine_codes=registry.district_codes()
    )
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {out} ({len(data['users'])} broker users, {len(data['queues'])} queues)", flush=True)
    return 0


def cmd_agency_sim(args: argparse.Namespace, settings: Settings) -> int:
    from adapters.agency_sim import simulate

    url = _needs_broker(settings, "agency-sim")
    stop = _until_signalled()
    simulate(
        args.agency,
        url,
        prefix=settings.amqp_prefix,
        agencies_file=settings.agencies_file,
        filing_delay=args.filing_delay,
        production=settings.environment == "production",
        stop=stop,
    )
    return 0


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    import dataclasses
    import random

    from engine.app import build, deploy_directory, load_users
    from engine.demo import Demo, DemoClock, default_database, plan_cases

    for noisy in ("alembic", "caseflow"):
        logging.getLogger(noisy).setLevel(logging.WARNING)  # the demo prints its own account
    url = args.database or default_database()
    settings = dataclasses.replace(settings, database_url=url, amqp_url=None)
    clock = DemoClock()
    app = build(settings, clock, directory=load_users(settings))
    deployed = deploy_directory(app.engine, settings.bpmn_dir)
    print(f"caseflow demo: {len(deployed)} models deployed, database {url}", flush=True)
    rng = random.Random(args.seed)
    demo = Demo(app, clock, plan_cases(args.cases, rng, args.tardy), rng=rng)
    demo.run()
    demo.report(sys.stdout, settings.tz, trails=not args.no_trails)
    return 0


def cmd_deploy(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    files = []
    for name in args.files:
        path = Path(name)
        if not path.is_file():
            raise CaseflowError(f"{name}: no such file", file=name)
        files.append((path.name, path.read_bytes()))
    _print(app.engine.deploy(files, name=args.name, source="cli", actor=args.user))
    return 0


def cmd_start(args: argparse.Namespace, settings: Settings) -> int:
    app = _app(settings)
    _print(
        app.engine.start(
            key=args.key,
            business_key=args.business_key,
            variables=_variables(args.variables),
            actor=args.user,
        )
    )
    return 0


def cmd_instances(args: argparse.Namespace, settings: Settings) -> int:
    from engine.store import queries
    from engine.store.db import read_only

    app = _app(settings, users=True)
    viewer = app.engine.viewer(args.user)
    with read_only(app.engine.db) as conn:
        _print(
            queries.instances(
                conn, key=args.key, business_key=args.business_key, state=args.state, viewer=viewer
            )
        )
    return 0


def cmd_tasks(args: argparse.Namespace, settings: Settings) -> int:
    from engine.store import queries
    from engine.store.db import read_only

    app = _app(settings, users=True)
    viewer = app.engine.viewer(args.user)
    with read_only(app.engine.db) as conn:
        _print(
            queries.tasks(
                conn,
                candidate_group=args.candidate_group,
                assignee=args.assignee,
                instance_id=args.instance_id,
                viewer=viewer,
            )
        )
    return 0


def cmd_claim(args: argparse.Namespace, settings: Settings) -> int:
    _print(_app(settings).engine.claim(args.task_id, args.user))
    return 0


def cmd_complete(args: argparse.Namespace, settings: Settings) -> int:
    _print(_app(settings).engine.complete(args.task_id, _variables(args.variables), user=args.user))
    return 0


def cmd_correlate(args: argparse.Namespace, settings: Settings) -> int:
    _print(
        _app(settings).engine.correlate(
            args.name,
            business_key=args.business_key,
            correlation_keys=_variables(args.keys, "--keys"),
            variables=_variables(args.variables),
            message_id=args.message_id,
            ttl_seconds=args.ttl,
            actor=args.user,
        )
    )
    return 0


def cmd_audit_verify(args: argparse.Namespace, settings: Settings) -> int:
    from engine.store import audit
    from engine.store.db import read_only

    app = _app(settings)
    with read_only(app.engine.db) as conn:
        checked, problems = audit.verify(conn, args.instance_id)
    _print({"ok": not problems, "records_checked": checked, "problems": [p.__dict__ for p in problems]})
    return 0 if not problems else 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="caseflow",
        description="caseflow: BPMN engine for inter-agency case "
        "transfer. Configuration comes from CASEFLOW_* environment variables.",
    )
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_text, description=help_text)
        sp.set_defaults(func=func)
        return sp

    s = add("serve", "run the API and the scheduler; deploys the models in bpmn/ on first start", cmd_serve)
    s.add_argument("--host", default=None, help="address to listen on (default CASEFLOW_HOST or 127.0.0.1)")
    s.add_argument("--port", type=int, default=None, help="port (default CASEFLOW_PORT or 8080)")
    add("worker", "run only the scheduler: timers, outbox relay, message expiry", cmd_worker)
    s = add(
        "demo",
        "run a batch of cases through the district's five processes on an accelerated clock and print "
        "a summary and each case's trail (uses its own throw-away database unless --database is given)",
        cmd_demo,
    )
    s.add_argument("--cases", type=int, default=3, help="cases per process (default 3)")
    s.add_argument("--seed", type=int, default=2026, help="random seed: the same seed gives the same run")
    s.add_argument("--tardy", type=float, default=0.3, help="share of cases whose desks let deadlines pass")
    s.add_argument("--database", help="database URL to keep the run in (default: a new SQLite file)")
    s.add_argument("--no-trails", action="store_true", help="print only the summary table")
    add("relay", "run only the outbox relay to RabbitMQ (needs CASEFLOW_AMQP_URL)", cmd_relay)
    t = add("topology", "the RabbitMQ topology of the agencies (agencies.yaml)", lambda *_: 2)
    tsub = t.add_subparsers(dest="topology_command", required=True, metavar="ACTION")
    ta = tsub.add_parser(
        "apply",
        help="declare the exchanges and every agency's inbox and dead-letter queue (idempotent)",
        description="declare the exchanges and every agency's inbox and dead-letter queue (idempotent)",
    )
    ta.set_defaults(func=cmd_topology_apply)
    te = tsub.add_parser(
        "export",
        help="write broker definitions with one user per agency (rabbitmqctl import_definitions)",
        description="write broker definitions with one user per agency (rabbitmqctl import_definitions)",
    )
    te.add_argument("--output", default="deployments/rabbitmq/definitions.json")
    te.add_argument(
        "--passwords-dir",
        help="generate a password per agency into DIR/<code>.password and put its hash in the definitions "
        "(default: empty hashes; set passwords with rabbitmqctl change_password)",
    )
    te.set_defaults(func=cmd_topology_export)
    s = add(
        "agency-sim", "run a simulated external agency system over RabbitMQ (demos, tests)", cmd_agency_sim
    )
    s.add_argument("agency", help="agency code, e.g. public_security")
    s.add_argument(
        "--filing-delay",
        type=float,
        default=5.0,
        help="seconds before public_security sends its filing decision",
    )
    s = add("deploy", "deploy BPMN/DMN files as one deployment", cmd_deploy)
    s.add_argument("files", nargs="+", metavar="FILE")
    s.add_argument("--name", help="deployment name")
    s.add_argument("--user", help="who deploys (audit)")
    s = add("start", "start an instance of the latest version of a process", cmd_start)
    s.add_argument("key")
    s.add_argument("--business-key")
    s.add_argument("--variables", help="JSON object")
    s.add_argument("--user", help="who starts (audit)")
    s = add("instances", "list process instances", cmd_instances)
    s.add_argument("--key")
    s.add_argument("--business-key")
    s.add_argument("--state", choices=["running", "completed", "cancelled", "incident"])
    s.add_argument("--user", help="who looks (confidential cases show only to whom they name)")
    s = add("tasks", "list open user tasks", cmd_tasks)
    s.add_argument("--candidate-group")
    s.add_argument("--assignee")
    s.add_argument("--instance-id")
    s.add_argument("--user", help="who looks (confidential cases show only to whom they name)")
    s = add("claim", "claim a user task", cmd_claim)
    s.add_argument("task_id")
    s.add_argument("--user", required=True)
    s = add("complete", "complete a user task", cmd_complete)
    s.add_argument("task_id")
    s.add_argument("--variables", help="JSON object")
    s.add_argument("--user")
    s = add("correlate", "deliver a message", cmd_correlate)
    s.add_argument("name")
    s.add_argument("--business-key")
    s.add_argument("--keys", help="correlation keys as a JSON object")
    s.add_argument("--variables", help="JSON object")
    s.add_argument("--message-id")
    s.add_argument("--ttl", type=int, default=0, help="buffer this many seconds if nobody waits yet")
    s.add_argument("--user")
    a = add("audit", "audit trail tools", lambda *_: 2)
    asub = a.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    v = asub.add_parser(
        "verify",
        help="recompute the hash chains; exit 1 if a record was edited or removed",
        description="recompute the hash chains; exit 1 if a record was edited or removed",
    )
    v.add_argument("--instance-id")
    v.set_defaults(func=cmd_audit_verify)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    logging.getLogger("spiff").setLevel(logging.WARNING)  # the library logs every task state change
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        if getattr(args, "host", None) is None and args.command == "serve":
            args.host = settings.host
        if getattr(args, "port", None) is None and args.command == "serve":
            args.port = settings.port
        result: int = args.func(args, settings)
        return result
    except SettingsError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return 2
    except CaseflowError as exc:
        print(json.dumps(exc.to_dict(), ensure_ascii=False), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
