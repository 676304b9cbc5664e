"""The production deployment files: docker-compose.yml, Prometheus, Grafana.

`docker-compose config` and `promtool` run when installed (Debian: docker-compose,
prometheus); the structural checks need only PyYAML.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from schemas.contracts import TOPICS

yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files")

REPO = Path(__file__).resolve().parents[2]
COMPOSE = REPO / "docker-compose.yml"
PROMETHEUS = REPO / "infra" / "prometheus"
GRAFANA = REPO / "infra" / "grafana"
ROLES = {"gateway": "gateway", "worker": "worker", "api": "api", "migrate": "migrate"}
METRICS = {
    "billing_consumer_lag",
    "billing_dead_letters_total",
    "billing_last_ingest_timestamp_seconds",
    "billing_meter_alerts_open",
}


def _compose() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def _env_example() -> dict[str, str]:
    pairs = (
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    return {k.strip(): v.strip() for k, v in pairs}


def test_docker_compose_config_is_valid(tmp_path: Path) -> None:
    binary = shutil.which("docker-compose")
    if binary is None:
        pytest.skip("docker-compose not installed (apt-get install -y docker-compose)")
    ok = subprocess.run(
        [binary, "--env-file", ".env.example", "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ok.returncode == 0, ok.stderr
    services = subprocess.run(
        [binary, "--env-file", ".env.example", "config", "--services"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert set(ROLES) | {"closer", "kafka", "timescaledb"} <= set(services.stdout.split())
    # without .env the file refuses to start rather than run with empty passwords
    empty = tmp_path / "empty.env"
    empty.write_text("")
    bare = subprocess.run(
        [binary, "--env-file", str(empty), "config", "-q"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )
    assert bare.returncode != 0 and "set POSTGRES_PASSWORD in .env" in bare.stderr


def test_every_app_role_runs_one_image_with_its_command() -> None:
    services = _compose()["services"]
    images = {services[s]["image"] for s in [*ROLES, "closer"]}
    assert len(images) == 1, images
    for service, command in ROLES.items():
        assert services[service]["command"] == ["billing", command]
        assert services[service]["build"] == "."
    assert services["worker"]["deploy"]["replicas"]
    assert "close" in " ".join(services["closer"]["command"])
    assert services["kafka"]["image"].startswith("apache/kafka:3.9.")
    assert "healthcheck" in services["kafka"] and "healthcheck" in services["timescaledb"]
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"


def test_kafka_init_creates_every_contract_topic() -> None:
    script = "\n".join(_compose()["services"]["kafka-init"]["command"])
    created = set(re.findall(r"^\s*create ([a-z.0-9]+) ", script, re.M))
    assert created == set(TOPICS)


def test_no_secret_in_the_repository_files() -> None:
    text = COMPOSE.read_text()
    values = re.findall(r"^\s*[A-Z_]*(?:PASSWORD|TOKEN)[A-Z_]*:\s*(\S+)", text, re.M)
    assert len(values) >= 4
    for value in values:
        assert value.startswith("${") and ":?" in value, value
    example = _env_example()
    secrets = {k: v for k, v in example.items() if "PASSWORD" in k or "TOKEN" in k}
    assert secrets and set(secrets.values()) == {"change-me"}
    mosquitto = (REPO / "infra" / "mosquitto" / "compose" / "mosquitto.conf").read_text()
    assert "password_file /run/secrets/mosquitto_passwd" in mosquitto
    assert "allow_anonymous false" in mosquitto
    assert "./secrets/mosquitto_passwd" in text


def test_prometheus_scrapes_every_app_process() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    targets: dict[str, list[str]] = {}
    for job in config["scrape_configs"]:
        names = [t for sc in job.get("static_configs", []) for t in sc["targets"]]
        names += [f"{n}:{sd['port']}" for sd in job.get("dns_sd_configs", []) for n in sd["names"]]
        targets[job["job_name"]] = names
    assert targets["billing-gateway"] == ["gateway:9108"]
    assert targets["billing-worker"] == ["worker:9108"]
    assert targets["billing-api"] == ["api:9108"]
    assert targets["billing-closer"] == ["closer:9108"]
    env = _compose()["services"]["worker"]["environment"]
    assert env["BILLING_METRICS_PORT"] == "9108"


def test_alert_rules_cover_the_pipeline_metrics() -> None:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    exprs = " ".join(r["expr"] for g in rules["groups"] for r in g["rules"])
    assert all(name in exprs for name in METRICS)


def test_promtool_checks_config_and_rule_tests() -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool not installed (apt-get install -y prometheus)")
    for args in (["check", "config", "prometheus.yml"], ["test", "rules", "alerts.test.yml"]):
        done = subprocess.run(
            [promtool, *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stdout + done.stderr


def test_grafana_is_provisioned_with_both_dashboards() -> None:
    sources = yaml.safe_load((GRAFANA / "provisioning/datasources/datasources.yml").read_text())
    uids = {d["uid"]: d for d in sources["datasources"]}
    assert uids["prometheus"]["url"] == "http://prometheus:9090"
    assert uids["timescaledb"]["user"] == "grafana_reader"
    assert uids["timescaledb"]["secureJsonData"]["password"] == "$GRAFANA_DB_PASSWORD"
    boards = {p.name: json.loads(p.read_text()) for p in (GRAFANA / "dashboards").glob("*.json")}
    assert {b["title"] for b in boards.values()} == {"Consumption", "Pipeline health"}
    for board in boards.values():
        for panel in board["panels"]:
            for target in panel["targets"]:
                assert target["datasource"]["uid"] in uids, panel["title"]
    health = json.dumps(boards["pipeline-health.json"])
    for metric in (
        "billing_reads_received_total",
        "billing_reads_rejected_total",
        "billing_dead_letters_total",
        "billing_consumer_lag",
        "billing_read_latency_seconds_bucket",
        "billing_close_duration_seconds",
    ):
        assert metric in health, metric
    consumption = json.dumps(boards["consumption.json"])
    assert "FROM daily_consumption" in consumption and "FROM consumption_monthly" in consumption


def test_the_workers_publish_the_outbox() -> None:
    services = _compose()["services"]
    env = services["worker"]["environment"]
    assert env["BILLING_PUBLISH_EVENTS"] == "${BILLING_PUBLISH_EVENTS:-true}"
    assert env["BILLING_KAFKA_BOOTSTRAP"] == "kafka:9092"  # the rest of the app's environment
    assert env["BILLING_DATABASE_URL"].startswith("postgresql://")
    for other in ("api", "gateway", "closer", "migrate"):  # only the workers publish
        assert "BILLING_PUBLISH_EVENTS" not in services[other]["environment"], other
