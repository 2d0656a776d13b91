"""Pure-ASGI guards that must run before any body is parsed: body size and bearer auth.

The size limit is enforced while the body streams in (not after it has been buffered): a
``Content-Length`` over the limit is refused at once, and a chunked body is cut off at the limit.
"""

from __future__ import annotations

import hmac
import json

from service.errors import PayloadTooLarge, ServiceError, Unauthorized

OPEN_PATHS = frozenset({"/health", "/demo"})  # /demo: a static page; its websocket still needs the key


async def send_error(send, error: ServiceError) -> None:
    body = json.dumps(error.to_body()).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status_code, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class BodyLimitMiddleware:
    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    def _error(self) -> PayloadTooLarge:
        return PayloadTooLarge(f"The request body is larger than the limit of {self.max_bytes} bytes.",
                               param="file")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await send_error(send, self._error())
        state = {"received": 0, "exceeded": False, "started": False}

        async def limited_receive():
            message = await receive()
            if message["type"] == "http.request":
                state["received"] += len(message.get("body", b""))
                if state["received"] > self.max_bytes:
                    state["exceeded"] = True
                    raise self._error()
            return message

        async def guarded_send(message):
            if state["exceeded"]:
                # Whatever the app made of the interrupted body, the client gets the real reason.
                if message["type"] == "http.response.start" and not state["started"]:
                    state["started"] = True
                    await send_error(send, self._error())
                return
            if message["type"] == "http.response.start":
                state["started"] = True
            await send(message)

        try:
            await self.app(scope, limited_receive, guarded_send)
        except PayloadTooLarge:
            if not state["started"]:
                await send_error(send, self._error())


class BearerAuthMiddleware:
    """Every path but ``/health`` needs ``Authorization: Bearer <key>`` when a key is configured."""

    def __init__(self, app, api_key: str) -> None:
        self.app = app
        self.key = api_key.encode()

    def _authorised(self, scope) -> bool:
        headers = dict(scope.get("headers") or [])
        value = headers.get(b"authorization", b"")
        if value[:7].lower() == b"bearer ":
            return hmac.compare_digest(value[7:].strip(), self.key)
        if scope["type"] == "websocket":
            # Browsers cannot set headers on websockets: accept the OpenAI-style subprotocol token.
            for proto in headers.get(b"sec-websocket-protocol", b"").split(b","):
                proto = proto.strip()
                if proto.startswith(b"openai-insecure-api-key."):
                    return hmac.compare_digest(proto[len(b"openai-insecure-api-key."):], self.key)
        return False

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket") or scope.get("path") in OPEN_PATHS:
            return await self.app(scope, receive, send)
        if self._authorised(scope):
            return await self.app(scope, receive, send)
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008, "reason": "invalid api key"})
            return
        await send_error(send, Unauthorized("Missing or invalid API key. Send 'Authorization: Bearer <key>'.",
                                            headers={"WWW-Authenticate": "Bearer"}))
