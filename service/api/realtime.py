"""``/v1/realtime``: streaming transcription over a websocket, in OpenAI's realtime vocabulary.

Client events: ``session.update`` / ``transcription_session.update``, ``input_audio_buffer.append``
(base64 PCM16, 24 kHz mono by default as in OpenAI; ``input_sample_rate`` or the GA-style
``audio.input.format.rate`` changes it), ``input_audio_buffer.commit``, ``input_audio_buffer.clear``.
Server events: ``session.created``, ``session.updated``, ``input_audio_buffer.speech_started`` /
``speech_stopped`` / ``committed`` / ``cleared``,
``conversation.item.input_audio_transcription.delta`` / ``.completed`` / ``.failed``, ``error``.

Close codes: 1000 normal; 1008 policy (bad API key, or a reader too slow to keep up: more than
``realtime_max_pending_events`` unsent events); 1009 message too big; 1011 internal error;
1013 too many sessions or shutting down (try again later); 4000 idle timeout; 4001 maximum session
length; 1001 going away (the server's drain grace period ended, service/api/lifecycle.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import time
from collections.abc import Callable

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from service.api.lifecycle import CLOSE_GOING_AWAY, DrainExpired
from service.api.state import ServiceState
from service.engines.base import TranscriptionOptions, TranscriptionResult
from service.errors import ServiceError
from service.streaming.session import SessionConfig, TranscriptionSession, error_event, new_id
from service.streaming.vad import VadConfig

log = logging.getLogger(__name__)
router = APIRouter()

CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_INTERNAL, CLOSE_TRY_LATER = 1008, 1009, 1011, 1013
CLOSE_IDLE, CLOSE_MAX_LENGTH = 4000, 4001
MAX_PREFIX_PADDING_MS = 2000  # audio kept before speech starts: bounds the pre-speech history
MAX_SILENCE_DURATION_MS = 10_000
MAX_PROMPT_CHARS = 4000

LanguageCheck = Callable[[str | None], str | None]


class _SlowConsumer(Exception):
    pass


class _ClientError(Exception):
    def __init__(self, code: str, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.message, self.param = code, message, param


def _object(value: object, param: str) -> dict:
    """``value`` as a dict (missing or null: empty); anything else is the client's error."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise _ClientError("invalid_session", f"'{param}' must be an object.", param)
    return value


