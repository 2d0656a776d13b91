"""The device kit's payload: the model archive and the recipe's clean speech as one byte stream, cut over the parts.

Why: a device call carries at most 64 MiB with the working tree, and both the model archive (~68 MB) and the
clean TTS speech (13 MB for the Asterisk prompts, ~50 MB with all of The Devil's Dictionary) are too big for one
part. Cut as one stream, each part is filled to its room whatever the mix, so more text costs one more call
instead of a refusal (``scripts/device_kit.py`` cuts, ``scripts/device_train.sh`` joins and checks). Each piece is
checksummed, so slices from two different kits are refused instead of unpacked.
"""

from __future__ import annotations

import hashlib


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pack(model_archive: bytes, clean_tar: bytes) -> tuple[bytes, dict[str, int | str]]:
    """The payload and the ``kit.json`` fields that let the far side split and check it."""
    fields: dict[str, int | str] = {
        "model_archive_bytes": len(model_archive), "model_archive_sha256": sha256(model_archive),
        "clean_tar_bytes": len(clean_tar), "clean_tar_sha256": sha256(clean_tar),
    }
    return model_archive + clean_tar, fields


def cut(payload: bytes, sizes: list[int]) -> list[bytes]:
    """``payload`` in consecutive slices of ``sizes`` bytes (which must add up to it)."""
    if sum(sizes) != len(payload) or any(s < 0 for s in sizes):
        raise ValueError(f"slice sizes add up to {sum(sizes)} bytes, the payload has {len(payload)}")
    out, start = [], 0
    for size in sizes:
        out.append(payload[start:start + size])
        start += size
    return out


def unpack(slices: list[bytes], kit: dict) -> tuple[bytes, bytes]:
    """(model archive, clean-speech tar) from the slices in order; ``ValueError`` naming what does not match."""
    if "clean_tar_bytes" not in kit:
        raise ValueError("kit.json has no clean_tar_bytes: the kit was built by an older scripts/device_kit.py; "
                         "rebuild it")
    payload = b"".join(slices)
    want = kit["model_archive_bytes"] + kit["clean_tar_bytes"]
    if len(payload) != want:
        raise ValueError(f"the {len(slices)} slices hold {len(payload)} bytes, the kit {want}: parts of different "
                         "kits, or a slice is missing")
    archive, clean = payload[:kit["model_archive_bytes"]], payload[kit["model_archive_bytes"]:]
    for name, data in (("model_archive", archive), ("clean_tar", clean)):
        if sha256(data) != kit[f"{name}_sha256"]:
            raise ValueError(f"the {name.replace('_', ' ')}'s checksum differs: the parts come from different kits")
    return archive, clean
