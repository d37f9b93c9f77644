"""deploy/k8s: every manifest valid against the Kubernetes API schemas (kubernetes-validate,
offline), and the layout docs/deploy.md describes: sticky sessions, /healthz probes, a
migration Job, settings from a ConfigMap and a Secret template without values, HPA, GPU
Ollama."""

from __future__ import annotations

from typing import Any

import kubernetes_validate
import pytest

from tests.support.deploy import (
    DELIBERATELY_DEFAULTED,
    ROOT,
    load_yaml,
    load_yaml_documents,
    setting_names,
)

K8S = ROOT / "deploy" / "k8s"
KUBERNETES_VERSION = "1.32.0"  # GKE's regular channel; the API groups used are GA since 1.23
# Custom resources have no schema in the Kubernetes API; checked by hand below.
CUSTOM_KINDS = {("cloud.google.com/v1", "BackendConfig")}
MANIFESTS = sorted(p for p in K8S.rglob("*.yaml") if p.name != "kustomization.yaml")


def documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p.relative_to(K8S).as_posix(), d) for p in MANIFESTS for d in load_yaml_documents(p)]


def find(kind: str, name: str) -> dict[str, Any]:
    matches = [d for _, d in documents() if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(matches) == 1, f"{kind}/{name}: {len(matches)} found"
    return matches[0]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    return next(c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name)


def standard_documents() -> list[tuple[str, dict[str, Any]]]:
    return [(p, d) for p, d in documents() if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]


@pytest.mark.parametrize(
    ("path", "doc"), standard_documents(), ids=lambda v: v if isinstance(v, str) else v["kind"]
)
def test_manifest_is_valid_against_the_kubernetes_schema(path: str, doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_only_custom_resource_is_gkes_backend_config() -> None:
    custom = [(d["apiVersion"], d["kind"]) for _, d in documents()]
    custom = [kind for kind in custom if kind in CUSTOM_KINDS]
    assert custom == [("cloud.google.com/v1", "BackendConfig")]
    assert len(standard_documents()) + len(custom) == len(documents())


def test_the_validator_rejects_a_broken_manifest() -> None:
    broken = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x"},
              "spec": {"replicas": "two", "selector": {}, "template": {}}}  # fmt: skip
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, KUBERNETES_VERSION, strict=True)


def test_every_manifest_is_applied_by_a_kustomization_except_the_secret_template() -> None:
    listed = set()
    for kustomization in K8S.rglob("kustomization.yaml"):
        for resource in load_yaml(kustomization)["resources"]:
            path = (kustomization.parent / resource).resolve()
            assert path.exists(), f"{kustomization}: {resource} does not exist"
            listed.add(path)
    assert {p.resolve() for p in MANIFESTS} - listed == {(K8S / "secret.template.yaml").resolve()}


def test_everything_lives_in_the_ledger_namespace() -> None:
    for path, doc in documents():
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "ledger", f"{path} {doc['kind']}"


def test_the_secret_template_holds_placeholders_only() -> None:
    secret = find("Secret", "ledger-secrets")
    assert "data" not in secret
    assert set(secret["stringData"]) == {"DATABASE_URL", "REDIS_URL", "AUTH_COOKIE_KEY"}
    assert all(v.startswith("<") and v.endswith(">") for v in secret["stringData"].values())


def test_every_setting_is_configured_or_deliberately_defaulted() -> None:
    config = set(find("ConfigMap", "ledger-config")["data"])
    secret = set(find("Secret", "ledger-secrets")["stringData"])
    assert config & secret == set()
    assert (config | secret) - setting_names() == set()
    assert setting_names() - (config | secret) == set(DELIBERATELY_DEFAULTED)


def test_app_and_migration_read_the_same_settings() -> None:
    expected = [
        {"configMapRef": {"name": "ledger-config"}},
        {"secretRef": {"name": "ledger-secrets"}},
    ]
    assert container(find("Deployment", "ledger-app"), "app")["envFrom"] == expected
    job = find("Job", "ledger-migrate")
    assert container(job, "migrate")["envFrom"] == expected
    assert container(job, "migrate")["command"] == ["python", "-m", "core", "migrate"]
    assert (
        container(job, "migrate")["image"]
        == container(find("Deployment", "ledger-app"), "app")["image"]
    )


def test_readiness_is_healthz_and_liveness_does_not_restart_on_outages() -> None:
    app = container(find("Deployment", "ledger-app"), "app")
    assert app["readinessProbe"]["httpGet"]["path"] == "/healthz"
    assert app["readinessProbe"]["timeoutSeconds"] >= 3  # /healthz answers within ~2 s
    assert app["livenessProbe"]["httpGet"]["path"] == "/_stcore/health"


def test_pods_run_as_the_image_non_root_user() -> None:
    for kind, name in (("Deployment", "ledger-app"), ("Job", "ledger-migrate")):
        security = find(kind, name)["spec"]["template"]["spec"]["securityContext"]
        assert security["runAsNonRoot"] is True and security["runAsUser"] == 10001


def test_a_browser_stays_on_its_replica() -> None:
    service = find("Service", "ledger-app")
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    selector = service["spec"]["selector"]
    labels = find("Deployment", "ledger-app")["spec"]["template"]["metadata"]["labels"]
    assert selector.items() <= labels.items()
    backend = find("BackendConfig", "ledger-app")
    assert (
        '"default": "ledger-app"'
        in service["metadata"]["annotations"]["cloud.google.com/backend-config"]
    )
    assert backend["spec"]["sessionAffinity"]["affinityType"] == "GENERATED_COOKIE"
    assert backend["spec"]["timeoutSec"] >= 3600  # the websocket outlives the default 30 s
    assert backend["spec"]["healthCheck"]["requestPath"] == "/healthz"
    ingress = find("Ingress", "ledger")
    assert (
        ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["name"]
        == "ledger-app"
    )


def test_the_autoscaler_scales_the_app_deployment() -> None:
    hpa = find("HorizontalPodAutoscaler", "ledger-app")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "ledger-app",
    }
    assert hpa["spec"]["minReplicas"] >= 2


def test_ollama_runs_on_a_gpu_with_a_persistent_model_cache() -> None:
    ollama = find("StatefulSet", "ollama")
    server = container(ollama, "ollama")
    assert server["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"name": "models", "mountPath": "/root/.ollama"} in server["volumeMounts"]
    assert ollama["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "models"
    host = find("ConfigMap", "ledger-config")["data"]["OLLAMA_HOST"]
    assert host == "http://ollama.ledger.svc.cluster.local:11434"
    assert find("Service", "ollama")["spec"]["ports"][0]["port"] == 11434


def test_prometheus_scrapes_every_app_pod() -> None:
    annotations = find("Deployment", "ledger-app")["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/path"] == "/metrics"
    assert annotations["prometheus.io/port"] == "8501"
