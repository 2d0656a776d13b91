"""The CTranslate2 model.bin reader and writer: exact round trips and clear errors on bad files."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pytest

from service.models.ct2 import CT2FormatError, read_ct2_model, write_ct2_model


def _variables() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {
        "b/matrix": rng.standard_normal((3, 5)).astype(np.float16),
        "a/conv": rng.standard_normal((4, 2, 3)).astype(np.float32),
        "flag/int8": np.array(3, dtype=np.int8),
        "flag/int16": np.array(-1, dtype=np.int16),
        "ids": np.arange(6, dtype=np.int32),
    }


def _hand_written_file() -> bytes:
    """One float16 vector, one int8 scalar and an alias, encoded by hand from the documented layout."""

    def string(text: str) -> bytes:
        raw = text.encode() + b"\0"
        return struct.pack("<H", len(raw)) + raw

    vector = np.array([1.0, -2.0], dtype="<f2").tobytes()
    return b"".join(
        [
            struct.pack("<I", 6),
            string("WhisperSpec"),
            struct.pack("<I", 3),
            struct.pack("<I", 2),
            string("dec/weight"),
            struct.pack("<B", 1),
            struct.pack("<I", 2),
            struct.pack("<B", 4),
            struct.pack("<I", 4),
            vector,
            string("flag"),
            struct.pack("<B", 0),
            struct.pack("<B", 1),
            struct.pack("<I", 1),
            b"\x05",
            struct.pack("<I", 1),
            string("proj/weight"),
            string("dec/weight"),
        ]
    )


def test_reader_parses_the_documented_layout(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_hand_written_file())
    model = read_ct2_model(path)
    assert (model.spec_name, model.spec_revision, model.binary_version) == ("WhisperSpec", 3, 6)
    assert model.variables["dec/weight"].dtype == np.float16
    assert model.variables["dec/weight"].tolist() == [1.0, -2.0]
    assert model.variables["flag"].shape == () and int(model.variables["flag"]) == 5
    assert model.aliases == {"proj/weight": "dec/weight"}
    assert model.get("proj/weight") is model.variables["dec/weight"]


def test_writer_produces_the_hand_written_bytes(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    write_ct2_model(
        path,
        {"flag": np.array(5, dtype=np.int8), "dec/weight": np.array([1.0, -2.0], dtype=np.float16)},
        aliases={"proj/weight": "dec/weight"},
    )
    assert path.read_bytes() == _hand_written_file()


def test_round_trip_is_exact_for_every_dtype_and_rank(tmp_path: Path) -> None:
    source = _variables()
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    write_ct2_model(first, source, aliases={"tied": "b/matrix"}, spec_name="TestSpec", spec_revision=9)
    model = read_ct2_model(first)
    assert model.spec_name == "TestSpec" and model.spec_revision == 9
    assert set(model.variables) == set(source)
    for name, array in source.items():
        got = model.variables[name]
        assert got.dtype == array.dtype and got.shape == array.shape, name
        assert got.tobytes() == array.tobytes(), name
    write_ct2_model(second, model.variables, aliases=model.aliases, spec_name="TestSpec", spec_revision=9)
    assert first.read_bytes() == second.read_bytes()


@pytest.mark.parametrize("keep", [0, 3, 10, 30, 60, -200, -1])
def test_truncated_file_is_rejected_with_a_clear_error(tmp_path: Path, keep: int) -> None:
    full = tmp_path / "full.bin"
    write_ct2_model(full, _variables(), aliases={"tied": "b/matrix"})
    data = full.read_bytes()
    cut = tmp_path / "cut.bin"
    cut.write_bytes(data[:keep])
    with pytest.raises(CT2FormatError, match="truncated"):
        read_ct2_model(cut)


def test_non_ct2_files_are_rejected(tmp_path: Path) -> None:
    wheel_like = tmp_path / "model.whl"
    wheel_like.write_bytes(b"PK\x03\x04" + bytes(200))
    with pytest.raises(CT2FormatError, match="binary version"):
        read_ct2_model(wheel_like)
    text = tmp_path / "notes.txt"
    text.write_bytes(b"\x06\x00\x00\x00" + b"\xff\xff" + b"hello")
    with pytest.raises(CT2FormatError, match="not a CTranslate2"):
        read_ct2_model(text)


def test_trailing_bytes_are_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.bin"
    write_ct2_model(path, _variables())
    path.write_bytes(path.read_bytes() + b"extra")
    with pytest.raises(CT2FormatError, match="unexpected bytes"):
        read_ct2_model(path)


def test_writer_refuses_a_dangling_alias(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not among the variables"):
        write_ct2_model(tmp_path / "m.bin", _variables(), aliases={"x": "missing"})