def _number(value: object, param: str, low: float, high: float) -> float:
    """A finite JSON number in [low, high] (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not low <= value <= high:
        raise _ClientError("invalid_turn_detection", f"'{param}' must be a number from {low:g} to {high:g}.",
                           param)
    return float(value)


def parse_session_update(session: dict, current: SessionConfig,
                         language_check: LanguageCheck | None = None) -> SessionConfig:
    """Apply an OpenAI session object (beta or GA shape) onto ``current``; raise _ClientError on nonsense.

    Everything is checked here, before it reaches the engine: a value the decoder cannot use would
    otherwise fail inside a shared batch (and count towards an engine restart).
    """
    if not isinstance(session, dict):
        raise _ClientError("invalid_session", "'session' must be an object.", "session")
    audio_in = _object(_object(session.get("audio"), "session.audio").get("input"), "session.audio.input")
    transcription = _object(session.get("input_audio_transcription") or audio_in.get("transcription"),
                            "session.input_audio_transcription")
    fmt = session.get("input_audio_format", audio_in.get("format"))
    rate = session.get("input_sample_rate", current.input_sample_rate)
    if isinstance(fmt, dict):
        rate = fmt.get("rate", rate)
        fmt = fmt.get("type")
    if fmt not in (None, "pcm16", "audio/pcm"):
        raise _ClientError("unsupported_audio_format", f"Unsupported input audio format {fmt!r}; use pcm16.",
                           "session.input_audio_format")
    if not isinstance(rate, int) or not 8000 <= rate <= 48000:
        raise _ClientError("invalid_sample_rate", "input_sample_rate must be an integer from 8000 to 48000.",
                           "session.input_sample_rate")
    config = SessionConfig(**current.__dict__)
    config.input_sample_rate = rate
    if not isinstance(transcription, dict):
        raise _ClientError("invalid_session", "input_audio_transcription must be an object.",
                           "session.input_audio_transcription")
    if "language" in transcription:
        language = transcription.get("language") or None
        if language is not None and not isinstance(language, str):
            raise _ClientError("unsupported_language", "language must be a string such as 'en'.",
                               "session.input_audio_transcription.language")
        if language_check is not None:
            try:
                language = language_check(language)
            except ValueError as exc:
                raise _ClientError("unsupported_language", str(exc),
                                   "session.input_audio_transcription.language") from None
        config.language = language
    if "prompt" in transcription:
        prompt = transcription.get("prompt") or None
        if prompt is not None and (not isinstance(prompt, str) or len(prompt) > MAX_PROMPT_CHARS):
            raise _ClientError("invalid_prompt", f"prompt must be a string of at most {MAX_PROMPT_CHARS} "
                               "characters.", "session.input_audio_transcription.prompt")
        config.prompt = prompt
    has_td = "turn_detection" in session or "turn_detection" in audio_in
    if has_td:
        td = session.get("turn_detection", audio_in.get("turn_detection"))
        if td is None:
            config.vad = None
        elif isinstance(td, dict) and td.get("type", "server_vad") == "server_vad":
            threshold = _number(td.get("threshold", 0.5), "session.turn_detection.threshold", 0, 1)
            silence = _number(td.get("silence_duration_ms", 500), "session.turn_detection.silence_duration_ms",
                              0, MAX_SILENCE_DURATION_MS)
            padding = _number(td.get("prefix_padding_ms", config.prefix_padding_ms),
                              "session.turn_detection.prefix_padding_ms", 0, MAX_PREFIX_PADDING_MS)
            config.vad = VadConfig.from_openai(threshold, int(silence))
            config.prefix_padding_ms = int(padding)
        else:
            raise _ClientError("unsupported_turn_detection", "Only server_vad or null turn detection is supported.",
                               "session.turn_detection")
    return config


def _session_view(session_id: str, config: SessionConfig) -> dict:
    td = None
    if config.vad is not None:
        td = {"type": "server_vad", "threshold_db": config.vad.threshold_db,
              "prefix_padding_ms": config.prefix_padding_ms, "silence_duration_ms": config.vad.silence_ms}
    return {"id": session_id, "object": "realtime.transcription_session", "input_audio_format": "pcm16",
            "input_sample_rate": config.input_sample_rate,
            "input_audio_transcription": {"language": config.language, "prompt": config.prompt},
            "turn_detection": td}


@router.websocket("/v1/realtime")
async def realtime(ws: WebSocket) -> None:
    state: ServiceState = ws.app.state.service
    settings = state.settings
    offered = [p.strip() for p in ws.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
    if state.realtime_sessions >= settings.realtime_max_sessions or state.draining:
        # Accept, then close: a close before accept is an HTTP 403 and the client never sees 1013.
        await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
        await ws.close(code=CLOSE_TRY_LATER, reason="server shutting down" if state.draining else "too many sessions")
        return
    await ws.accept(subprotocol="realtime" if "realtime" in offered else None)
    state.realtime_sessions += 1
    state.metrics.ws_active.inc()
    state.metrics.ws_total.inc()
    outgoing: asyncio.Queue[dict] = asyncio.Queue(maxsize=settings.realtime_max_pending_events)

    async def emit(event: dict) -> None:
        event = {"event_id": new_id("event"), **event}
        try:
            outgoing.put_nowait(event)
        except asyncio.QueueFull:
            raise _SlowConsumer() from None

    async def send_loop() -> None:
        while True:
            event = await outgoing.get()
            await ws.send_text(json.dumps(event))

    async def transcribe(audio, options: TranscriptionOptions) -> TranscriptionResult:
        result, _ = await state.transcribe(audio, options, "auto")
        return result

    session_id = new_id("sess")
    config = SessionConfig(partial_interval_s=settings.realtime_partial_interval_s,
                           max_utterance_s=settings.realtime_max_utterance_s, final_beam_size=settings.beam_size,
                           final_best_of=settings.best_of)
    session = TranscriptionSession(transcribe, emit, config, on_partial_latency=state.metrics.partial_latency.observe)
    sender = asyncio.create_task(send_loop(), name="realtime-sender")
    worker = asyncio.create_task(_guarded_worker(session, emit), name="realtime-worker")
    started = time.monotonic()
    close_code, reason = 1000, "session ended"
    try:
        await emit({"type": "session.created", "session": _session_view(session_id, config)})
        while True:
            remaining = settings.realtime_max_session_s - (time.monotonic() - started)
            if remaining <= 0:
                close_code, reason = CLOSE_MAX_LENGTH, "maximum session length reached"
                break
            drain = getattr(ws.app.state, "drain", None)
            receive = ws.receive() if drain is None else drain.wait_expired_or(ws.receive())
            try:
                message = await asyncio.wait_for(receive, timeout=min(settings.realtime_idle_timeout_s, remaining))
            except DrainExpired:
                close_code, reason = CLOSE_GOING_AWAY, "server shutting down"
                break
            except TimeoutError:
                if time.monotonic() - started >= settings.realtime_max_session_s:
                    close_code, reason = CLOSE_MAX_LENGTH, "maximum session length reached"
                else:
                    close_code, reason = CLOSE_IDLE, "idle timeout"
                break
            if message["type"] == "websocket.disconnect":
                close_code = None
                break
            if sender.done() or worker.done():
                close_code, reason = CLOSE_POLICY, "slow consumer"
                break
            text = message.get("text")
            if text is None:
                await emit(error_event("binary_not_supported", "Send JSON text messages, not binary frames."))
                continue
            if len(text) > settings.realtime_max_message_bytes:
                close_code, reason = CLOSE_TOO_BIG, "message too big"
                break
            try:
                await _dispatch(text, session, emit, session_id, state.vocabulary_language)
            except _ClientError as exc:
                await emit(error_event(exc.code, exc.message, exc.param))
    except _SlowConsumer:
        close_code, reason = CLOSE_POLICY, "slow consumer: events were not read"
    except WebSocketDisconnect:
        close_code = None
    except Exception:
        log.exception("realtime session %s failed", session_id)
        close_code, reason = CLOSE_INTERNAL, "internal error"
    finally:
        # The slot is released first: nothing below may keep a dead session counted.
        state.realtime_sessions -= 1
        state.metrics.ws_active.dec()
        worker.cancel()
        sender.cancel()
        await asyncio.gather(worker, sender, return_exceptions=True)
        if close_code is not None and ws.client_state == WebSocketState.CONNECTED:
            try:  # a reader that never reads cannot take our close frame either: don't wait forever
                await asyncio.wait_for(ws.close(code=close_code, reason=reason), timeout=5)
            except (TimeoutError, RuntimeError, WebSocketDisconnect):
                pass  # the client is gone already; there is nobody left to tell


async def _guarded_worker(session: TranscriptionSession, emit) -> None:
    try:
        await session.run()
    except ServiceError as exc:
        await emit(error_event(exc.code, exc.message))


async def _dispatch(text: str, session: TranscriptionSession, emit, session_id: str,
                    language_check: LanguageCheck | None = None) -> None:
    """Parse one client message and act on it; anything malformed raises _ClientError (the session lives on)."""
    try:
        event = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _ClientError("invalid_json", "The message is not valid JSON.") from None
    if not isinstance(event, dict) or not isinstance(event.get("type"), str):
        raise _ClientError("invalid_event", "Each message must be a JSON object with a string 'type'.", "type")
    kind = event["type"]
    if kind in ("session.update", "transcription_session.update"):
        config = parse_session_update(event.get("session"), session.config, language_check)
        session.reconfigure(config)
        reply = "session.updated" if kind == "session.update" else "transcription_session.updated"
        await emit({"type": reply, "session": _session_view(session_id, config)})
    elif kind == "input_audio_buffer.append":
        audio = event.get("audio")
        if not isinstance(audio, str):
            raise _ClientError("invalid_audio", "'audio' must be a base64 string of PCM16 samples.", "audio")
        try:
            pcm = base64.b64decode(audio, validate=True)
        except (binascii.Error, ValueError):
            raise _ClientError("invalid_audio", "'audio' is not valid base64.", "audio") from None
        if len(pcm) % 2:
            raise _ClientError("invalid_audio", "PCM16 audio must have an even number of bytes.", "audio")
        await session.append(pcm)
    elif kind == "input_audio_buffer.commit":
        await session.commit()
    elif kind == "input_audio_buffer.clear":
        session.clear()
        await emit({"type": "input_audio_buffer.cleared"})
    else:
        raise _ClientError("unknown_event", f"Unknown event type '{kind}'.", "type")
