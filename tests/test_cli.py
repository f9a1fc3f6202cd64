"""The ``caseflow`` command, end to end against a SQLite file named by CASEFLOW_DATABASE_URL."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from engine import cli
from tests.api.conftest import CASE_MODEL

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = {
    "serve",
    "worker",
    "deploy",
    "start",
    "instances",
    "tasks",
    "claim",
    "complete",
    "correlate",
    "audit",
}


def _subcommands() -> list[list[str]]:
    """Every subcommand the parser knows, nested ones too (so a new command is covered without editing)."""
    found: list[list[str]] = []

    def walk(parser: argparse.ArgumentParser, prefix: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    found.append([*prefix, name])
                    walk(sub, [*prefix, name])

    walk(cli.parser(), [])
    return found


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cli.db"
    monkeypatch.setenv("CASEFLOW_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.setenv("CASEFLOW_ENV", "test")
    monkeypatch.setenv("CASEFLOW_TIMEZONE", "Asia/Shanghai")
    return path


class Run:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *argv: str, expect: int = 0) -> Any:
        self.capsys.readouterr()
        code = cli.main(list(argv))
        out, err = self.capsys.readouterr()
        assert code == expect, (argv, code, out, err)
        if expect == 0:
            return json.loads(out)
        return json.loads(err.strip().splitlines()[-1])


@pytest.fixture
def run(database: Path, capsys: pytest.CaptureFixture[str]) -> Run:
    return Run(capsys)


def test_every_subcommand_is_covered() -> None:
    assert REQUIRED <= {path[0] for path in _subcommands()}
    assert ["audit", "verify"] in _subcommands()


@pytest.mark.parametrize("command", [[], *_subcommands()], ids=lambda c: " ".join(c) or "caseflow")
def test_help_exits_0_with_usage(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli.main([*command, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: caseflow")
    assert " ".join(["caseflow", *command]) in out.splitlines()[0]


def test_python_dash_m_runs_the_command(database: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "engine.cli", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "usage: caseflow" in done.stdout
    for name in REQUIRED:
        assert name in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "engine.cli"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
        check=False,
    )
    assert missing.returncode == 2
    assert "COMMAND" in missing.stderr


def test_a_case_end_to_end(run: Run, tmp_path: Path) -> None:
    model = tmp_path / "case.bpmn"
    model.write_bytes(CASE_MODEL)
    deployed = run("deploy", str(model), "--name", "移送", "--user", "modeller")
    assert deployed["created"] is True
    assert [d["key"] for d in deployed["definitions"]] == ["case_transfer"]

    started = run(
        "start",
        "case_transfer",
        "--business-key",
        "C-7",
        "--user",
        "clerk",
        "--variables",
        json.dumps({"case_no": "C-7", "amount": 9, "divisor": 3}),
    )
    assert (started["state"], started["business_key"], started["activities"]) == (
        "running",
        "C-7",
        ["review"],
    )

    listed = run("instances", "--key", "case_transfer", "--state", "running")
    assert [i["id"] for i in listed] == [started["id"]]
    assert run("instances", "--business-key", "C-404") == []

    [task] = run("tasks", "--candidate-group", "officer")
    assert (task["instance_id"], task["element_id"]) == (started["id"], "review")
    assert run("tasks", "--candidate-group", "head") == []
    claimed = run("claim", task["id"], "--user", "zhang.san")
    assert claimed == {"id": task["id"], "assignee": "zhang.san"}
    assert [t["id"] for t in run("tasks", "--assignee", "zhang.san")] == [task["id"]]

    completed = run("complete", task["id"], "--variables", '{"checked": true}', "--user", "zhang.san")
    assert completed["activities"] == ["wait_docs"]
    assert completed["variables"]["checked"] is True
    assert run("tasks", "--instance-id", started["id"]) == []

    delivered = run("correlate", "docs_received", "--keys", '{"case_no": "C-7"}', "--message-id", "m-1")
    assert delivered["instances"][0]["state"] == "completed"
    assert delivered["instances"][0]["variables"]["ratio"] == 3.0

    verified = run("audit", "verify")
    assert verified["ok"] is True
    assert verified["records_checked"] == 1 + 4  # the deployment; start, claim, complete, correlate
    assert run("audit", "verify", "--instance-id", started["id"])["ok"] is True


@pytest.mark.parametrize(
    ("content", "code"),
    [
        (
            b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]><x>&e;</x>",
            "invalid_model",
        ),
        (b"\x89PNG\r\n\x1a\n", "invalid_model"),
        (b"", "invalid_model"),
    ],
    ids=["xxe", "png", "empty"],
)
def test_a_bad_file_prints_a_json_error_and_exits_1(
    run: Run, tmp_path: Path, content: bytes, code: str
) -> None:
    bad = tmp_path / "bad.bpmn"
    bad.write_bytes(content)
    error = run("deploy", str(bad), expect=1)
    assert error["error"] == code
    assert "bad.bpmn" in error["message"]
    assert run("instances") == []


def test_user_mistakes_print_json_errors(run: Run, tmp_path: Path) -> None:
    missing = run("deploy", str(tmp_path / "nowhere.bpmn"), expect=1)
    assert "no such file" in missing["message"]
    assert run("start", "no_such_process", expect=1)["error"] == "not_found"
    model = tmp_path / "case.bpmn"
    model.write_bytes(CASE_MODEL)
    run("deploy", str(model))
    assert run("start", "case_transfer", "--variables", "{oops", expect=1)["field"] == "--variables"
    assert run("start", "case_transfer", "--variables", "[1]", expect=1)["error"] == "invalid_variables"
    assert (
        run("start", "case_transfer", "--variables", '{"__class__": 1}', expect=1)["error"]
        == "invalid_variables"
    )
    assert run("claim", "no-such-task", "--user", "zhang.san", expect=1)["error"] == "not_found"
    assert run("correlate", "nobody_listens", expect=1)["error"] == "message_not_correlated"


def test_a_bad_setting_exits_2(
    database: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("CASEFLOW_TIMEZONE", "Mars/Olympus")
    assert cli.main(["instances"]) == 2
    assert "CASEFLOW_TIMEZONE" in capsys.readouterr().err
