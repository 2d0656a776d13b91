"""Per-request padding trim: a request can ask for it (live partials do) whatever the engine default."""

from __future__ import annotations

from service.engines.base import TranscriptionOptions
from service.engines.features import N_FRAMES
from service.engines.transcriber import WindowConfig
from service.streaming.session import SessionConfig, TranscriptionSession


def test_request_override_beats_the_engine_default() -> None:
    off, on = WindowConfig(trim=False, margin_frames=500), WindowConfig(trim=True, margin_frames=500)
    assert off.frames(200) == N_FRAMES and on.frames(200) == 700
    assert off.frames(200, True) == 700 and on.frames(200, False) == N_FRAMES
    assert on.frames(N_FRAMES, True) == N_FRAMES  # a full window is never trimmed


def test_partials_trim_and_finals_use_the_engine_setting() -> None:
    async def never(*_):  # the options are built without decoding anything
        raise AssertionError("not called")

    session = TranscriptionSession(transcribe=never, emit=never, config=SessionConfig())
    partial, final = session._options(final=False), session._options(final=True)
    assert partial.trim_padding is True and final.trim_padding is None
    assert final.temperatures == TranscriptionOptions().temperatures and partial.temperatures == (0.0,)


def test_int8_on_a_gpu_is_refused_at_start() -> None:
    import pytest
    from pydantic import ValidationError

    from service.config import Settings

    with pytest.raises(ValidationError, match="int8 runs on the CPU only"):
        Settings(compute_type="int8", device="cuda")
    assert Settings(compute_type="int8").device == "cpu"
