"""The Dockerfile, checked without a Docker engine: targets, pins, user, healthcheck, COPY sources."""

from __future__ import annotations

import glob
import http.server
import os
import re
import shlex
import subprocess
import sys
import threading
import typing

import pytest

from tests.deploy.helpers import (
    CONTAINER_UID,
    DOCKERFILE,
    ROOT,
    dockerfile_instructions,
    dockerfile_stages,
    dockerignore_rules,
    effective,
    excluded_by_dockerignore,
    stage_chain,
)

FINAL = ("cpu", "gpu", "ray")
COMPILERS = re.compile(r"\b(build-essential|gcc|g\+\+|clang|make|cmake|cargo|rustc|libc6-dev|python3-dev)\b")
#: The one toolchain a final image may carry: Triton (under vLLM) compiles its CUDA launcher at run time.
GPU_TOOLCHAIN = {"gcc", "libc6-dev"}


@pytest.fixture(scope="module")
def stages():
    return dockerfile_stages()


def test_targets_and_default(stages):
    names = [s.name for s in stages]
    assert {"builder", "cpu", "gpu", "ray"} <= set(names)
    assert len(names) == len(set(names)), "duplicate stage names"
    assert names[-1] == "cpu", "the default target (last stage) must be cpu"


def test_base_images_pinned_by_tag(stages):
    names = {s.name for s in stages}
    for stage in stages:
        if stage.base in names:
            continue
        assert "$" not in stage.base, f"{stage.name}: unresolved base image {stage.base}"
        image, _, digest = stage.base.partition("@")
        assert digest or ":" in image.rsplit("/", 1)[-1], f"{stage.name}: {stage.base} has no tag"
        tag = image.rsplit(":", 1)[-1]
        assert digest or (tag != "latest" and re.search(r"\d", tag)), f"{stage.name}: {stage.base} is not pinned"


@pytest.mark.parametrize("target", FINAL)
def test_final_images_run_as_non_root(stages, target):
    user = effective(stages, target, "USER")
    assert user is not None, f"{target}: no USER (runs as root)"
    uid = user.args.split(":")[0]
    assert uid == str(CONTAINER_UID), f"{target}: USER {user.args}, expected {CONTAINER_UID}"


@pytest.mark.parametrize("target", FINAL)
def test_healthcheck_is_python_on_health(stages, target):
    check = effective(stages, target, "HEALTHCHECK")
    assert check is not None, f"{target}: no HEALTHCHECK"
    assert "NONE" not in check.args.split()[:1]
    cmd_part = check.args[check.args.index("CMD") + 3:].strip()
    argv = __import__("json").loads(cmd_part)
    assert argv[0] == "python" and "/health" in argv, argv
    assert not {"curl", "wget"} & set(argv)
    probe = next(a for a in argv if a.endswith(".py"))
    copies = [i.args for s in stage_chain(stages, target) for i in s.all("COPY")]
    assert any(c.endswith(probe) for c in copies), f"{probe} is not copied into {target}"


@pytest.mark.parametrize("target", FINAL)
def test_entrypoint_exec_form_so_sigterm_reaches_the_service(stages, target):
    entry = effective(stages, target, "ENTRYPOINT")
    assert entry is not None and entry.exec_form() == ["megaasr"]
    stop = effective(stages, target, "STOPSIGNAL")
    assert stop is None or stop.args == "SIGTERM"


def test_copy_sources_exist_and_are_in_the_build_context(stages):
    rules = dockerignore_rules()
    for stage in stages:
        for ins in stage.all("COPY") + stage.all("ADD"):
            words = shlex.split(ins.args)
            if any(w.startswith("--from") for w in words):
                continue
            sources = [w for w in words if not w.startswith("--")][:-1]
            assert sources, f"line {ins.line}: COPY without source"
            for source in sources:
                matches = glob.glob(str(ROOT / source))
                assert matches, f"line {ins.line}: COPY source {source} does not exist"
                for match in matches:
                    rel = os.path.relpath(match, ROOT)
                    assert not excluded_by_dockerignore(rel, rules), f"{rel} is excluded by .dockerignore"


def test_dockerignore_keeps_local_state_out():
    rules = dockerignore_rules()
    for path in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "runs/x.flac",
                 "service/__pycache__/cli.cpython-311.pyc", "service/models/weights.safetensors"):
        assert excluded_by_dockerignore(path, rules), path
    for path in ("pyproject.toml", "service/cli.py", "deploy/docker/probe.py"):
        assert not excluded_by_dockerignore(path, rules), path


def _apt_installs(stage) -> set[str]:
    packages: set[str] = set()
    for ins in stage.all("RUN"):
        for part in re.split(r"&&|;", ins.args):
            words = shlex.split(part)
            if "apt-get" in words and "install" in words:
                packages |= {w for w in words[words.index("install") + 1:] if not w.startswith("-")}
    return packages


