"""Lint the deployment manifests: Dockerfile, deployments/compose.yaml and deployments/k8s/*.yaml.

Nothing is started here (no Docker daemon needed): the files parse, every ``caseflow`` command they run parses
with the real CLI, every ``CASEFLOW_*`` variable is one that engine/settings.py reads, the production settings
are set, images are pinned, and the key files match deployments/agencies.yaml.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine import cli, settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deployments"
COMPOSE = DEPLOY / "compose.yaml"
K8S = DEPLOY / "k8s"
DOCKERFILE = ROOT / "Dockerfile"
CASEFLOW_IMAGE = re.compile(r"(^|/)caseflow:")
# what every production process must be given (engine/settings.py, engine/app.py)
REQUIRED = {"CASEFLOW_ENV", "CASEFLOW_DATABASE_URL", "CASEFLOW_AMQP_URL", "CASEFLOW_AGENCIES_FILE"}


def settings_variables() -> set[str]:
    source = Path(settings.__file__).read_text(encoding="utf-8")
    return set(re.findall(r"\"(CASEFLOW_[A-Z0-9_]+)\"", source))


def agencies() -> list[dict[str, Any]]:
    data = yaml.safe_load((DEPLOY / "agencies.yaml").read_text(encoding="utf-8"))
    return list(data["agencies"])


def key_files() -> set[str]:
    """Every key file agencies.yaml names: signing keys, and seal keys of agencies that receive sealed messages."""
    files = {a["key"]["file"] for a in agencies()}
    return files | {a["key"]["seal_file"] for a in agencies() if a["key"].get("seal_file")}


def key_variables() -> set[str]:
    return {a["key"]["env"] for a in agencies() if a["key"].get("env")}


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def k8s_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc:
                docs.append((path.name, doc))
    return docs


def k8s_containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            for container in doc["spec"]["template"]["spec"]["containers"]:
                yield f"{name}:{doc['metadata']['name']}/{container['name']}", container


def k8s_environment(container: dict[str, Any]) -> set[str]:
    """Variable names a container gets: its env entries and the ConfigMaps/Secrets it loads whole."""
    names = {e["name"] for e in container.get("env", [])}
    maps = {n: d for n, d in k8s_documents() if d["kind"] in ("ConfigMap", "Secret")}
    by_name = {d["metadata"]["name"]: d for d in maps.values()}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef") or source.get("secretRef")
        doc = by_name[ref["name"]]
        names |= set(doc.get("data") or doc.get("stringData") or {})
    return names


def caseflow_services() -> dict[str, dict[str, Any]]:
    return {n: s for n, s in compose()["services"].items() if CASEFLOW_IMAGE.search(s.get("image", ""))}


def dockerfile_env() -> set[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    names: set[str] = set()
    for line in text.splitlines():
        if line.startswith("ENV "):
            names |= set(re.findall(r"(CASEFLOW_[A-Z0-9_]+)=", line))
    return names


# ---------------------------------------------------------------------------------------------------- parsing
def test_every_manifest_parses() -> None:
    assert set(compose()["services"]) >= {
        "postgres",
        "rabbitmq",
        "topology",
        "engine-1",
        "engine-2",
        "worker",
    }
    kinds = {doc["kind"] for _, doc in k8s_documents()}
    assert kinds >= {"Namespace", "ConfigMap", "Secret", "Deployment", "Job", "Service"}
    for name, doc in k8s_documents():
        assert doc.get("apiVersion") and doc.get("metadata", {}).get("name"), name
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "caseflow", name


# ---------------------------------------------------------------------------------------------------- commands
def caseflow_commands() -> list[tuple[str, list[str]]]:
    found = [(f"compose:{n}", list(s["command"])) for n, s in caseflow_services().items()]
    found += [(where, list(c["args"])) for where, c in k8s_containers()]
    cmd = re.search(r"^CMD (\[.*\])$", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert cmd, "the Dockerfile has no exec-form CMD"
    found.append(("Dockerfile CMD", yaml.safe_load(cmd.group(1))))
    return found


def test_every_caseflow_command_exists_in_the_cli() -> None:
    commands = caseflow_commands()
    assert {argv[0] for _, argv in commands} >= {"serve", "worker", "topology", "agency-sim"}
    for where, argv in commands:
        try:
            cli.parser().parse_args(argv)
        except SystemExit:
            pytest.fail(f"{where}: `caseflow {' '.join(argv)}` is not a valid caseflow command line")


def test_the_district_runs_two_engines_one_worker_one_topology_job() -> None:
    services = compose()["services"]
    runs = [s["command"][0] for s in caseflow_services().values()]
    assert runs.count("serve") == 2 and runs.count("worker") == 1 and runs.count("topology") == 1
    assert services["topology"]["restart"] == "on-failure"
    for name, service in caseflow_services().items():
        if service["command"][0] == "serve":
            assert "healthcheck" not in service, f"compose:{name} keeps the image's /api/health check"
        else:
            assert service["healthcheck"] == {"disable": True}, f"compose:{name} does not listen on HTTP"


def test_agency_simulators_are_known_agencies() -> None:
    codes = {a["code"] for a in agencies()}
    sims = [s["command"][1] for s in caseflow_services().values() if s["command"][0] == "agency-sim"]
    assert set(sims) == {"public_security", "procuratorate"}
    assert set(sims) <= codes


# ---------------------------------------------------------------------------------------------------- settings
def test_every_caseflow_variable_is_read_by_settings() -> None:
    known = settings_variables() | key_variables()
    assert {"CASEFLOW_DATABASE_URL", "CASEFLOW_AMQP_URL", "CASEFLOW_ENV"} <= known  # the grep works
    used: dict[str, set[str]] = {"Dockerfile": dockerfile_env()}
    for name, service in caseflow_services().items():
        used[f"compose:{name}"] = set(service.get("environment", {}))
    for where, container in k8s_containers():
        used[where] = k8s_environment(container)
    for where, names in used.items():
        unknown = {n for n in names if n.startswith("CASEFLOW_")} - known
        assert not unknown, f"{where} sets {sorted(unknown)}, which engine/settings.py never reads"
    # compose text too: nothing misspelt hides in an anchor or a comment-free interpolation
    for text_name in re.findall(r"\b(CASEFLOW_[A-Z0-9_]+)\b", COMPOSE.read_text(encoding="utf-8")):
        assert text_name in known, f"compose.yaml mentions {text_name}"


def test_production_settings_are_set_for_every_caseflow_process() -> None:
    for name, service in caseflow_services().items():
        env = service.get("environment", {})
        missing = REQUIRED - set(env)
        assert not missing, f"compose:{name} lacks {sorted(missing)}"
        assert env["CASEFLOW_ENV"] == "production", name
        assert env["CASEFLOW_DATABASE_URL"].startswith("postgresql://"), name
        assert env["CASEFLOW_AMQP_URL"].startswith("amqp://"), name
    for where, container in k8s_containers():
        missing = REQUIRED - k8s_environment(container)
        assert not missing, f"{where} lacks {sorted(missing)}"
    config = next(d for _, d in k8s_documents() if d["kind"] == "ConfigMap")
    assert config["data"]["CASEFLOW_ENV"] == "production"


def test_district_processes_reach_the_compose_database_and_broker() -> None:
    services = compose()["services"]
    for name in ("engine-1", "engine-2", "worker", "topology"):
        env = services[name]["environment"]
        assert "@postgres:5432/" in env["CASEFLOW_DATABASE_URL"], name
        assert "@rabbitmq:5672/" in env["CASEFLOW_AMQP_URL"], name
    assert services["engine-2"]["environment"]["CASEFLOW_AMQP_URL"].startswith(
        "amqp://caseflow-district-engine:"
    )
    for name in ("sim-public-security", "sim-procuratorate"):
        agency = services[name]["command"][1]
        assert services[name]["environment"]["CASEFLOW_AMQP_URL"].startswith(f"amqp://caseflow-{agency}:")


# ---------------------------------------------------------------------------------------------------- images
def test_images_are_pinned() -> None:
    images = [(f"compose:{n}", s["image"]) for n, s in compose()["services"].items()]
    images += [(where, c["image"]) for where, c in k8s_containers()]
    base = re.search(r"^FROM (\S+)", DOCKERFILE.read_text(encoding="utf-8"), re.M)
    assert base, "the Dockerfile has no FROM"
    images.append(("Dockerfile FROM", base.group(1)))
    for where, image in images:
        name, _, tag = image.rpartition(":")
        assert name and "/" not in tag, f"{where}: {image} has no tag"
        assert tag != "latest", f"{where}: {image} is not pinned"
        # a version number, not a moving major-only tag such as "15" or "3-management"
        assert re.match(r"^\d+\.\d+(\.\d+)?", tag), f"{where}: {image} is not pinned to a version"
    versions = dict((n, s["image"]) for n, s in compose()["services"].items())
    assert versions["postgres"].startswith("postgres:15.")
    major, minor = (int(x) for x in versions["rabbitmq"].split(":")[1].split(".")[:2])
    assert (major, minor) >= (3, 13) and "management" in versions["rabbitmq"]
    assert base.group(1).startswith("python:3.11") and "slim" in base.group(1)


def test_dockerfile_runs_as_non_root_and_serves() -> None:
    text = DOCKERFILE.read_text(encoding="utf-8")
    users = re.findall(r"^USER (\S+)", text, re.M)
    assert users, "the Dockerfile never switches user"
    assert users[-1].split(":")[0] not in ("root", "0"), "the image runs as root"
    assert re.search(r'^ENTRYPOINT \["caseflow"\]$', text, re.M)
    assert re.search(r"^RUN pip install /src\b", text, re.M), "the project is installed with its pinned deps"
    assert re.search(r"^COPY bpmn/ ", text, re.M) and re.search(r"^COPY deployments/", text, re.M)
    health = re.search(r"HEALTHCHECK .*?(/api/\w+)", text, re.S)
    assert health, "no HEALTHCHECK"
    routes = {getattr(r, "path", None) for r in _api().routes}
    assert health.group(1) in routes, f"the HEALTHCHECK hits {health.group(1)}, which the API does not serve"
    for where, container in k8s_containers():
        if "serve" in container["args"]:
            for probe in ("readinessProbe", "livenessProbe"):
                assert container[probe]["httpGet"]["path"] in routes, f"{where} {probe}"
    ignore = (ROOT / ".dockerignore").read_text(encoding="utf-8").split()
    assert "deployments/secrets" in ignore and ".git" in ignore and ".venv" in ignore


def test_k8s_pods_run_as_non_root() -> None:
    for name, doc in k8s_documents():
        if doc["kind"] in ("Deployment", "Job"):
            pod = doc["spec"]["template"]["spec"]
            assert pod["securityContext"]["runAsNonRoot"] is True, name
            assert pod["securityContext"]["runAsUser"] != 0, name


def _api() -> Any:
    from engine.api.main import create_app

    class NoEngine:
        class config:
            max_model_bytes = 1024

    return create_app(NoEngine())  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------------- keys
def test_compose_key_files_match_agencies_yaml() -> None:
    data = compose()
    declared = data["secrets"]
    for secret in declared.values():
        assert secret["file"].startswith("./secrets/keys/"), "keys live in deployments/secrets (git-ignored)"
    for name in ("engine-1", "engine-2", "worker"):
        targets = {s["target"] for s in data["services"][name]["secrets"]}
        assert targets == key_files(), f"compose:{name} must mount every agency's key file"
    district = {a["key"]["file"] for a in agencies() if a["engine"] == "district"}
    for name, service in caseflow_services().items():
        mounts = service.get("secrets", [])
        for mount in mounts:
            assert mount["source"] in declared, f"compose:{name}: secret {mount['source']} is not declared"
            assert declared[mount["source"]]["file"] == f"./secrets/keys/{Path(mount['target']).name}"
            assert mount["target"] in key_files(), f"compose:{name}: {mount['target']} is no key.file"
        if service["command"][0] == "agency-sim":
            own = f"/etc/caseflow/keys/{service['command'][1]}.key"
            assert {m["target"] for m in mounts} == district | {own}, name


def test_k8s_key_secret_matches_agencies_yaml() -> None:
    folders = {str(Path(f).parent) for f in key_files()}
    assert folders == {"/etc/caseflow/keys"}
    secret = next(d for _, d in k8s_documents() if d["metadata"]["name"] == "caseflow-agency-keys")
    assert set(secret["stringData"]) == {Path(f).name for f in key_files()}
    assert set(secret["stringData"].values()) == {"REPLACE_ME"}, "the template holds no real key"
    for where, container in k8s_containers():
        if container["args"][0] in ("serve", "worker"):
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/etc/caseflow/keys" in mounts, where


def test_no_secret_is_committed() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    for url in re.findall(r"(?:postgresql|amqp)://[^\s]+", text):
        user_password = url.split("://", 1)[1].split("@", 1)[0]
        if ":" in user_password:
            assert user_password.split(":", 1)[1].startswith("${"), f"a literal password in {url}"
    assert ".env" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()
    assert "secrets/" in (DEPLOY / ".gitignore").read_text(encoding="utf-8").split()


def test_broker_loads_the_definitions() -> None:
    rabbit = compose()["services"]["rabbitmq"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in rabbit["volumes"]}
    conf = mounts["/etc/rabbitmq/rabbitmq.conf"]
    text = (DEPLOY / conf).read_text(encoding="utf-8")
    loaded = re.search(r"^load_definitions\s*=\s*(\S+)", text, re.M)
    assert loaded, "rabbitmq.conf does not load definitions"
    assert mounts[loaded.group(1)] == "./rabbitmq/definitions.json"
    definitions = (DEPLOY / "rabbitmq" / "definitions.json").read_text(encoding="utf-8")
    users = {u["name"] for u in yaml.safe_load(definitions)["users"]}
    for service in caseflow_services().values():
        user = service["environment"]["CASEFLOW_AMQP_URL"].split("://")[1].split(":")[0]
        assert user in users or user == "caseflow-admin", user
        if user != "caseflow-admin":
            hook = rabbit["post_start"][0]["command"][-1]
            assert f"change_password {user} " in hook, f"nobody sets the password of {user}"
