"""The vLLM engine serves a bundle's robust ensemble: every member is asked and the ROVER vote is answered.

No vLLM here: the HTTP calls are replaced by canned verbose_json bodies per served model name, so what is
tested is the engine's own part (which names are asked, start-up checks, the vote), not vLLM.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from service.config import Settings
from service.engines.base import TranscriptionOptions
from service.engines.vllm_engine import VllmEngine, VllmStartError
from service.models.bundle import Bundle, load_bundle

SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-base-robust"
SETTINGS = Settings(engine="vllm", vllm_url="http://127.0.0.1:9/v1")


def _bundle(members: int) -> Bundle:
    shipped = load_bundle(SHIPPED)
    return replace(shipped, ensemble=tuple(Path(f"/b/members/{k}") for k in range(1, members + 1)))


def _body(text: str) -> dict:
    return {"language": "en", "segments": [{"start": 0.0, "end": 2.0, "text": " " + text, "avg_logprob": -0.3,
                                            "compression_ratio": 1.0, "tokens": [1, 2]}]}


def test_members_default_to_numbered_names_on_the_robust_server() -> None:
    engine = VllmEngine(Path("/m"), "whisper-base", SETTINGS, robust=_bundle(2))
    assert engine.targets["robust"] == ("http://127.0.0.1:9/v1", "whisper-base-robust")
    assert engine.members == [("http://127.0.0.1:9/v1", "whisper-base-robust-m1"),
                              ("http://127.0.0.1:9/v1", "whisper-base-robust-m2")]


def test_member_names_and_servers_can_be_given_and_off_serves_the_main_adapter_alone() -> None:
    settings = SETTINGS.model_copy(update={"vllm_robust_member_models": ["a", "b"],
                                           "vllm_robust_member_urls": ["http://h1:1/v1/", "http://h2:2/v1"]})
    engine = VllmEngine(Path("/m"), "whisper-base", settings, robust=_bundle(2))
    assert engine.members == [("http://h1:1/v1", "a"), ("http://h2:2/v1", "b")]
    off = SETTINGS.model_copy(update={"robust_ensemble": "off"})
    assert VllmEngine(Path("/m"), "whisper-base", off, robust=_bundle(2)).members == []
    assert VllmEngine(Path("/m"), "whisper-base", SETTINGS, robust=_bundle(0)).members == []


@pytest.mark.parametrize("field", ["vllm_robust_member_models", "vllm_robust_member_urls"])
def test_a_wrong_number_of_member_names_or_servers_is_a_start_up_error(field: str) -> None:
    settings = SETTINGS.model_copy(update={field: ["only-one"]})
    flag = "--" + field.replace("_", "-")
    with pytest.raises(VllmStartError, match=f"{flag} gives 1 entries for the bundle's 2 robust ensemble members"):
        VllmEngine(Path("/m"), "whisper-base", settings, robust=_bundle(2))


def test_a_member_the_server_does_not_serve_stops_start_up_naming_the_fix() -> None:
    engine = VllmEngine(Path("/m"), "whisper-base", SETTINGS, robust=_bundle(2))

    async def served(url: str, timeout: float = 5.0) -> list[str]:
        return ["whisper-base", "whisper-base-robust", "whisper-base-robust-m1"]

    engine._served_models = served  # type: ignore[method-assign]
    member = engine._members[1]
    with pytest.raises(VllmStartError, match="not the robust ensemble member 'whisper-base-robust-m2'.*"
                                             "--robust-ensemble off"):
        asyncio.run(engine._wait_served(member, deadline=0.0))
    asyncio.run(engine._wait_served(engine._members[0], deadline=0.0))  # a served member passes


def _engine_answering(texts: dict[str, str]) -> tuple[VllmEngine, list[str]]:
    engine = VllmEngine(Path("/m"), "whisper-base", SETTINGS, robust=_bundle(2))
    asked: list[str] = []

    async def post(target, audio, opts, temperature) -> dict:
        asked.append(target.model)
        return _body(texts[target.model])

    engine._post = post  # type: ignore[method-assign]
    return engine, asked


SPEECH = (0.1 * np.sin(np.arange(16_000) / 5)).astype(np.float32)
ROBUST = TranscriptionOptions(adapter="robust", language="en", temperatures=(0.0,))


def test_robust_requests_are_answered_with_the_members_vote() -> None:
    engine, asked = _engine_answering({"whisper-base-robust": "please hold the line",
                                       "whisper-base-robust-m1": "please hold on the line",
                                       "whisper-base-robust-m2": "please hold on the line"})
    result = asyncio.run(engine._decode(SPEECH, ROBUST))
    assert sorted(asked) == ["whisper-base-robust", "whisper-base-robust-m1", "whisper-base-robust-m2"]
    assert result.text == "please hold on the line"
    assert result.extras["ensemble_voted"] is True and result.extras["engine"] == "vllm"


def test_a_vote_equal_to_the_main_adapter_serves_its_result_unchanged() -> None:
    engine, _ = _engine_answering({"whisper-base-robust": "please hold", "whisper-base-robust-m1": "please hold",
                                   "whisper-base-robust-m2": "lease hold"})
    result = asyncio.run(engine._decode(SPEECH, ROBUST))
    assert result.text == "please hold" and "ensemble_voted" not in result.extras
    assert result.segments[0].tokens == [1, 2]  # the main adapter's own segment, not a voted one


def test_a_likelihood_pick_is_announced_as_answered_by_the_vote(caplog) -> None:
    with caplog.at_level("WARNING", logger="service.engines.vllm_engine"):
        VllmEngine(Path("/m"), "whisper-base", SETTINGS, robust=_bundle(2))
    assert "ensemble_pick" not in caplog.text
    with caplog.at_level("WARNING", logger="service.engines.vllm_engine"):
        VllmEngine(Path("/m"), "whisper-base", SETTINGS, robust=replace(_bundle(2), ensemble_pick="likelihood"))
    assert "ensemble_pick (likelihood) needs each member's log-probabilities" in caplog.text


def test_base_requests_ask_the_base_model_only() -> None:
    engine, asked = _engine_answering({"whisper-base": "hello there"})
    result = asyncio.run(engine._decode(SPEECH, replace(ROBUST, adapter="base")))
    assert asked == ["whisper-base"] and result.text == "hello there"
