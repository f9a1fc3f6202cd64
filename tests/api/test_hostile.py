"""Hostile input: each request gets a clear 4xx JSON {error, message} and leaves every stored row as it was.

The database (every table the engine owns) is snapshotted before and after each request and compared whole.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from fastapi.testclient import TestClient

from engine.api.main import create_app
from engine.commands import Engine
from tests.api.conftest import Snapshot, assert_error, deploy, open_tasks, start
from tests.bpmn_util import chain, definitions, flow, process

MB = 1024 * 1024

XXE = b"""<?xml version="1.0" encoding="UTF-8"?>
<!DOCTYPE definitions [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x">
  <bpmn:process id="xxe" isExecutable="true"><bpmn:startEvent id="s" name="&xxe;"/></bpmn:process>
</bpmn:definitions>"""

XXE_PARAMETER = b"""<?xml version="1.0"?>
<!DOCTYPE d [<!ENTITY % remote SYSTEM "http://127.0.0.1:9/evil.dtd"> %remote;]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d" targetNamespace="x"/>"""

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<lolz>&lol9;</lolz>"
)

PNG_HEADER = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
)


@pytest.fixture
def seeded(client: TestClient) -> dict[str, Any]:
    """Stored data worth protecting: a deployed model, a running case with an open, claimed task."""
    from tests.api.conftest import CASE_MODEL, JOB_MODEL

    deployment = deploy(client, ("case.bpmn", CASE_MODEL), ("archive.bpmn", JOB_MODEL))
    instance = start(client, business_key="C-1", variables={"case_no": "C-1", "amount": 10, "divisor": 2})
    [task] = open_tasks(client, instance_id=instance["id"])
    assert client.post(f"/api/tasks/{task['id']}/claim", json={"user": "zhang.san"}).status_code == 200
    return {"deployment": deployment, "instance": instance, "task": task}


def _unchanged(
    db_snapshot: Callable[[], Snapshot],
    request: Callable[[], Any],
    status: int,
    code: str | None = None,
    *mentions: str,
) -> dict[str, Any]:
    before = db_snapshot()
    body = assert_error(request(), status, code, *mentions)
    after = db_snapshot()
    assert after == before, {t: (before[t], after[t]) for t in before if before[t] != after[t]}
    return body


def _upload(client: TestClient, name: str, content: bytes) -> Any:
    return client.post("/api/deployments", files=[("files", (name, content, "application/octet-stream"))])


# ------------------------------------------------------------------------------------------ hostile files
@pytest.mark.parametrize(
    ("name", "content", "mention"),
    [
        ("xxe.bpmn", XXE, "entit"),
        ("xxe-parameter.bpmn", XXE_PARAMETER, "entit"),
        ("laughs.bpmn", BILLION_LAUGHS, "entit"),
        ("random.bpmn", bytes(range(256)) * 16, "not well-formed XML"),
        ("empty.bpmn", b"", "empty"),
        ("blank.bpmn", b"   \n\t ", "empty"),
        ("image.png", PNG_HEADER, "not well-formed XML"),
        ("model.json", json.dumps({"process": "case_transfer"}).encode(), "not well-formed XML"),
        ("utf16.bpmn", "<a>移送</a>".encode("utf-16"), ""),
        ("html.bpmn", b"<html><body>not a model</body></html>", ""),
        ("no-process.bpmn", definitions(""), ""),
    ],
    ids=lambda v: v if isinstance(v, str) and v.endswith((".bpmn", ".png", ".json")) else "",
)
def test_hostile_files_are_refused(
    client: TestClient,
    seeded: dict[str, Any],
    db_snapshot: Callable[[], Snapshot],
    name: str,
    content: bytes,
    mention: str,
) -> None:
    body = _unchanged(
        db_snapshot, lambda: _upload(client, name, content), 400, "invalid_model", name, mention
    )
    assert "/etc/passwd" not in json.dumps(body)
    assert "root:" not in json.dumps(body)


