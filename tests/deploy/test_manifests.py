"""docker-compose and Kubernetes manifests: valid, and configured only with real settings."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from journey.settings import Settings
from stream.brokers.apache import KAFKA_VERSION
from stream.kafka.topics import TopicNames
from tests.fixtures.tools import require_tool

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
SETTINGS = {f"JOURNEY_{name.upper()}" for name in Settings.model_fields}


def documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def test_compose_file_is_valid_for_docker_compose() -> None:
    compose = require_tool("docker-compose")
    result = subprocess.run(
        [compose, "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_has_the_services_and_scales_workers() -> None:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert {"kafka", "topics", "worker", "simulator", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert "controller" in services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft
    worker = services["worker"]
    assert "container_name" not in worker  # --scale worker=N needs unnamed containers
    assert all(":" not in str(port) for port in worker.get("ports", []))  # no fixed host port
    assert services["topics"]["command"] == ["topics", "create"]
    assert worker["depends_on"]["topics"]["condition"] == "service_completed_successfully"


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_kubernetes_manifest_validates_against_the_schemas(path: Path) -> None:
    for document in documents(path):
        kubernetes_validate.validate(
            document, desired_version=kubernetes_validate.latest_version(), strict=True
        )


def test_kustomization_lists_the_manifests() -> None:
    listed = set(yaml.safe_load((K8S / "kustomization.yaml").read_text())["resources"])
    assert listed == {p.name for p in MANIFESTS if not p.name.endswith(".example.yaml")}


def test_worker_deployment_has_probes_resources_and_scrape_annotations() -> None:
    (deployment,) = documents(K8S / "deployment.yaml")
    pod = deployment["spec"]["template"]
    (container,) = pod["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert set(container["resources"]) == {"requests", "limits"}
    assert pod["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert pod["spec"]["securityContext"]["runAsNonRoot"] is True


def test_workers_get_the_api_token_from_a_secret() -> None:
    (deployment,) = documents(K8S / "deployment.yaml")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = {item["name"]: item for item in container["env"]}
    reference = env["JOURNEY_API_TOKEN"]["valueFrom"]["secretKeyRef"]
    (secret,) = documents(K8S / "secret-api-token.example.yaml")
    assert secret["kind"] == "Secret" and secret["metadata"]["name"] == reference["name"]
    assert reference["key"] in secret["stringData"]
    # The probes stay open: /health needs no token.
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    worker = compose["services"]["worker"]
    assert worker["secrets"] == ["journey_api_token"]
    assert worker["environment"]["JOURNEY_API_TOKEN_FILE"] == "/run/secrets/journey_api_token"
    assert worker["environment"]["JOURNEY_BROKER"]  # the shared settings are still there
    assert compose["secrets"]["journey_api_token"]["file"].startswith("./deploy/secrets/")
    assert "*" in (ROOT / "deploy/secrets/.gitignore").read_text().split()


def _compose_variables() -> set[str]:
    names: set[str] = set()
    for compose in ("docker-compose.yml", "docker-compose.secured.yml"):
        for service in yaml.safe_load((ROOT / compose).read_text())["services"].values():
            environment = service.get("environment") or {}
            names |= {k for k in environment if k.startswith("JOURNEY_")}
    return names


def _k8s_variables() -> set[str]:
    names: set[str] = set()
    for path in MANIFESTS:
        for document in documents(path):
            for key in {**document.get("data", {}), **document.get("stringData", {})}:
                if key.startswith("JOURNEY_"):
                    names.add(key)
            names |= set(re.findall(r"name: (JOURNEY_\w+)", yaml.safe_dump(document)))
    return names


def _image_variables() -> set[str]:
    return set(re.findall(r"\b(JOURNEY_\w+)=", (ROOT / "deploy" / "Dockerfile").read_text()))


def test_every_variable_in_the_deployments_is_a_setting() -> None:
    used = _compose_variables() | _k8s_variables() | _image_variables()
    assert used, "no JOURNEY_ variables found: the parsing is broken"
    assert used <= SETTINGS, used - SETTINGS
    assert {"JOURNEY_BROKER", "JOURNEY_PARTITIONS", "JOURNEY_CANONICAL_URL", "JOURNEY_SASL_PASSWORD"} <= used


def test_dockerfile_is_multi_stage_non_root_with_a_health_check() -> None:
    text = (ROOT / "deploy" / "Dockerfile").read_text()
    stages = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert stages == ["python:3.11-slim", "python:3.11-slim"]
    final = text.split("\nFROM ")[-1]
    assert "USER 10001" in final and "HEALTHCHECK" in final and "/health" in final
    assert 'ENTRYPOINT ["journey"]' in final and 'CMD ["worker"]' in final
    assert "apt-get" not in final and "gcc" not in final


def test_the_image_gets_every_package_the_project_installs() -> None:
    # The `journey` command lives in cli/: an image without it builds, and then every
    # container exits at start with an import error.
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = {name.rstrip("*") for name in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    copied = set(
        re.findall(r"^COPY (\w+) \./\1$", (ROOT / "deploy" / "Dockerfile").read_text(), re.MULTILINE)
    )
    assert packages == copied, packages ^ copied
    entry = project["project"]["scripts"]["journey"].split(".")[0]
    assert entry in copied


def test_the_deployments_name_the_kafka_version_the_suite_tests() -> None:
    """docker-compose.yml's broker image, the Kubernetes ConfigMap's annotation and the Maven
    project that fetches the tests' broker all name the launcher's version."""
    root = Path(__file__).resolve().parents[2]
    pom = (root / "deploy" / "kafka" / "pom.xml").read_text()
    pinned = re.search(r"<kafka.version>([^<]+)</kafka.version>", pom)
    assert pinned is not None and pinned.group(1) == KAFKA_VERSION
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    assert compose["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
    config = yaml.safe_load((root / "deploy" / "k8s" / "configmap.yaml").read_text())
    assert config["metadata"]["annotations"]["journey.dev/tested-kafka-version"] == KAFKA_VERSION


def test_the_secured_compose_variant_is_valid_and_keeps_secrets_in_secrets() -> None:
    compose = require_tool("docker-compose")
    files = ["-f", str(ROOT / "docker-compose.yml"), "-f", str(ROOT / "docker-compose.secured.yml")]
    result = subprocess.run(
        [compose, *files, "config"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    merged = yaml.safe_load(result.stdout)
    services = merged["services"]
    for name in ("topics", "worker", "simulator"):
        env = services[name]["environment"]
        assert (
            env["JOURNEY_SECURITY_PROTOCOL"] == "SASL_SSL" and env["JOURNEY_BROKER"] == "kafka://kafka:9094"
        )
        assert "JOURNEY_SASL_PASSWORD" not in env  # the password comes from a secret file
        mounted = {secret["source"] for secret in services[name]["secrets"]}
        assert f"/run/secrets/{'journey_kafka_password'}" == env["JOURNEY_SASL_PASSWORD_FILE"]
        assert {"journey_kafka_password", "kafka_ca"} <= mounted
    assert services["worker"]["environment"]["JOURNEY_API_TOKEN_FILE"]  # the base's token kept
    assert services["topics"]["depends_on"]["acls"]["condition"] == "service_completed_successfully"
    for secret in merged["secrets"].values():
        assert "/deploy/secrets/" in secret["file"]  # git-ignored
    properties = (ROOT / "deploy/kafka/secured/server.properties").read_text()
    assert "StandardAuthorizer" in properties and "allow.everyone.if.no.acl.found=false" in properties
    assert "SASL_SSL://kafka:9094" in properties


def test_the_compose_acls_are_journeys_for_its_topics() -> None:
    # deploy/kafka/secured/acls.sh names journey's public topics one by one, its internal
    # topics by the app id's prefix: the list must follow TopicNames.
    script = (ROOT / "deploy/kafka/secured/acls.sh").read_text()
    (listed,) = re.findall(r'^topics="([^"]+)"', script, re.MULTILINE)
    names = TopicNames("", "journey")
    public = {topic for topic in names.all if not topic.startswith("journey-")}
    assert set(listed.split()) == public
    assert "--topic journey- --resource-pattern-type prefixed" in script
    assert "--transactional-id journey- --resource-pattern-type prefixed" in script
    assert "--group journey " in script


def test_kubernetes_reads_kafka_credentials_and_tls_from_secrets() -> None:
    (credentials,) = documents(K8S / "secret.example.yaml")
    (tls,) = documents(K8S / "secret-tls.example.yaml")
    ca = credentials["stringData"]["JOURNEY_SSL_CA_FILE"]
    for path in (K8S / "deployment.yaml", K8S / "job-topics.yaml"):
        (workload,) = documents(path)
        pod = workload["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        refs = [item["secretRef"] for item in container["envFrom"] if "secretRef" in item]
        assert refs == [{"name": credentials["metadata"]["name"], "optional": True}], path.name
        (volume,) = [v for v in pod["volumes"] if "secret" in v]
        assert volume["secret"]["secretName"] == tls["metadata"]["name"] and volume["secret"]["optional"]
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == volume["name"]]
        assert ca.startswith(mount["mountPath"] + "/") and mount["readOnly"]
        assert pod["securityContext"]["fsGroup"] == 10001  # the key is readable by the group only
        # No password in a manifest: only the example Secret holds one.
        assert "JOURNEY_SASL_PASSWORD" not in path.read_text()
