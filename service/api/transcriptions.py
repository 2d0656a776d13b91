"""``POST /v1/audio/transcriptions``: OpenAI createTranscription, multipart in, five formats out."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from service.api import formatters
from service.api.protocol import RESPONSE_FORMATS, ErrorResponse, TranscriptionVerboseJSON
from service.api.state import ServiceState
from service.audio import decode_audio
from service.engines.base import DEFAULT_TEMPERATURES, TranscriptionOptions, TranscriptionResult
from service.errors import InvalidRequest, Timeout

router = APIRouter()

_ERRORS = {code: {"model": ErrorResponse} for code in (400, 401, 404, 413, 429, 500, 503, 504)}
GRANULARITIES = ("segment", "word")


@router.post("/v1/audio/transcriptions", responses={200: {"model": TranscriptionVerboseJSON}, **_ERRORS},
             summary="Transcribe audio (OpenAI createTranscription)")
async def create_transcription(
    request: Request,
    file: UploadFile = File(..., description="Audio file: wav, flac, ogg/opus or mp3; any rate and channels."),
    model: str = Form(..., description="Served model id (see /v1/models)."),
    language: str | None = Form(None, description="ISO-639-1 code; detected when omitted."),
    prompt: str | None = Form(None, description="Text to condition the decoder on (names, spelling)."),
    response_format: str = Form("json", description="json, text, srt, vtt or verbose_json."),
    temperature: float = Form(0.0, ge=0.0, le=1.0, description="0 = automatic fallback schedule."),
    timestamp_granularities: list[str] | None = Form(None, alias="timestamp_granularities[]"),
    stream: bool = Form(False, description="Server-sent events: transcript.text.delta then .done."),
    router_mode: str = Form("auto", alias="router", description="auto, base or robust."),
) -> Response:
    state: ServiceState = request.app.state.service
    state.resolve_model(model)
    if response_format not in RESPONSE_FORMATS:
        raise InvalidRequest(f"Unsupported response_format '{response_format}'; use one of "
                             f"{', '.join(RESPONSE_FORMATS)}.", param="response_format",
                             code="unsupported_response_format")
    granularities = set(timestamp_granularities or [])
    unknown = granularities - set(GRANULARITIES)
    if unknown:
        raise InvalidRequest(f"Unknown timestamp granularity {sorted(unknown)}; use segment or word.",
                             param="timestamp_granularities[]")
    if granularities and response_format != "verbose_json":
        raise InvalidRequest("timestamp_granularities requires response_format=verbose_json.",
                             param="timestamp_granularities[]")
    if "word" in granularities and not state.supports_word_timestamps:
        raise InvalidRequest("Word timestamps are not supported by this engine.",
                             param="timestamp_granularities[]", code="unsupported_granularity")
    try:
        lang = state.vocabulary_language(language)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="language", code="unsupported_language") from None

    data = await file.read()
    audio = await asyncio.to_thread(decode_audio, data, max_duration_s=state.settings.max_duration_s)
    options = TranscriptionOptions(
        language=lang, prompt=prompt or None,
        temperatures=DEFAULT_TEMPERATURES if temperature == 0 else (temperature,),
        word_timestamps="word" in granularities, beam_size=state.settings.beam_size,
        best_of=state.settings.best_of)
    started = time.monotonic()
    try:
        result, route = await asyncio.wait_for(state.transcribe(audio.samples, options, router_mode),
                                               timeout=state.settings.request_timeout_s)
    except TimeoutError:
        raise Timeout(f"Transcription took longer than {state.settings.request_timeout_s:.0f} s.") from None
    state.observe_transcription(result, time.monotonic() - started)

    if stream:
        return StreamingResponse(_sse(result), media_type="text/event-stream")
    if response_format == "text":
        return PlainTextResponse(result.text)
    if response_format == "srt":
        return PlainTextResponse(formatters.to_srt(result), media_type="application/x-subrip")
    if response_format == "vtt":
        return PlainTextResponse(formatters.to_vtt(result), media_type="text/vtt")
    if response_format == "verbose_json":
        body = formatters.to_verbose_json(result, "transcribe", want_segments=True,
                                          want_words="word" in granularities)
        body.router = route
        return JSONResponse(body.model_dump(exclude_none=True))
    return JSONResponse(formatters.to_json(result).model_dump(exclude_none=True))


async def _sse(result: TranscriptionResult) -> AsyncIterator[bytes]:
    """OpenAI's transcription stream events; deltas are the decoded segments, in order."""
    for i, seg in enumerate(result.segments):
        delta = seg.text if i else seg.text.lstrip()
        yield _event({"type": "transcript.text.delta", "delta": delta})
    yield _event({"type": "transcript.text.done", "text": result.text})


def _event(payload: dict) -> bytes:
    return f"data: {json.dumps(payload)}\n\n".encode()
