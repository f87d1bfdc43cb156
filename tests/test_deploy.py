"""The deploy/ recipes: every file checked by the validator of its format, and the Compose
recipe's wiring run for real, without containers, on separate hosts (network namespaces).

Not exercised here (no Docker or Kubernetes on the test machines): building the image,
InfluxDB 2 and Grafana themselves, and a cluster applying the manifests.
"""

from __future__ import annotations

import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from locust_perfx.reference.cli import LISTENING
from tests.fixtures.locust import ROOT, Target
from tests.fixtures.netns import HostRunner, Topology
from tests.fixtures.tsdb import VictoriaMetrics

DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
MANIFESTS = DEPLOY / "kubernetes" / "locust-perfx.yaml"
COMPOSE_SCHEMA = DEPLOY / "schemas" / "compose-spec.json"
KUBERNETES = "1.30.0"
"""The oldest Kubernetes version still widely run that the manifests must suit."""
INTERPOLATION = re.compile(r"\$\$|\$\{(\w+)(?::([?-])([^}]*))?\}")
HEADER_STEPS = ("platform", "influxdb", "grafana")
"""The services the compose file's header starts first, before any run exists."""


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return loaded


def manifests() -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(MANIFESTS.read_text()) if doc]


def test_every_yaml_file_passes_yamllint() -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "yamllint",
            "--strict",
            "-c",
            str(DEPLOY / ".yamllint"),
            str(DEPLOY),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_compose_file_follows_the_compose_specification() -> None:
    jsonschema.validate(compose(), json.loads(COMPOSE_SCHEMA.read_text()))


@pytest.mark.parametrize(
    "manifest", manifests(), ids=lambda m: f"{m['kind']}/{m['metadata']['name']}"
)
def test_every_manifest_is_a_valid_kubernetes_resource(manifest: dict[str, Any]) -> None:
    kubernetes_validate.validate(manifest, KUBERNETES, strict=True)


