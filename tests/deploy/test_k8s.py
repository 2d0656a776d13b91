"""deploy/k8s validated offline: core kinds against the Kubernetes OpenAPI schemas (strict, from
kubernetes-validate), the ServiceMonitor against the prometheus-operator CRD schema (cloudcoil's
models, generated from the CRD), the RayJob against a structural schema of KubeRay's ray.io/v1
fields plus its pod templates against core PodTemplateSpec; then the wiring between them."""

from __future__ import annotations

import copy
import re
import shlex

import jsonschema
import kubernetes_validate
import pytest
import yaml

from tests.deploy.helpers import (
    CONTAINER_UID,
    K8S,
    PENDING_SETTINGS,
    ROOT,
    dockerfile_stages,
    k8s_documents,
    load_yaml_documents,
    megaasr_env_names,
)

#: Oldest version the manifests need (native sidecars are on by default from 1.29), and the newest schemas.
K8S_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())
CUSTOM_KINDS = {"ServiceMonitor", "RayJob"}
DOCS = k8s_documents()


def _id(item):
    path, doc = item
    return f"{path.relative_to(K8S)}:{doc['kind']}"


@pytest.mark.parametrize("item", [d for d in DOCS if d[1]["kind"] not in CUSTOM_KINDS], ids=_id)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_core_manifests_match_the_kubernetes_schema(item, version):
    _, doc = item
    kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_rejects_unknown_fields():
    doc = copy.deepcopy(next(d for _, d in DOCS if d["kind"] == "Deployment"))
    doc["spec"]["template"]["spec"]["containers"][0]["livenessProbes"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, K8S_VERSIONS[-1], strict=True)


# --- custom resources --------------------------------------------------------------------------------


def _forbid_extra(schema):
    """Turn the pydantic JSON schema strict: objects with known properties take no others."""
    if isinstance(schema, dict):
        if "properties" in schema and "additionalProperties" not in schema:
            schema["additionalProperties"] = False
        for value in schema.values():
            _forbid_extra(value)
    elif isinstance(schema, list):
        for value in schema:
            _forbid_extra(value)
    return schema


def servicemonitor_schema() -> dict:
    from cloudcoil.models.prometheus_operator import v1

    return _forbid_extra(v1.ServiceMonitor.model_json_schema(by_alias=True))


