"""Shared fixtures: real speech and noise from Debian packages, and the converted models.

The data packages are installed by ``scripts/test.sh``; a missing package is an error (not a
skip), so a broken setup cannot pass silently.
"""

from __future__ import annotations

from pathlib import Path

import pytest

LIBRIVOX_DIR = Path("/usr/share/pocketsphinx/test/data/librivox")
SONIC_PI_DIR = Path("/usr/share/sonic-pi/samples")


def _require(path: Path, package: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: install the Debian package '{package}' "
                                "(scripts/setup.sh test does this).")
    return path


def librivox_utterances() -> list[tuple[Path, str]]:
    """The five LibriVox utterances of pocketsphinx-testdata with their reference transcripts."""
    from simulation.manifests import from_librivox

    return [(Path(row["path"]), row["text"]) for row in from_librivox(_require(LIBRIVOX_DIR, "pocketsphinx-testdata"))]


@pytest.fixture(scope="session")
def librivox() -> list[tuple[Path, str]]:
    return librivox_utterances()


@pytest.fixture(scope="session")
def noise_clip() -> Path:
    """A real CC0 recording of vinyl hiss (broadband noise without speech)."""
    return _require(SONIC_PI_DIR / "vinyl_hiss.flac", "sonic-pi-samples")


def model_dir(name: str) -> Path:
    """The converted checkpoint folder for a registry model (pulled once if missing)."""
    from service.config import Settings
    from service.models.registry import resolve

    return resolve(name, home=Settings().home, pull_if_missing=True)


@pytest.fixture(scope="session")
def tiny_en_dir() -> Path:
    return model_dir("whisper-tiny.en")


@pytest.fixture(scope="session")
def base_dir() -> Path:
    return model_dir("whisper-base")
