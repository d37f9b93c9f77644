"""docker-compose.yml: valid Compose, complete settings, secrets from .env, health and data."""

from __future__ import annotations

import re
from typing import Any

import jsonschema
import pytest

from core.config import Settings, load_settings
from tests.support.deploy import (
    DELIBERATELY_DEFAULTED,
    ROOT,
    interpolations,
    load_yaml,
    setting_names,
    vendored_schema,
)

COMPOSE = ROOT / "docker-compose.yml"
ONE_SHOT = {"migrate", "ollama-pull"}
SECRET_NAME = re.compile(r"(PASSWORD|SECRET|KEY|TOKEN)$")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = load_yaml(COMPOSE)
    return data


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, Any]:
    services: dict[str, Any] = compose["services"]
    return services


def app_env(services: dict[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in services["app"]["environment"].items()}


@pytest.mark.parametrize("path", ["docker-compose.yml", "deploy/compose.gpu.yml"])
def test_compose_files_follow_the_compose_specification(path: str) -> None:
    schema = vendored_schema("compose-spec.json")
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(load_yaml(ROOT / path))
    ]
    assert errors == []


def test_the_schema_check_catches_a_broken_compose_file() -> None:
    schema = vendored_schema("compose-spec.json")
    broken = {
        "services": {"app": {"image": "x", "depends_on": {"db": {"condition": "when_ready"}}}}
    }
    assert not jsonschema.validators.validator_for(schema)(schema).is_valid(broken)


def test_the_stack_has_every_service_the_design_names(services: dict[str, Any]) -> None:
    assert set(services) == {
        "app",
        "migrate",
        "postgres",
        "redis",
        "ollama",
        "ollama-pull",
        "prometheus",
        "grafana",
        "lb",
    }
    assert services["postgres"]["image"] == "postgres:16"
    assert services["redis"]["image"] == "redis:7"


def test_every_setting_the_app_reads_is_provided_or_deliberately_defaulted(
    services: dict[str, Any],
) -> None:
    provided = set(app_env(services))
    assert provided - setting_names() == set(), "app gets variables Settings does not read"
    assert setting_names() - provided == set(DELIBERATELY_DEFAULTED)


def test_defaults_in_compose_equal_the_settings_defaults(services: dict[str, Any]) -> None:
    defaults = {
        name: default
        for value in app_env(services).values()
        for name, op, default in interpolations(value)
        if op == "-" and name in setting_names()
    }
    assert len(defaults) >= 10
    for name, text in defaults.items():
        field = name.lower()
        assert (
            getattr(load_settings(**{field: text}), field) == Settings.model_fields[field].default
        ), name


def test_secrets_are_required_from_the_env_file_never_written_here(
    services: dict[str, Any],
) -> None:
    for service_name, service in services.items():
        for name, value in (service.get("environment") or {}).items():
            if SECRET_NAME.search(name):
                assert re.fullmatch(r"\$\{\w+:\?[^}]+\}", str(value)), f"{service_name}.{name}"
    env = app_env(services)
    for url in ("DATABASE_URL", "REDIS_URL"):
        password = re.search(r"://[^:/@]*:([^@]*)@", env[url])
        assert password and re.fullmatch(r"\$\{\w+_PASSWORD:\?[^}]+\}", password.group(1)), url


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    documented = set(re.findall(r"^#?\s*(\w+)=", (ROOT / ".env.example").read_text(), re.M))
    used = {name for name, _, _ in interpolations(COMPOSE.read_text())}
    assert used - documented == set()


def test_every_long_running_service_has_a_healthcheck(services: dict[str, Any]) -> None:
    for name, service in services.items():
        if name in ONE_SHOT:
            assert service["restart"] == "no", name
            continue
        check = service.get("healthcheck") or {}
        assert check.get("test") and not check.get("disable"), f"{name} has no healthcheck"


def test_app_health_is_judged_by_healthz(services: dict[str, Any]) -> None:
    assert "/healthz" in " ".join(services["app"]["healthcheck"]["test"])


@pytest.mark.parametrize(
    ("service", "path"),
    [
        ("postgres", "/var/lib/postgresql/data"),
        ("redis", "/data"),
        ("ollama", "/root/.ollama"),
        ("grafana", "/var/lib/grafana"),
        ("prometheus", "/prometheus"),
    ],
)
def test_stateful_services_keep_their_data_in_named_volumes(
    compose: dict[str, Any], service: str, path: str
) -> None:
    mounts = dict(reversed(m.split(":")[:2]) for m in compose["services"][service]["volumes"])
    assert mounts.get(path) in compose["volumes"], f"{service}:{path} is not on a named volume"


def test_redis_writes_an_append_only_file(services: dict[str, Any]) -> None:
    command = " ".join(services["redis"]["command"])
    assert "--appendonly yes" in command


def test_app_starts_only_after_the_migration_succeeded(services: dict[str, Any]) -> None:
    app, migrate = services["app"], services["migrate"]
    assert app["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert migrate["command"] == ["python", "-m", "core", "migrate"]
    assert (migrate["image"], migrate["build"]) == (app["image"], app["build"])
    assert migrate["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert app["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert app["depends_on"]["redis"] == {"condition": "service_healthy"}


def test_the_model_pull_talks_to_the_ollama_service(services: dict[str, Any]) -> None:
    pull = services["ollama-pull"]
    assert pull["entrypoint"][:2] == ["ollama", "pull"]
    assert pull["environment"]["OLLAMA_HOST"] == app_env(services)["OLLAMA_HOST"]
    assert pull["depends_on"]["ollama"] == {"condition": "service_healthy"}


def test_prometheus_scrapes_the_app_metrics_endpoint(services: dict[str, Any]) -> None:
    mount = next(v for v in services["prometheus"]["volumes"] if v.endswith("prometheus.yml:ro"))
    config = load_yaml(ROOT / mount.split(":")[0])
    job = next(j for j in config["scrape_configs"] if j["job_name"] == "ledger")
    assert job.get("metrics_path", "/metrics") == "/metrics"
    # Every replica, found through Docker's DNS, on the port the load balancer uses.
    assert job["dns_sd_configs"] == [{"names": ["app"], "type": "A", "port": 8501}]
    assert "ports" not in services["app"]  # only lb is published: app can be scaled
    assert any(p.endswith(":8501") for p in services["lb"]["ports"])


def test_the_load_balancer_runs_the_generated_haproxy_config(services: dict[str, Any]) -> None:
    from core import balancer

    lb = services["lb"]
    mount = next(v for v in lb["volumes"] if v.endswith("haproxy.cfg:ro"))
    assert (ROOT / mount.split(":")[0]).read_text() == balancer.compose_config()
    assert lb["depends_on"]["app"] == {"condition": "service_healthy"}
    assert services["app"]["stop_grace_period"] == "150s"  # longer than DRAIN_SECONDS


def test_grafana_is_provisioned_from_the_deploy_folder(services: dict[str, Any]) -> None:
    mounts = dict(v.split(":")[:2] for v in services["grafana"]["volumes"] if v.startswith("./"))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    dashboards = mounts["./deploy/grafana/dashboards"]
    provider = load_yaml(ROOT / "deploy/grafana/provisioning/dashboards/ledger.yml")
    assert provider["providers"][0]["options"]["path"] == dashboards
    assert (ROOT / "deploy/grafana/dashboards/ledger.json").exists()
