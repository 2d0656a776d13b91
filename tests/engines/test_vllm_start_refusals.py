"""Decode settings the vLLM engine cannot honour stop the service at start-up, before any vLLM call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from service.config import Settings
from service.engines.vllm_engine import VllmEngine, VllmStartError


@pytest.mark.parametrize(("setting", "flag"), [("beam_size", "--beam-size 1"), ("best_of", "--best-of 1")])
def test_beam_and_best_of_above_one_are_start_up_errors(setting: str, flag: str, tmp_path: Path) -> None:
    settings = Settings(engine="vllm", vllm_url="http://127.0.0.1:9/v1", **{setting: 5})
    engine = VllmEngine(tmp_path, "whisper-tiny.en", settings)
    with pytest.raises(VllmStartError, match=flag):
        asyncio.run(engine.start())