def test_a_50_mb_file_is_413_without_being_read(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    huge = b"<a>" + b"x" * (50 * MB) + b"</a>"
    body = _unchanged(
        db_snapshot, lambda: _upload(client, "huge.bpmn", huge), 413, "payload_too_large", "limit"
    )
    assert body["limit"] < 50 * MB


def test_a_file_over_the_model_limit_is_413_naming_it(
    client: TestClient, engine: Engine, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    over = b"<a>" + b"x" * engine.config.max_model_bytes + b"</a>"
    body = _unchanged(
        db_snapshot, lambda: _upload(client, "over.bpmn", over), 413, "payload_too_large", "over.bpmn"
    )
    assert body["limit"] == engine.config.max_model_bytes


def _drive(
    engine: Engine, path: str, content_type: bytes, *, declared: int | None, first: bytes, total: int
) -> tuple[int, dict[str, Any], int]:
    """Send a body to the ASGI app in 64 KiB chunks; answer the status, the JSON answer, the bytes pulled."""
    app = create_app(engine)
    chunk = b"x" * (64 * 1024)
    pulled = 0
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if pulled >= total:
            return {"type": "http.disconnect"}
        body = first if pulled == 0 else chunk
        pulled += len(body)
        return {"type": "http.request", "body": body, "more_body": pulled < total}

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    headers = [(b"host", b"testserver"), (b"content-type", content_type)]
    if declared is not None:
        headers.append((b"content-length", str(declared).encode()))
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    asyncio.run(app(scope, receive, send))
    status = next(m["status"] for m in messages if m["type"] == "http.response.start")
    payload = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return status, json.loads(payload), pulled


def test_an_oversized_body_is_not_read(engine: Engine, db_snapshot: Callable[[], Snapshot]) -> None:
    before = db_snapshot()
    multipart = b"multipart/form-data; boundary=XyZ"
    head = b'--XyZ\r\nContent-Disposition: form-data; name="files"; filename="huge.bpmn"\r\n\r\n<a>'
    # Declared too large: refused before a single byte of the body is read.
    status, body, pulled = _drive(
        engine, "/api/deployments", multipart, declared=50 * MB, first=head, total=50 * MB
    )
    assert (status, body["error"], pulled) == (413, "payload_too_large", 0)
    # Streamed without a length: reading stops just past the limit, not at 50 MB.
    status, body, pulled = _drive(
        engine, "/api/deployments", multipart, declared=None, first=head, total=50 * MB
    )
    assert (status, body["error"]) == (413, "payload_too_large")
    assert pulled <= body["limit"] + 64 * 1024
    status, body, pulled = _drive(
        engine,
        "/api/messages",
        b"application/json",
        declared=None,
        first=b'{"name": "m", "variables": {"a": "',
        total=50 * MB,
    )
    assert (status, body["error"]) == (413, "payload_too_large")
    assert pulled <= body["limit"] + 64 * 1024
    assert db_snapshot() == before


# ---------------------------------------------------------------------------------------- script escapes
ESCAPES = [
    ("x = __import__('os')", "__import__"),
    ("x = ().__class__.__base__.__subclasses__()", "__"),
    ("x = amount.__class__", "__class__"),
    ("x = amount.__dict__", "__dict__"),
    ("x = case.__globals__", "__globals__"),
    ("x = case.__builtins__", "__builtins__"),
    ("x = __builtins__", "__builtins__"),
    ("x = type(amount).__mro__", ""),
    ("x = getattr(amount, 'real')", "getattr"),
    ("x = open('/etc/passwd').read()", "open"),
    ("x = eval('1')", "eval"),
    ("import os", ""),
    ("x = 9**9**9", "too large"),
    ("x = 'a'*10**9", "1000000000"),
    ("x = [0] * 10**9", "1000000000"),
    ("x = (lambda: 1)()", ""),
    ("__import__('os')", ""),
    ("().__class__.__base__.__subclasses__()", ""),
    ("open('/etc/passwd')", ""),
    ("9**9**9", ""),
    ("'a'*10**9", ""),
]


def _escaping_model(script: str) -> tuple[bytes, int]:
    safe = script.replace("&", "&amp;").replace("<", "&lt;")
    model = process(
        "escape",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:scriptTask id="evil" name="脚本" scriptFormat="python">
    <bpmn:script>{safe}</bpmn:script>
  </bpmn:scriptTask>
  <bpmn:endEvent id="end"/>
  {chain("start", "evil", "end")}""",
    )
    line = next(i for i, text in enumerate(model.decode().splitlines(), 1) if 'id="evil"' in text)
    return model, line


@pytest.mark.parametrize(("script", "mention"), ESCAPES, ids=[s for s, _ in ESCAPES])
def test_script_escapes_are_refused_at_deploy(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot], script: str, mention: str
) -> None:
    model, line = _escaping_model(script)
    body = _unchanged(
        db_snapshot,
        lambda: _upload(client, "escape.bpmn", model),
        400,
        "invalid_model",
        "escape.bpmn",
        "'evil'",
        f"line {line}",
        mention,
    )
    assert (body["element_id"], body["line"], body["resource"]) == ("evil", line, "escape.bpmn")
    assert client.get("/api/process-definitions", params={"key": "escape"}).json() == []


def test_escapes_in_conditions_are_refused_naming_the_flow(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    model = process(
        "gate",
        f"""
  <bpmn:startEvent id="start"/>
  <bpmn:exclusiveGateway id="split"/>
  <bpmn:endEvent id="yes"/>
  <bpmn:endEvent id="no"/>
  {flow("f_start", "start", "split")}
  {flow("f_yes", "split", "yes", "${amount.__class__ != null}")}
  {flow("f_no", "split", "no", "amount &lt; 0")}""",
    )
    body = _unchanged(
        db_snapshot, lambda: _upload(client, "gate.bpmn", model), 400, "invalid_model", "__class__"
    )
    assert body["element_id"] in ("split", "f_yes")
    assert isinstance(body["line"], int)


# --------------------------------------------------------------------------------------------- unknown ids
UNKNOWN = "00000000-0000-4000-8000-00000000dead"


@pytest.mark.parametrize(
    ("method", "path", "payload"),
    [
        ("GET", f"/api/process-definitions/{UNKNOWN}/xml", None),
        ("POST", f"/api/process-definitions/{UNKNOWN}/start", {"variables": {}}),
        ("POST", "/api/process-definitions/key/no_such_process/start", {"variables": {}}),
        ("GET", f"/api/process-instances/{UNKNOWN}", None),
        ("DELETE", f"/api/process-instances/{UNKNOWN}", None),
        ("GET", f"/api/process-instances/{UNKNOWN}/audit", None),
        ("POST", f"/api/tasks/{UNKNOWN}/claim", {"user": "zhang.san"}),
        ("POST", f"/api/tasks/{UNKNOWN}/unclaim", None),
        ("POST", f"/api/tasks/{UNKNOWN}/complete", {"variables": {"a": 1}}),
        ("POST", f"/api/incidents/{UNKNOWN}/retry", {"variables": {}}),
        ("POST", f"/api/jobs/{UNKNOWN}/complete", {"variables": {}}),
        ("POST", f"/api/jobs/{UNKNOWN}/fail", {"error_message": "down"}),
        ("GET", "/api/process-instances/' OR '1'='1", None),
        ("POST", "/api/tasks/%2E%2E%2F%2E%2E%2Fetc%2Fpasswd/claim", {"user": "zhang.san"}),
    ],
    ids=lambda v: v if isinstance(v, str) and v.startswith("/") else None,
)
def test_unknown_ids_are_404(
    client: TestClient,
    seeded: dict[str, Any],
    db_snapshot: Callable[[], Snapshot],
    method: str,
    path: str,
    payload: dict[str, Any] | None,
) -> None:
    _unchanged(db_snapshot, lambda: client.request(method, path, json=payload), 404, "not_found")


# -------------------------------------------------------------------------------------------- bad bodies
def _deep(depth: int) -> str:
    return "[" * depth + "]" * depth


def _bodies(seeded: dict[str, Any]) -> dict[str, tuple[str, str, Any, int, str, str]]:
    """name -> (method, path, JSON-able body or raw text, status, error code, mentioned)."""
    task = f"/api/tasks/{seeded['task']['id']}"
    begin = "/api/process-definitions/key/case_transfer/start"
    return {
        "variables as a list": ("POST", begin, {"variables": [1, 2]}, 422, "invalid_request", "variables"),
        "variables as a string": ("POST", begin, {"variables": "a=1"}, 422, "invalid_request", "variables"),
        "variables as a number": ("POST", begin, {"variables": 5}, 422, "invalid_request", "variables"),
        "complete with a list": (
            "POST",
            f"{task}/complete",
            {"variables": ["x"]},
            422,
            "invalid_request",
            "variables",
        ),
        "variable __class__": (
            "POST",
            begin,
            {"variables": {"__class__": 1}},
            422,
            "invalid_variables",
            "__class__",
        ),
        "variable 1abc": ("POST", begin, {"variables": {"1abc": 1}}, 422, "invalid_variables", "1abc"),
        "variable _private": (
            "POST",
            f"{task}/complete",
            {"variables": {"_private": 1}},
            422,
            "invalid_variables",
            "_private",
        ),
        "variable with a dash": (
            "POST",
            f"{task}/complete",
            {"variables": {"a-b": 1}},
            422,
            "invalid_variables",
            "a-b",
        ),
        "variable with no name": ("POST", begin, {"variables": {"": 1}}, 422, "invalid_variables", "''"),
        "message variable __globals__": (
            "POST",
            "/api/messages",
            {"name": "docs_received", "variables": {"__globals__": {}}},
            422,
            "invalid_variables",
            "__globals__",
        ),
        "business_key as a number": (
            "POST",
            begin,
            {"business_key": 42},
            422,
            "invalid_request",
            "business_key",
        ),
        "business_key too long": (
            "POST",
            begin,
            {"business_key": "K" * 256},
            422,
            "invalid_request",
            "business_key",
        ),
        "business_key with NUL": ("POST", begin, {"business_key": "C-\u0000"}, 422, "invalid_request", "NUL"),
        "user with NUL": ("POST", f"{task}/claim", {"user": "li\u0000si"}, 422, "invalid_request", "NUL"),
        "nested 40 deep": (
            "POST",
            begin,
            f'{{"variables": {{"a": {_deep(40)}}}}}',
            422,
            "invalid_variables",
            "nested",
        ),
        "nested 900 deep": (
            "POST",
            f"{task}/complete",
            f'{{"variables": {{"a": {_deep(900)}}}}}',
            422,
            "invalid_variables",
            "nested",
        ),
        "nested 100000 deep": (
            "POST",
            begin,
            f'{{"variables": {{"a": {_deep(100_000)}}}}}',
            400,
            "malformed_json",
            "nested",
        ),
        "correlation keys 900 deep": (
            "POST",
            "/api/messages",
            f'{{"name": "m", "correlation_keys": {{"a": {_deep(900)}}}}}',
            422,
            "invalid_variables",
            "nested",
        ),
        "NaN": ("POST", begin, '{"variables": {"a": NaN}}', 422, "invalid_variables", "float"),
        "Infinity": (
            "POST",
            f"{task}/complete",
            '{"variables": {"a": 1e999}}',
            422,
            "invalid_variables",
            "float",
        ),
        "lone surrogate": (
            "POST",
            begin,
            '{"variables": {"a": "\\ud800"}}',
            422,
            "invalid_variables",
            "surrogates",
        ),
        "variables over 1 MB": (
            "POST",
            begin,
            {"variables": {"a": "x" * 1_100_000}},
            422,
            "invalid_variables",
            "bytes",
        ),
        "ttl_seconds negative": (
            "POST",
            "/api/messages",
            {"name": "docs_received", "ttl_seconds": -5},
            422,
            "invalid_request",
            "ttl_seconds",
        ),
        "malformed JSON": ("POST", begin, '{"variables": {"a": 1}', 400, "malformed_json", "not valid JSON"),
        "JSON with a trailing comma": (
            "POST",
            "/api/messages",
            '{"name": "x",}',
            400,
            "malformed_json",
            "JSON",
        ),
        "not JSON at all": ("POST", f"{task}/complete", "variables=1", 400, "malformed_json", "JSON"),
        "JSON array body": ("POST", begin, [1, 2, 3], 422, "invalid_request", ""),
        "JSON string body": ("POST", "/api/messages", '"hello"', 422, "invalid_request", ""),
        "unknown field": (
            "POST",
            begin,
            {"variables": {}, "definition_key": "x"},
            422,
            "invalid_request",
            "definition_key",
        ),
        "unknown field in claim": (
            "POST",
            f"{task}/claim",
            {"user": "a", "admin": True},
            422,
            "invalid_request",
            "admin",
        ),
        "user missing": ("POST", f"{task}/claim", {}, 422, "invalid_request", "user"),
        "message to nobody": (
            "POST",
            "/api/messages",
            {"name": "no_one_waits", "business_key": "C-1"},
            409,
            "message_not_correlated",
            "no_one_waits",
        ),
        "message with wrong keys": (
            "POST",
            "/api/messages",
            {"name": "docs_received", "correlation_keys": {"case_no": "C-404"}},
            409,
            "message_not_correlated",
            "docs_received",
        ),
        "claim held by another": (
            "POST",
            f"{task}/claim",
            {"user": "li.si"},
            409,
            "task_claimed",
            "zhang.san",
        ),
    }


BODY_CASES = list(_bodies({"task": {"id": "t"}}))


@pytest.mark.parametrize("case", BODY_CASES)
def test_bad_bodies_are_refused(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot], case: str
) -> None:
    method, path, payload, status, code, mention = _bodies(seeded)[case]
    if isinstance(payload, str) and case not in ("JSON string body",):

        def send() -> Any:
            return client.request(method, path, content=payload, headers={"content-type": "application/json"})
    else:

        def send() -> Any:
            return client.request(method, path, json=payload)

    _unchanged(db_snapshot, send, status, code, mention)


def test_wrong_content_types_are_415(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    begin = "/api/process-definitions/key/case_transfer/start"
    task = f"/api/tasks/{seeded['task']['id']}"
    calls = [
        lambda: client.post(begin, content='{"variables": {}}', headers={"content-type": "text/plain"}),
        lambda: client.post(begin, content='{"variables": {}}'),
        lambda: client.post(f"{task}/complete", data={"variables": "{}"}),
        lambda: client.post(
            "/api/messages", content=b"<message name='x'/>", headers={"content-type": "application/xml"}
        ),
        lambda: client.post("/api/deployments", json={"files": ["case.bpmn"]}),
        lambda: client.post(
            "/api/deployments", content=b"<bpmn/>", headers={"content-type": "application/xml"}
        ),
    ]
    for call in calls:
        _unchanged(db_snapshot, call, 415, "unsupported_media_type")


def test_nul_and_broken_headers_are_400(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    instance = seeded["instance"]["id"]
    calls = [
        lambda: client.get(f"/api/process-instances/{instance}%00"),
        lambda: client.get("/api/process-instances", params={"business_key": "C-1\u0000"}),
        lambda: client.post(
            "/api/process-definitions/key/case_transfer/start",
            json={},
            headers={"x-caseflow-user": "zhang\u0000san"},
        ),
        lambda: client.post(
            "/api/messages",
            content=b'{"name": "x"}',
            headers={"content-type": "application/json", "content-length": "twelve"},
        ),
        lambda: client.post(
            "/api/messages",
            content=b'{"name": "x"}',
            headers={b"content-type": b"application/json", b"content-length": "\u00b2".encode("latin-1")},
        ),
    ]
    for call in calls:
        _unchanged(db_snapshot, call, 400, "invalid_request")


def test_odd_deployments_are_refused(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    from tests.api.conftest import CASE_MODEL

    long_name = "n" * 300 + ".bpmn"
    _unchanged(db_snapshot, lambda: _upload(client, long_name, CASE_MODEL), 400, "invalid_model", "255")
    same_twice = [("files", ("a.bpmn", CASE_MODEL, "application/xml"))] * 2
    _unchanged(
        db_snapshot,
        lambda: client.post("/api/deployments", files=same_twice),
        400,
        "invalid_model",
        "same name",
    )
    _unchanged(
        db_snapshot,
        lambda: client.post(
            "/api/deployments", data={"name": "x"}, files=[("other", ("a.txt", b"x", "text/plain"))]
        ),
        422,
        "invalid_request",
        "files",
    )
    _unchanged(
        db_snapshot,
        lambda: client.post(
            "/api/deployments",
            data={"name": "n" * 300},
            files=[("files", ("b.bpmn", CASE_MODEL, "application/xml"))],
        ),
        422,
        "invalid_request",
        "name",
    )


def test_hostile_queries_are_refused_or_harmless(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    _unchanged(
        db_snapshot,
        lambda: client.get("/api/tasks", params={"offset": 10**30}),
        422,
        "invalid_request",
        "offset",
    )
    _unchanged(
        db_snapshot,
        lambda: client.get("/api/process-instances", params={"limit": -1}),
        422,
        "invalid_request",
        "limit",
    )
    before = db_snapshot()
    injected = client.get("/api/process-instances", params={"business_key": "' OR '1'='1"})
    assert injected.status_code == 200
    assert injected.json() == []
    assert db_snapshot() == before


def test_broken_multipart_is_400(
    client: TestClient, seeded: dict[str, Any], db_snapshot: Callable[[], Snapshot]
) -> None:
    multipart = {"content-type": "multipart/form-data; boundary=XyZ"}
    calls = [
        lambda: client.post("/api/deployments", content=b"--zzz\r\ngarbage", headers=multipart),
        lambda: client.post(
            "/api/deployments", content=b"abc", headers={"content-type": "multipart/form-data"}
        ),
        lambda: client.post(
            "/api/deployments", files=[("files", (f"f{i}.bpmn", b"<a/>")) for i in range(1001)]
        ),
    ]
    for call in calls:
        _unchanged(db_snapshot, call, 400, "malformed_body", "could not be read")