def test_a_deleted_master_has_time_to_fail_its_run() -> None:
    """The grace period covers --stop-timeout plus --platform-timeout (60 s by default)."""
    [master] = [
        m
        for m in manifests()
        if m["metadata"]["name"] == "locust-master" and m["kind"] == "Deployment"
    ]
    pod = master["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    stop_timeout = int(args[args.index("--stop-timeout") + 1])
    assert pod["terminationGracePeriodSeconds"] > stop_timeout + 60


def test_the_configmaps_plugin_file_is_the_one_perfx_init_writes() -> None:
    [files] = [m for m in manifests() if m["kind"] == "ConfigMap"]
    assert files["data"]["perfx_plugin.py"] == (ROOT / "perfx_plugin.py").read_text()


def test_no_secret_is_written_into_a_recipe() -> None:
    """Tokens and passwords come from the environment or Compose secrets, at run time."""
    for name, service in compose()["services"].items():
        for key, value in service.get("environment", {}).items():
            if re.search("TOKEN|PASSWORD", key) and not key.endswith("_FILE"):
                assert str(value).startswith("${"), f"{name}: {key}"
    dockerfile = (DEPLOY / "Dockerfile").read_text().splitlines()
    assert not [line for line in dockerfile if re.match(r"(ENV|ARG)\b.*(TOKEN|PASSWORD)", line)]


def secret_refs(node: Any) -> Iterator[str]:
    """The name of every Secret a manifest reads."""
    if isinstance(node, dict):
        if "secretKeyRef" in node:
            yield node["secretKeyRef"]["name"]
        for value in node.values():
            yield from secret_refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from secret_refs(value)


def test_applying_the_manifests_keeps_the_users_secret() -> None:
    """The header has the user create the Secret first; one in the file would replace it."""
    header = "".join(line for line in MANIFESTS.read_text().splitlines(True) if line[:1] == "#")
    read = set(secret_refs(manifests()))

    assert read == {"perfx-tokens"}
    assert [m["metadata"]["name"] for m in manifests() if m["kind"] == "Secret"] == []
    assert all(f"kubectl create secret generic {name}" in header for name in read)


def dockerignored(path: str) -> bool:
    """Whether ``.dockerignore`` keeps a path out of the build context (its glob rules,
    without the ``!`` exceptions it does not use)."""
    rules = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert not [rule for rule in rules if rule.startswith("!")]
    parts = Path(path).parts
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    return any(
        fnmatch.fnmatch(prefix, rule) or fnmatch.fnmatch(prefix, rule.removeprefix("**/"))
        or (rule.startswith("**/") and fnmatch.fnmatch(parts[j], rule[3:]))
        for rule in rules
        for j, prefix in enumerate(prefixes)
    )  # fmt: skip


def test_the_image_build_sends_what_pip_install_reads_and_no_checkout_clutter() -> None:
    for clutter in (
        ".git/HEAD",
        ".venv/bin/python",
        "examples/.venv/lib/x.py",
        "dist/x.whl",
        "locust_perfx/__pycache__/cli.cpython-311.pyc",
        "perfx-run_1.final.json",
    ):
        assert dockerignored(clutter), clutter
    needed = ["setup.cfg", "setup.py", "pyproject.toml", "README.rst", "LICENSE", "MANIFEST.in"]
    needed += [
        p.relative_to(ROOT).as_posix()
        for p in (ROOT / "locust_perfx").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    ]
    assert [path for path in needed if dockerignored(path)] == []  # fmt: skip


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's ``${NAME}``, ``${NAME:-default}``, ``${NAME:?error}`` and ``$$`` (a ``$``)."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, kind, text = match.groups()
        if variables.get(name):
            return variables[name]
        assert kind != "?", f"compose requires {name}: {text}"
        return text if kind == "-" else ""

    return INTERPOLATION.sub(one, value)


class Service:
    """One Compose service as this machine runs it: command, environment and mounts."""

    def __init__(self, name: str, variables: Mapping[str, str], volumes: Path) -> None:
        spec = compose()["services"][name]
        self.entrypoint = [
            interpolate(str(a), variables) for a in spec.get("entrypoint", ["locust"])
        ]
        self.command = [interpolate(str(a), variables) for a in spec["command"]]
        self.environment = {
            k: interpolate(str(v), variables) for k, v in spec.get("environment", {}).items()
        }
        self.mounts: dict[str, Path] = {}
        for volume in spec.get("volumes", []):
            source, inside = volume.split(":")[:2]
            local = DEPLOY / source if source.startswith(".") else volumes / source
            local.mkdir(parents=True, exist_ok=True)
            self.mounts[inside] = local

    def argv(self) -> list[str]:
        """The container's command, with each mounted path where this machine has it.

        The master's shell entrypoint only checks the run id, then execs Locust with the
        command (test_the_master_without_a_run_id_refuses_to_start runs it): here, Locust.
        """
        entrypoint = self.entrypoint
        if entrypoint[:2] == ["sh", "-c"]:
            assert entrypoint[2].endswith('; exec locust "$@"') and entrypoint[3:] == ["locust"]
            entrypoint = ["locust"]
        argv = [*entrypoint, *self.command]
        for inside, local in self.mounts.items():
            argv = [arg.replace(inside, str(local)) for arg in argv]
        return argv


def interpolated(node: Any, variables: Mapping[str, str]) -> Any:
    """Every string of a part of the compose file, as Compose interpolates it."""
    if isinstance(node, dict):
        return {k: interpolated(v, variables) for k, v in node.items()}
    if isinstance(node, list):
        return [interpolated(v, variables) for v in node]
    return interpolate(node, variables) if isinstance(node, str) else node


TOKENS = {
    "PERFX_PLATFORM_TOKEN": "platform-secret",
    "PERFX_INFLUXDB_TOKEN": "influxdb-secret",
    "INFLUXDB_PASSWORD": "influxdb-password",
    "GRAFANA_ADMIN_PASSWORD": "grafana-password",
}
"""What the header asks for before the first step; no run id yet."""


def test_the_headers_first_step_needs_no_run_id() -> None:
    """Compose interpolates the whole file whatever services are named: nothing may require
    the run id, which exists only once the platform this file starts has created it."""
    interpolated(compose(), TOKENS)  # raises on a required variable that is missing
    read = {name for name, *_ in re.findall(r"\$\{(\w+)(?::([?-])([^}]*))?\}", COMPOSE.read_text())}
    read |= {secret["environment"] for secret in compose()["secrets"].values()}
    for variable in {v for v in read if re.search("TOKEN|PASSWORD", v)}:
        assert variable in TOKENS, f"{variable} is read but the header does not name it"
    header = "".join(line for line in COMPOSE.read_text().splitlines(True) if line[:1] == "#")
    assert f"docker compose up -d {' '.join(HEADER_STEPS)}" in header
    assert all(f"{name}=" in header for name in TOKENS)


def test_a_compose_implementation_accepts_the_file_before_any_run_exists() -> None:
    """podman-compose, a Compose implementation, interpolates and checks the whole file."""
    env = {k: v for k, v in os.environ.items() if k != "PERFX_RUN_ID"} | TOKENS
    config = subprocess.run(
        [sys.executable, "-m", "podman_compose", "-f", str(COMPOSE), "config"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert config.returncode == 0, config.stderr
    services = yaml.safe_load(config.stdout)["services"]
    assert services["master"]["environment"]["PERFX_RUN_ID"] == ""
    assert "${PERFX_RUN_ID:?" in services["master"]["entrypoint"][2]  # checked at start


def test_the_master_without_a_run_id_refuses_to_start(tmp_path: Path) -> None:
    master = Service("master", TOKENS, tmp_path / "volumes")
    started = subprocess.run(
        [*master.entrypoint, *master.command], env={**os.environ, **master.environment},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert started.returncode != 0
    assert "set PERFX_RUN_ID to a pending run id" in started.stderr


@pytest.mark.slow
def test_the_compose_recipe_runs_a_test_across_hosts(
    host_runner: HostRunner,
    topology: Topology,
    target: Target,
    victoria_metrics: VictoriaMetrics,
    tmp_path: Path,
) -> None:
    """The platform, master and two workers run the compose file's own commands and
    environment, each service on a host of its own, found by its service name. InfluxDB 2
    is played by VictoriaMetrics (its v2 write API) at ``influxdb:8086``; the target is
    the test's own."""
    topology.name({"platform": "services", "influxdb": "services", "master": "master"})
    topology.expose(victoria_metrics.url, port=8086)
    target_url, _ = topology.expose(target.url)
    variables = {
        "PERFX_PLATFORM_TOKEN": "platform-secret",
        "PERFX_INFLUXDB_TOKEN": "influxdb-secret",
        "WORKERS": "2",
        "USERS": "4",
        "SPAWN_RATE": "4",
        "RUN_TIME": "4s",
    }
    platform = Service("platform", variables, tmp_path / "volumes")
    served = host_runner.command("services", platform.argv(), platform.environment)
    served.wait_for(LISTENING.format(url=""))
    new_run = subprocess.run(
        topology.services.command(
            [sys.executable, "-m", "locust_perfx.reference.cli", "new-run",
             "--url", "http://platform:8000", "--schema", str(DEPLOY / "locust" / "schema.json"),
             "--host", target_url]
        ),
        env={**os.environ, "PERFX_PLATFORM_TOKEN": "platform-secret"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert new_run.returncode == 0, new_run.stderr
    run_id = new_run.stdout.strip()
    variables["PERFX_RUN_ID"] = run_id
    image_home = tmp_path / "home-locust"  # the image's working folder, where `perfx init` wrote
    image_home.mkdir()
    subprocess.run([sys.executable, "-m", "locust_perfx.cli", "init", str(image_home)], check=True)
    master = Service("master", variables, tmp_path / "volumes")
    worker = Service("worker", variables, tmp_path / "volumes")
    started = host_runner.command("master", master.argv(), master.environment, cwd=image_home)
    for label in ("w1", "w2"):
        host_runner.command(label, worker.argv(), worker.environment, cwd=image_home)
    assert started.wait(90) == 0, started.output
    show = subprocess.run(
        topology.services.command(
            [sys.executable, "-m", "locust_perfx.reference.cli", "show", run_id, "--url", "http://platform:8000"]
        ),
        env={**os.environ, "PERFX_PLATFORM_TOKEN": "platform-secret"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert show.returncode == 0, show.stderr
    run = json.loads(show.stdout)
    assert run["status"] == "completed", run
    assert run["summary"]["workers"] == 2
    assert run["summary"]["total"]["requests"] == target.total > 0
    intervals = victoria_metrics.export(
        f'{{__name__="locust_requests_requests",run_id="{run_id}"}}'
    )
    assert sum(sum(s["values"]) for s in intervals) == target.total  # type: ignore[misc,arg-type]


def test_pods_run_read_only_and_a_saved_final_status_outlives_the_master_pod() -> None:
    deployments = {m["metadata"]["name"]: m for m in manifests() if m["kind"] == "Deployment"}
    for deployment in deployments.values():
        [container] = deployment["spec"]["template"]["spec"]["containers"]
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
    pod = deployments["locust-master"]["spec"]["template"]["spec"]
    [master] = pod["containers"]
    state_dir = {e["name"]: e.get("value") for e in master["env"]}["PERFX_STATE_DIR"]
    [mount] = [m for m in master["volumeMounts"] if m["mountPath"] == state_dir]
    assert not mount.get("readOnly")
    [volume] = [v for v in pod["volumes"] if v["name"] == mount["name"]]
    claims = [m["metadata"]["name"] for m in manifests() if m["kind"] == "PersistentVolumeClaim"]
    assert volume["persistentVolumeClaim"]["claimName"] in claims  # not an emptyDir