def test_no_build_tools_in_cpu_and_ray_images(stages):
    for target in ("cpu", "ray"):
        for stage in stage_chain(stages, target):
            tools = {p for p in _apt_installs(stage) if COMPILERS.search(p)}
            assert not tools, f"{target} (stage {stage.name}) installs build tools: {tools}"


def test_gpu_image_carries_only_the_triton_toolchain(stages):
    installed = set().union(*(_apt_installs(s) for s in stage_chain(stages, "gpu")))
    tools = {p for p in installed if COMPILERS.search(p)}
    assert tools <= GPU_TOOLCHAIN, tools


def test_final_images_do_not_copy_build_stage_sources(stages):
    """Final stages take only the venvs and the model from the builders, never the source tree."""
    for target in FINAL:
        for stage in stage_chain(stages, target):
            if stage.name in ("builder", "cuda-builder", "vllm-builder"):
                continue
            for ins in stage.all("COPY"):
                assert "/build/src" not in ins.args, f"{stage.name} copies build sources: {ins.args}"


GREP_PIN = re.compile(r"\"?\$\(grep '\^([\w.-]+)==' [^)]+\)\"?")  # "$(grep '^torch==' constraints.txt)"
FLAGS_WITH_VALUE = {"--index-url", "--extra-index-url", "-i", "--only-binary", "--no-binary", "-r"}


def test_every_pip_install_is_pinned(stages):
    for stage in stages:
        for ins in stage.all("RUN"):
            for part in ins.args.split("&&"):
                part = GREP_PIN.sub(lambda m: f"{m.group(1)}==pinned-by-constraints", part)
                words = part.split()
                if "install" not in words or not any(w.endswith("pip") for w in words[:words.index("install")]):
                    continue
                if "--constraint" in words or "-c" in words:
                    continue
                requirements, skip = [], False
                for word in words[words.index("install") + 1:]:
                    if skip:
                        skip = False
                    elif word in FLAGS_WITH_VALUE:
                        skip = True
                    elif not word.startswith("-"):
                        requirements.append(word.strip("\"'"))
                assert requirements and all("==" in r for r in requirements), (
                    f"{stage.name} line {ins.line}: unpinned pip install: {part.strip()}")


def test_torch_index_only_at_build_time(stages):
    for stage in stages:
        for ins in stage.all("ENV"):
            assert "download.pytorch.org" not in ins.args, f"{stage.name}: the torch index leaks into ENV"
            assert not re.search(r"PIP_(EXTRA_)?INDEX_URL", ins.args), f"{stage.name}: pip index set in ENV"
    text = DOCKERFILE.read_text(encoding="utf-8")
    assert "download.pytorch.org/whl/cpu" in text


def test_model_is_converted_at_build_time_and_served_offline(stages):
    builder_runs = " ".join(i.args for i in stage_chain(stages, "builder")[0].all("RUN"))
    assert "megaasr models pull" in builder_runs
    env = " ".join(i.args for s in stage_chain(stages, "cpu") for i in s.all("ENV"))
    assert "MEGAASR_MODEL=/opt/megaasr/models/" in env
    assert "HF_HUB_OFFLINE=1" in env
    home = re.search(r"MEGAASR_HOME=(\S+)", env).group(1)
    volumes = " ".join(i.args for s in stage_chain(stages, "cpu") for i in s.all("VOLUME"))
    assert home in volumes, "MEGAASR_HOME must be a VOLUME"


def test_parser_joins_continuations_and_drops_comments():
    text = "FROM a:1 AS x\nRUN one \\\n # note\n two\nUSER 1\n"
    ins = dockerfile_instructions(text)
    assert [(i.cmd, i.args) for i in ins] == [("FROM", "a:1 AS x"), ("RUN", "one two"), ("USER", "1")]


# --- the probe script the HEALTHCHECK and the readiness probe run -----------------------------------


class _Handler(http.server.BaseHTTPRequestHandler):
    seen: typing.ClassVar[list] = []

    def do_GET(self):
        _Handler.seen.append(self.headers.get("Authorization"))
        self.send_response(200 if self.path == "/health" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture()
def local_server():
    server = http.server.HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _probe(path, port, **env):
    environ = {k: v for k, v in os.environ.items() if k != "MEGAASR_API_KEY"} | env
    return subprocess.run([sys.executable, str(ROOT / "deploy" / "docker" / "probe.py"), path, "--port", str(port)],
                          env=environ, capture_output=True, timeout=30, check=False).returncode


def test_probe_script(local_server):
    _Handler.seen.clear()
    assert _probe("/health", local_server) == 0
    assert _probe("/ready", local_server, MEGAASR_API_KEY="k3y") == 1  # 503 = not ready
    assert _Handler.seen == [None, "Bearer k3y"]
    with socket_closed_port() as port:
        assert _probe("/health", port) == 1


class socket_closed_port:
    def __enter__(self):
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]  # bound, not listening: connection refused

    def __exit__(self, *exc):
        self.sock.close()
