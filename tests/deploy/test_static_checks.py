"""Checks of docker/ that need no Docker engine and no cluster.

Every Dockerfile through hadolint; the compose file against the Compose
Specification's JSON schema; the nginx config through ``nginx -t``; the
Prometheus config and rules through promtool; the Kubernetes manifests against
the Kubernetes API schemas (kubernetes-validate) and yamllint; the shell scripts
through ``sh -n``; the Grafana dashboard rebuilt from its code.

``schemas/compose-spec.json`` is compose-spec/compose-spec's
``schema/compose-spec.json`` at commit 170098b (2026-06-23, Apache-2.0),
vendored because CI reaches package registries only.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from ds_triton.cli import build_parser
from tests.deploy.queries import adapter_queries, dashboard_queries, rule_queries
from tests.deploy.stack import DOCKER, ROOT, ReplicaPorts, make_tls, nginx_test, render_nginx_config

VENV_BIN = Path(sys.executable).parent
COMPOSE_SCHEMA = Path(__file__).parent / "schemas" / "compose-spec.json"
KUBERNETES = DOCKER / "kubernetes"


def run(*command: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(c) for c in command], capture_output=True, text=True, cwd=ROOT)


def assert_ok(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 0, f"{' '.join(map(str, result.args))}\n{result.stdout}\n{result.stderr}"


def dockerfiles() -> list[Path]:
    """Every Dockerfile of the project (they live under docker/)."""
    return sorted(p for p in DOCKER.rglob("Dockerfile*") if not p.name.endswith(".dockerignore"))


def serve_default(option: str) -> Any:
    subparsers = build_parser()._subparsers
    assert subparsers is not None
    serve = subparsers._group_actions[0].choices["serve"]
    return next(a.default for a in serve._actions if option in a.option_strings)


@pytest.mark.parametrize("dockerfile", dockerfiles(), ids=lambda p: str(p.relative_to(ROOT)))
def test_hadolint_passes_every_dockerfile(dockerfile: Path) -> None:
    assert_ok(run(VENV_BIN / "hadolint", dockerfile))


def test_there_is_a_server_and_a_balancer_dockerfile() -> None:
    assert {DOCKER / "Dockerfile", DOCKER / "nginx" / "Dockerfile"} <= set(dockerfiles())


def test_compose_file_follows_the_compose_specification() -> None:
    assert_ok(run(VENV_BIN / "check-jsonschema", "--schemafile", COMPOSE_SCHEMA, DOCKER / "compose.yaml"))


def test_compose_replicas_drain_before_docker_kills_them() -> None:
    compose = yaml.safe_load((DOCKER / "compose.yaml").read_text())
    replicas = {name: s for name, s in compose["services"].items() if name.startswith("triton-")}
    assert len(replicas) >= 2
    for name, service in replicas.items():
        # nginx and Prometheus find the replicas through this alias
        assert "triton" in service["networks"]["default"]["aliases"], name
        grace = int(service["stop_grace_period"].rstrip("s"))
        assert grace > serve_default("--drain-timeout"), name
        assert service["healthcheck"]["test"][-1] == "/opt/ds-triton/docker/ready.sh", name


def test_nginx_accepts_the_config(tmp_path: Path) -> None:
    tls = make_tls(tmp_path)  # nginx -t loads the certificate
    environment = {"NGINX_TLS_CERT": str(tls.cert), "NGINX_TLS_KEY": str(tls.key)}
    replicas = [ReplicaPorts(8000, 8001, 8002, 8003), ReplicaPorts(9000, 9001, 9002, 9003)]
    result = nginx_test(render_nginx_config(environment, replicas))
    assert result.returncode == 0, result.stderr
    assert "[warn]" not in result.stderr, result.stderr


def test_promtool_accepts_the_prometheus_config_and_rules() -> None:
    assert_ok(run("promtool", "check", "config", DOCKER / "prometheus" / "prometheus.yml"))
    assert_ok(run("promtool", "check", "rules", DOCKER / "prometheus" / "rules.yml"))


def test_promtool_accepts_the_kubernetes_scrape_jobs(tmp_path: Path) -> None:
    config_map = yaml.safe_load((KUBERNETES / "prometheus-scrape.yaml").read_text())
    jobs = yaml.safe_load(config_map["data"]["scrape-configs.yml"])
    compose_jobs = yaml.safe_load((DOCKER / "prometheus" / "prometheus.yml").read_text())["scrape_configs"]
    # The rules and the dashboard name these jobs: both setups must have them.
    assert [j["job_name"] for j in jobs] == [j["job_name"] for j in compose_jobs]
    # Debian's Prometheus is built without Kubernetes discovery: promtool checks
    # the jobs (relabelling included) with static targets in its place.
    for job in jobs:
        assert job.pop("kubernetes_sd_configs") == [{"role": "pod"}]
        job["static_configs"] = [{"targets": ["127.0.0.1:8002"]}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"scrape_configs": jobs}))
    assert_ok(run("promtool", "check", "config", config))


def test_every_alert_compares_one_query_with_a_number() -> None:
    # rule_queries() refuses any other shape; the slow suite runs each query.
    assert len(rule_queries()) >= 6
    assert len(adapter_queries()) == 2
    assert len(dashboard_queries()) >= 25


def test_the_dashboard_json_is_what_its_code_builds() -> None:
    assert_ok(run(sys.executable, DOCKER / "grafana" / "dashboard.py", "--check"))


@pytest.mark.parametrize("version", ["1.31.0", "1.37.0"])
def test_kubernetes_manifests_validate_against_the_api(version: str) -> None:
    manifests = sorted(KUBERNETES.glob("*.yaml"))
    assert_ok(run(VENV_BIN / "kubernetes-validate", "--strict", "-k", version, *manifests))


def test_yamllint_passes_docker_folder() -> None:
    assert_ok(run(VENV_BIN / "yamllint", "--strict", "-c", DOCKER / ".yamllint.yaml", DOCKER))


def test_the_pod_outlives_its_drain_and_is_ready_only_with_its_models() -> None:
    deployment = yaml.safe_load((KUBERNETES / "deployment.yaml").read_text())
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    pre_stop = int(container["lifecycle"]["preStop"]["exec"]["command"][-1])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + serve_default("--drain-timeout") + 5
    assert container["readinessProbe"]["exec"]["command"] == ["/opt/ds-triton/docker/ready.sh"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert volumes[mounts["/dev/shm"]]["emptyDir"]["medium"] == "Memory"
    assert "persistentVolumeClaim" in volumes[mounts["/models"]]


@pytest.mark.parametrize(
    "script",
    ["entrypoint.sh", "ready.sh", "make-tls.sh", "nginx/entrypoint.sh", "nginx/render.sh"],
)
def test_shell_scripts_parse(script: str) -> None:
    path = DOCKER / script
    shell = "bash" if path.read_text().startswith("#!/usr/bin/env bash") else "sh"
    assert_ok(run(shell, "-n", path))
    assert path.stat().st_mode & 0o111, f"{script} is not executable"