def test_servicemonitor_matches_the_crd_schema():
    schema = servicemonitor_schema()
    monitors = [d for _, d in DOCS if d["kind"] == "ServiceMonitor"]
    assert monitors
    for doc in monitors:
        jsonschema.validate(doc, schema)
    bad = copy.deepcopy(monitors[0])
    bad["spec"]["endpoints"][0]["intervl"] = "15s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)
    bad = copy.deepcopy(monitors[0])
    bad["spec"]["endpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(bad, schema)


def _object(properties: dict, required=()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


_STR_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
_TEMPLATE = {"type": "object"}  # validated separately as a core PodTemplateSpec
_GROUP = {"rayStartParams": _STR_MAP, "template": _TEMPLATE, "serviceType": {"type": "string"},
          "enableIngress": {"type": "boolean"}, "headService": {"type": "object"}}
#: The ray.io/v1 RayJob fields (KubeRay 1.1+ API reference) this repository may use; unknown ones fail.
RAYJOB_SCHEMA = _object({
    "apiVersion": {"const": "ray.io/v1"},
    "kind": {"const": "RayJob"},
    "metadata": _object({"name": {"type": "string"}, "namespace": {"type": "string"},
                         "labels": _STR_MAP, "annotations": _STR_MAP}, ["name"]),
    "spec": _object({
        "entrypoint": {"type": "string", "minLength": 1},
        "submissionMode": {"enum": ["K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"]},
        "shutdownAfterJobFinishes": {"type": "boolean"},
        "ttlSecondsAfterFinished": {"type": "integer", "minimum": 0},
        "activeDeadlineSeconds": {"type": "integer", "minimum": 1},
        "backoffLimit": {"type": "integer", "minimum": 0},
        "suspend": {"type": "boolean"},
        "runtimeEnvYAML": {"type": "string"},
        "jobId": {"type": "string"},
        "entrypointNumCpus": {"type": "number"},
        "entrypointNumGpus": {"type": "number"},
        "submitterPodTemplate": _TEMPLATE,
        "clusterSelector": _STR_MAP,
        "rayClusterSpec": _object({
            "rayVersion": {"type": "string", "pattern": r"^\d+\.\d+\.\d+$"},
            "enableInTreeAutoscaling": {"type": "boolean"},
            "autoscalerOptions": {"type": "object"},
            "headGroupSpec": _object(_GROUP, ["rayStartParams", "template"]),
            "workerGroupSpecs": {"type": "array", "minItems": 1, "items": _object({
                **_GROUP, "groupName": {"type": "string"}, "replicas": {"type": "integer", "minimum": 0},
                "minReplicas": {"type": "integer", "minimum": 0}, "maxReplicas": {"type": "integer", "minimum": 1},
                "numOfHosts": {"type": "integer", "minimum": 1}, "suspend": {"type": "boolean"},
                "scaleStrategy": {"type": "object"},
            }, ["groupName", "rayStartParams", "template", "maxReplicas"])},
        }, ["headGroupSpec"]),
    }, ["entrypoint", "rayClusterSpec"]),
}, ["apiVersion", "kind", "metadata", "spec"])


def _rayjobs():
    jobs = [d for _, d in DOCS if d["kind"] == "RayJob"]
    assert jobs
    return jobs


def _ray_templates(job):
    cluster = job["spec"]["rayClusterSpec"]
    yield "head", cluster["headGroupSpec"]["template"]
    for group in cluster["workerGroupSpecs"]:
        yield group["groupName"], group["template"]


def test_rayjob_structure_and_pod_templates():
    for job in _rayjobs():
        jsonschema.validate(job, RAYJOB_SCHEMA)
        for name, template in _ray_templates(job):
            wrapper = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": name}, "template": template}
            for version in K8S_VERSIONS:
                kubernetes_validate.validate(wrapper, version, strict=True)
        group = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]
        assert group["minReplicas"] <= group["replicas"] <= group["maxReplicas"]


def test_rayjob_entrypoint_is_a_valid_megaasr_simulate_command():
    from service.cli import build_parser

    for job in _rayjobs():
        argv = shlex.split(job["spec"]["entrypoint"])
        assert argv[:2] == ["megaasr", "simulate"]
        args = build_parser().parse_args(argv[1:])
        assert args.manifest and args.out and args.ray == "auto"
        ray_version = job["spec"]["rayClusterSpec"]["rayVersion"]
        ray_pin = re.search(r"^ray==(\S+)$", (ROOT / "deploy/docker/constraints-ray.txt").read_text(), re.MULTILINE)
        assert ray_version == ray_pin.group(1), "rayVersion must be the image's Ray"
        for _, template in _ray_templates(job):
            for container in template["spec"]["containers"]:
                assert container["image"].endswith("-ray")
                for probe in ("readinessProbe", "livenessProbe"):  # KubeRay's defaults need wget
                    assert container[probe]["exec"]["command"][0] == "python"


# --- wiring ------------------------------------------------------------------------------------------


def _kustomizations():
    return sorted(K8S.rglob("kustomization.yaml"))


def test_kustomizations_reference_existing_files_and_cover_every_manifest():
    listed = set()
    for path in _kustomizations():
        kustomization = yaml.safe_load(path.read_text())
        assert kustomization["kind"] == "Kustomization"
        for resource in kustomization["resources"]:
            target = (path.parent / resource).resolve()
            assert target.exists(), f"{path}: {resource} does not exist"
            listed.add(target)
    for path in K8S.glob("*/*.yaml"):
        if path.name != "kustomization.yaml" and path.parent.name != "jobs":
            assert path.resolve() in listed, f"{path} is in no kustomization"


def _variant(name: str) -> dict[str, dict]:
    """kind -> document, for a variant's kustomization (base included)."""
    docs = {}
    for folder in (K8S / "base", K8S / name):
        for path in folder.glob("*.yaml"):
            if path.name != "kustomization.yaml":
                for doc in load_yaml_documents(path):
                    docs[doc["kind"]] = doc
    return docs


def _env(container) -> dict[str, str]:
    return {e["name"]: e.get("value") for e in container.get("env", [])}


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_deployment_probes_grace_and_security(variant):
    docs = _variant(variant)
    deployment, service = docs["Deployment"], docs["Service"]
    pod = deployment["spec"]["template"]
    spec = pod["spec"]
    [main] = [c for c in spec["containers"] if c["name"] == "megaasr"]
    assert main["image"].endswith(f"-{variant}")
    assert main["livenessProbe"]["httpGet"]["path"] == "/health"
    readiness = main["readinessProbe"]
    assert readiness.get("httpGet", {}).get("path") == "/ready" or "/ready" in readiness["exec"]["command"]
    # Grace: preStop sleep + the drain grace + a margin of at most 30 s.
    drain = float(_env(main)["MEGAASR_DRAIN_GRACE_S"])
    pre_stop = float(main["lifecycle"]["preStop"]["exec"]["command"][1])
    margin = spec["terminationGracePeriodSeconds"] - pre_stop - drain
    assert 5 <= margin <= 30, f"terminationGracePeriodSeconds leaves {margin}s beyond preStop + drain"
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == CONTAINER_UID
    for container in spec["containers"] + spec.get("initContainers", []):
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in spec["volumes"]}
    assert claims[mounts["/var/lib/megaasr"]] == docs["PersistentVolumeClaim"]["metadata"]["name"]
    # Service, ServiceMonitor and HPA point at this Deployment.
    labels = pod["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ports = {p["name"]: p["containerPort"] for p in main["ports"]}
    assert service["spec"]["ports"][0]["targetPort"] in ports
    monitor = docs["ServiceMonitor"]
    assert monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    assert monitor["spec"]["endpoints"][0]["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert docs["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == deployment["metadata"]["name"]
    assert docs["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items()


def test_gpu_variant_runs_vllm_as_a_sidecar():
    spec = _variant("gpu")["Deployment"]["spec"]["template"]["spec"]
    [vllm] = spec["initContainers"]
    assert vllm["restartPolicy"] == "Always" and "startupProbe" in vllm
    assert vllm["resources"]["limits"]["nvidia.com/gpu"] == "1"
    port = vllm["args"][vllm["args"].index("--port") + 1]
    [main] = spec["containers"]
    env = _env(main)
    assert env["MEGAASR_ENGINE"] == "vllm"
    assert env["MEGAASR_VLLM_URL"] == f"http://127.0.0.1:{port}/v1"
    model = vllm["args"][vllm["args"].index("--model") + 1]
    assert env["MEGAASR_MODEL"] == model


def test_torchrun_job_is_consistent():
    docs = {d["kind"]: d for _, d in load_yaml_documents_pairs(K8S / "jobs" / "train-torchrun.yaml")}
    job, service = docs["Job"], docs["Service"]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == service["metadata"]["name"] and service["spec"]["clusterIP"] == "None"
    [trainer] = pod["containers"]
    args = dict(a.split("=", 1) for a in trainer["args"] if a.startswith("--") and "=" in a)
    assert trainer["command"][0].endswith("torchrun")
    assert int(args["--nnodes"]) == spec["completions"]
    assert args["--nproc-per-node"] == trainer["resources"]["limits"]["nvidia.com/gpu"]
    assert args["--node-rank"] == "$(JOB_COMPLETION_INDEX)"
    host, port = args["--master-addr"], args["--master-port"]
    assert host == f"{job['metadata']['name']}-0.{service['metadata']['name']}"
    assert int(port) == service["spec"]["ports"][0]["port"]
    assert trainer["image"].endswith("-gpu")
    # torchrun --no-python runs `megaasr train STAGE ...`: the real CLI parser must accept it.
    from service.cli import build_parser

    program = trainer["args"][trainer["args"].index("--no-python") + 1:]
    assert program[:2] == ["megaasr", "train"] and program[2] in {"sft", "rl", "router"}
    parsed = build_parser().parse_args(program[1:])
    mounts = {m["mountPath"] for m in trainer["volumeMounts"]}
    assert any(parsed.config.startswith(m + "/") for m in mounts), "the recipe must be on a mounted volume"


def load_yaml_documents_pairs(path):
    return [(path, doc) for doc in load_yaml_documents(path)]


def test_claims_and_images_exist():
    claims = {d["metadata"]["name"] for _, d in DOCS if d["kind"] == "PersistentVolumeClaim"}
    targets = {s.name for s in dockerfile_stages()}
    text = "\n".join(p.read_text() for p in K8S.rglob("*.yaml"))
    for claim in re.findall(r"claimName: (\S+)", text):
        assert claim in claims, f"PVC {claim} is not defined under deploy/k8s"
    for image in re.findall(r"image: (\S+)", text):
        name, tag = image.split(":")
        assert name == "megaasr" and tag.rsplit("-", 1)[-1] in targets, image


def test_megaasr_variables_are_real_settings():
    from service.config import Settings

    fields = {f"MEGAASR_{name.upper()}" for name in Settings.model_fields}
    for path in K8S.rglob("*.yaml"):
        unknown = megaasr_env_names(path.read_text()) - fields - PENDING_SETTINGS
        assert not unknown, f"{path}: {unknown} are not settings"
