"""The streaming session's decode options: partials are greedy, finals get the file API's fallback."""

from service.engines.base import DEFAULT_TEMPERATURES
from service.streaming.session import SessionConfig, TranscriptionSession


async def _never(*_args, **_kwargs):  # the session is only constructed, never fed
    raise AssertionError("not called")


def test_final_uses_the_shared_temperature_fallback_and_partials_are_greedy() -> None:
    session = TranscriptionSession(_never, _never, SessionConfig(language="en", prompt="Mega-ASR"))
    final, partial = session._options(final=True), session._options(final=False)
    assert final.temperatures == DEFAULT_TEMPERATURES
    assert partial.temperatures == (0.0,)
    assert final.trim_padding is None and partial.trim_padding is True
    assert final.language == partial.language == "en" and final.prompt == "Mega-ASR"
    assert final.beam_size == partial.beam_size == 1


def test_finals_get_the_services_beam_and_partials_stay_greedy() -> None:
    session = TranscriptionSession(_never, _never, SessionConfig(final_beam_size=5))
    assert session._options(final=True).beam_size == 5
    assert session._options(final=False).beam_size == 1


def test_finals_get_the_services_best_of_and_partials_draw_one() -> None:
    session = TranscriptionSession(_never, _never, SessionConfig(final_best_of=5))
    assert session._options(final=True).best_of == 5
    assert session._options(final=False).best_of == 1
