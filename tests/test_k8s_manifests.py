"""deploy/k8s stays valid and honest, with no cluster and no network: every manifest is checked
against the Kubernetes JSON schema of its kind and apiVersion (kubernetes-validate ships the
schemas inside the package), then for what matters to this server: probes on the real routes
and port, a grace period longer than the drain, the HPA on the gauge bot/metrics.py defines,
selectors that match the pods, and no secret values in the files."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import SchemaNotFoundError

from bot import metrics
from bot.config import load_pipeline
from bot.settings import ServerSettings
from tests.test_deploy_files import benchmarked_calls_per_core

REPO = Path(__file__).resolve().parents[1]
K8S = REPO / "deploy" / "k8s"
# The oldest Kubernetes the manifests must work on, and the newest schemas the package ships.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.utils.latest_version())
NAME_LABEL = {"app.kubernetes.io/name": "voicebot"}
ADAPTER_RULES = "prometheus-adapter-rules.yaml"  # for the adapter's namespace: not in kustomize
SECRET_KEYS = {
    "DEEPGRAM_API_KEY",
    "ANTHROPIC_API_KEY",
    "OPENAI_API_KEY",
    "ELEVENLABS_API_KEY",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_ACCOUNT_SID",
}


def load_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                docs.append((path.name, doc))
    return docs


DOCUMENTS = load_documents()
RESOURCES = [(name, doc) for name, doc in DOCUMENTS if doc.get("kind") != "Kustomization"]


def only(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in DOCUMENTS if doc.get("kind") == kind]
    assert len(found) == 1, f"expected exactly one {kind} in deploy/k8s, found {len(found)}"
    return found[0]


def deployment() -> dict[str, Any]:
    return only("Deployment")


def container() -> dict[str, Any]:
    containers = deployment()["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1, "one server container per pod"
    return containers[0]


def plain_env() -> dict[str, str]:
    return {e["name"]: e["value"] for e in container()["env"] if "value" in e}


def resolve_port(port: int | str) -> int:
    """A probe's or Service's port (a number or the container port's name) as a number."""
    ports = container()["ports"]
    if isinstance(port, int):
        assert port in [p["containerPort"] for p in ports], f"port {port} is not a container port"
        return port
    named = [p["containerPort"] for p in ports if p.get("name") == port]
    assert named, f"no container port is named {port!r}"
    return named[0]


def schema_check(doc: dict[str, Any], version: str) -> None:
    # strict: the schemas forbid unknown fields, so a misspelled key fails too.
    kubernetes_validate.validate(doc, version, strict=True)


# -- schemas ------------------------------------------------------------------------------------


def test_the_manifests_are_there() -> None:
    kinds = sorted(doc["kind"] for _, doc in DOCUMENTS)
    assert kinds == sorted(
        [
            "ConfigMap",
            "Deployment",
            "HorizontalPodAutoscaler",
            "Kustomization",
            "PodDisruptionBudget",
            "Service",
        ]
    ), kinds


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize(
    ("filename", "doc"), RESOURCES, ids=[f"{name}:{doc['kind']}" for name, doc in RESOURCES]
)
def test_manifest_matches_the_kubernetes_schema(
    filename: str, doc: dict[str, Any], version: str
) -> None:
    try:
        schema_check(doc, version)
    except kubernetes_validate.ValidationError as exc:
        where = ".".join(str(p) for p in exc.path)
        pytest.fail(
            f"{filename}: {doc['kind']} is invalid on Kubernetes {version}: {where}: {exc.message}"
        )
    except SchemaNotFoundError as exc:
        pytest.fail(f"{filename}: {exc.message}")


def broken(mutate: Any) -> dict[str, Any]:
    doc = copy.deepcopy(deployment())
    mutate(doc)
    return doc


def _replicas_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["replicas"] = "two"


def _misspelled_probe_field(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/x"


def _port_as_text(doc: dict[str, Any]) -> None:
    doc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "7860"


def _container_without_name(doc: dict[str, Any]) -> None:
    del doc["spec"]["template"]["spec"]["containers"][0]["name"]


@pytest.mark.parametrize(
    ("mutate", "where"),
    [
        (_replicas_as_text, ["spec", "replicas"]),
        (
            _misspelled_probe_field,
            ["spec", "template", "spec", "containers", 0, "readinessProbe", "httpGet"],
        ),
        (_port_as_text, ["spec", "template", "spec", "containers", 0, "ports", 0, "containerPort"]),
        (_container_without_name, ["spec", "template", "spec", "containers", 0]),
    ],
    ids=["replicas-two", "misspelled-field", "port-as-string", "missing-required"],
)
def test_the_schema_check_rejects_a_broken_deployment(mutate: Any, where: list[Any]) -> None:
    doc = broken(mutate)
    with pytest.raises(kubernetes_validate.ValidationError) as caught:
        schema_check(doc, K8S_VERSIONS[0])
    assert list(caught.value.path) == where, caught.value.message


def test_the_schema_check_rejects_an_unknown_api_version() -> None:
    doc = copy.deepcopy(only("HorizontalPodAutoscaler"))
    doc["apiVersion"] = "autoscaling/v3"
    with pytest.raises(SchemaNotFoundError):
        schema_check(doc, K8S_VERSIONS[0])


# -- kustomize, labels, namespaces --------------------------------------------------------------


def test_kustomization_lists_every_manifest_and_sets_the_image() -> None:
    kustomization = only("Kustomization")
    listed = kustomization["resources"]
    for name in listed:
        assert (K8S / name).is_file(), f"kustomization.yaml lists {name}: no such file"
    expected = sorted({name for name, _ in RESOURCES} - {ADAPTER_RULES})
    assert sorted(listed) == expected, f"kustomization.yaml resources {listed} != {expected}"
    images = {image["name"] for image in kustomization.get("images", [])}
    assert container()["image"] in images, "kustomization.yaml `images:` must set the image"


@pytest.mark.parametrize(("filename", "doc"), RESOURCES, ids=[n for n, _ in RESOURCES])
def test_resources_are_labelled_and_namespace_less(filename: str, doc: dict[str, Any]) -> None:
    metadata = doc["metadata"]
    assert "namespace" not in metadata, f"{filename}: leave the namespace to kustomize/kubectl"
    labels = metadata.get("labels", {})
    assert NAME_LABEL.items() <= labels.items(), f"{filename}: missing {NAME_LABEL}"


# -- the Deployment -----------------------------------------------------------------------------


def test_container_port_is_the_one_the_image_serves_on() -> None:
    dockerfile = (REPO / "Dockerfile").read_text()
    cmd = re.search(r"^CMD \[(.*)\]$", dockerfile, re.M)
    assert cmd and '"--port", "7860"' in cmd.group(1), "the image's CMD serves on 7860"
    assert "command" not in container() and "args" not in container(), (
        "keep the image's CMD (`voicebot serve --port 7860`) so the port stays in one place"
    )
    assert resolve_port("http") == 7860


def test_probes_use_the_health_routes_on_the_container_port() -> None:
    c = container()
    expected = {"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/readyz"}
    for probe, path in expected.items():
        assert probe in c, f"the container has no {probe}"
        get = c[probe].get("httpGet")
        assert get, f"{probe} must be an HTTP GET"
        assert get["path"] == path, f"{probe} must GET {path}, not {get['path']}"
        assert resolve_port(get["port"]) == 7860, f"{probe} must probe the container port"
    startup = c["startupProbe"]
    window = startup["periodSeconds"] * startup["failureThreshold"]
    assert window >= 120, f"startupProbe allows {window}s for model loading: too little"


def test_routes_the_probes_use_exist() -> None:
    from server import create_app

    app = create_app(ServerSettings.from_env({}))
    paths = {getattr(route, "path", None) for route in app.routes}
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert {"/healthz", "/readyz", annotations["prometheus.io/path"]} <= paths


def test_grace_period_outlasts_the_drain_and_the_longest_call() -> None:
    pod = deployment()["spec"]["template"]["spec"]
    env = plain_env()
    assert "VOICEBOT_DRAIN_SECONDS" in env, "set VOICEBOT_DRAIN_SECONDS in the container env"
    drain = float(env["VOICEBOT_DRAIN_SECONDS"])
    settings = ServerSettings.from_env(env)  # the server accepts this env and reads the drain
    assert settings.drain_secs == drain, "the server does not read VOICEBOT_DRAIN_SECONDS"
    pre_stop = container()["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep", "preStop should sleep while endpoints are removed"
    sleep = float(pre_stop[1])
    assert 0 < sleep <= 30, f"preStop sleeps {sleep}s"
    grace = pod["terminationGracePeriodSeconds"]
    assert grace > drain + sleep, (
        f"terminationGracePeriodSeconds {grace} must exceed VOICEBOT_DRAIN_SECONDS {drain} + "
        f"the preStop sleep {sleep}: the kubelet would kill calls still draining"
    )
    longest_call = load_pipeline(REPO / "pipelines" / "cloud.yaml", environ={}).config.call
    assert drain >= longest_call.max_duration_secs, (
        f"VOICEBOT_DRAIN_SECONDS {drain} is shorter than the pipeline's max call length "
        f"{longest_call.max_duration_secs}"
    )


def test_environment_points_at_the_cloud_pipeline_and_json_logs() -> None:
    env = plain_env()
    pipeline = env["VOICEBOT_PIPELINE"]
    assert pipeline.startswith("/app/") and (REPO / pipeline.removeprefix("/app/")).is_file()
    assert load_pipeline(REPO / pipeline.removeprefix("/app/"), environ={}).config.name == "cloud"
    assert env["VOICEBOT_LOG_FORMAT"] == "json"
    dummy_secrets = {key: "x" for key in SECRET_KEYS}
    settings = ServerSettings.from_env({**env, **dummy_secrets})
    assert settings.public_url and settings.twilio_signatures_required


def test_provider_keys_come_from_the_secret_only() -> None:
    refs = {}
    for entry in container()["env"]:
        if entry["name"] in SECRET_KEYS:
            assert "value" not in entry, f"{entry['name']} must not have a value in the manifest"
            ref = entry.get("valueFrom", {}).get("secretKeyRef")
            assert ref, f"{entry['name']} must come from a secretKeyRef"
            refs[entry["name"]] = (ref["name"], ref["key"])
    assert refs == {key: ("voicebot-secrets", key) for key in SECRET_KEYS}


_SECRETISH_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|_SID)$")
_SECRETISH_VALUE = re.compile(
    r"sk-[A-Za-z0-9_-]{16,}|AC[0-9a-f]{32}|[0-9a-f]{32,}|[A-Za-z0-9+/]{40,}={0,2}"
)


@pytest.mark.parametrize("filename", sorted(p.name for p in K8S.glob("*.yaml")))
def test_no_secret_values_in_the_files(filename: str) -> None:
    text = (K8S / filename).read_text()
    assert not _SECRETISH_VALUE.search(text), f"{filename}: looks like a credential"
    for _, doc in DOCUMENTS:
        assert doc.get("kind") != "Secret", "create voicebot-secrets outside the repository"
    for entry in container()["env"]:
        if _SECRETISH_NAME.search(entry["name"]):
            assert "secretKeyRef" in entry.get("valueFrom", {}), f"{entry['name']}: use the Secret"


def test_resources_and_security_context() -> None:
    c = container()
    resources = c["resources"]
    assert str(resources["requests"]["cpu"]) in ("1", "1000m"), "one process uses one core"
    assert resources["requests"].get("memory") and resources["limits"].get("memory")
    assert "cpu" not in resources["limits"], "a CPU limit throttles the audio loop"
    pod_security = deployment()["spec"]["template"]["spec"]["securityContext"]
    assert pod_security["runAsNonRoot"] is True
    assert pod_security["runAsUser"] != 0
    security = c["securityContext"]
    assert security["allowPrivilegeEscalation"] is False
    assert security["readOnlyRootFilesystem"] is True
    assert security["capabilities"]["drop"] == ["ALL"]
    volumes = {v["name"]: v for v in deployment()["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "/tmp" in mounts and "emptyDir" in volumes[mounts["/tmp"]], "writable /tmp needed"
    # onnxruntime (at start-up) and tldextract write under $XDG_CACHE_HOME, else ~/.cache
    assert plain_env().get("XDG_CACHE_HOME", "").startswith("/tmp/"), "caches must go to /tmp"


def test_prometheus_scrapes_the_container_port() -> None:
    annotations = deployment()["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert resolve_port(int(annotations["prometheus.io/port"])) == 7860


# -- Service, PDB, HPA --------------------------------------------------------------------------


def pod_labels() -> dict[str, str]:
    spec = deployment()["spec"]
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items(), (
        "the Deployment's selector must match its own pod template"
    )
    return labels


def test_service_selects_the_pods_and_forwards_80_to_the_container_port() -> None:
    service = only("Service")
    selector = service["spec"]["selector"]
    assert selector and selector.items() <= pod_labels().items(), (
        f"Service selector {selector} does not match the pod labels {pod_labels()}"
    )
    assert service["spec"].get("type", "ClusterIP") == "ClusterIP"
    (port,) = service["spec"]["ports"]
    assert port["port"] == 80
    assert resolve_port(port["targetPort"]) == 7860


def test_pdb_selects_the_pods_and_allows_one_down() -> None:
    pdb = only("PodDisruptionBudget")
    selector = pdb["spec"]["selector"]["matchLabels"]
    assert selector and selector.items() <= pod_labels().items(), (
        f"PDB selector {selector} does not match the pod labels {pod_labels()}"
    )
    assert pdb["spec"]["maxUnavailable"] == 1


def active_calls_metric() -> tuple[str, list[str]]:
    (described,) = metrics.ACTIVE_CALLS.describe()
    return described.name, list(metrics.ACTIVE_CALLS._labelnames)


def test_hpa_scales_the_deployment_on_the_servers_active_calls_gauge() -> None:
    hpa = only("HorizontalPodAutoscaler")
    spec = hpa["spec"]
    target = spec["scaleTargetRef"]
    assert (target["apiVersion"], target["kind"], target["name"]) == (
        "apps/v1",
        "Deployment",
        deployment()["metadata"]["name"],
    ), f"the HPA targets {target}, not the voicebot Deployment"
    assert "replicas" not in deployment()["spec"], "the HPA owns the replica count"
    assert 1 <= spec["minReplicas"] <= spec["maxReplicas"]
    by_type = {m["type"]: m for m in spec["metrics"]}
    name, _ = active_calls_metric()
    pods = by_type["Pods"]["pods"]
    assert pods["metric"]["name"] == name, (
        f"HPA Pods metric {pods['metric']['name']!r} is not the gauge bot/metrics.py exports "
        f"({name!r})"
    )
    assert pods["target"]["type"] == "AverageValue"
    assert float(pods["target"]["averageValue"]) == benchmarked_calls_per_core()
    cpu = by_type["Resource"]["resource"]
    assert cpu["name"] == "cpu" and cpu["target"]["type"] == "Utilization"
    scale_down = spec["behavior"]["scaleDown"]
    assert scale_down["stabilizationWindowSeconds"] >= 600, "pods with calls drain slowly"


def test_prometheus_adapter_rule_exposes_the_gauge_per_pod() -> None:
    name, labels = active_calls_metric()
    assert labels == ["transport", "pipeline"]
    config_map = only("ConfigMap")
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    matching = [rule for rule in rules if rule["seriesQuery"].startswith(name + "{")]
    assert len(matching) == 1, f"no prometheus-adapter rule for {name}"
    rule = matching[0]
    assert rule["name"]["as"] == name and re.fullmatch(rule["name"]["matches"], name)
    overrides = rule["resources"]["overrides"]
    assert overrides["pod"] == {"resource": "pod"}
    assert overrides["namespace"] == {"resource": "namespace"}
    # the gauge has one series per transport and pipeline: the adapter must add them up
    assert rule["metricsQuery"].startswith("sum(") and "by (<<.GroupBy>>)" in rule["metricsQuery"]


def test_hpa_call_target_is_fly_tomls_soft_limit() -> None:
    """Both come from BENCHMARKS.md's calls per core: update them together."""
    import tomllib

    fly = tomllib.loads((REPO / "fly.toml").read_text())
    soft_limit = fly["http_service"]["concurrency"]["soft_limit"]
    pods = {m["type"]: m for m in only("HorizontalPodAutoscaler")["spec"]["metrics"]}["Pods"]
    target = float(pods["pods"]["target"]["averageValue"])
    assert target == soft_limit, (
        f"hpa.yaml targets {target} calls a pod, fly.toml's soft_limit is {soft_limit}"
    )
