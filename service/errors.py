"""Error types that carry their own HTTP meaning.

Every failure a client can cause is one of these; the API turns them into an OpenAI-style body
``{"error": {"message", "type", "param", "code"}}``. Anything else reaching the API boundary is a
bug and is reported as a 500 with a generic message (and logged).
"""

from __future__ import annotations


class ServiceError(Exception):
    """Base class: an error with an HTTP status and an OpenAI-style type and code."""

    status_code: int = 400
    error_type: str = "invalid_request_error"
    default_code: str = "invalid_request"

    def __init__(self, message: str, *, code: str | None = None, param: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.param = param
        self.headers = headers or {}

    def to_body(self) -> dict:
        return {"error": {"message": self.message, "type": self.error_type, "param": self.param,
                          "code": self.code}}


class InvalidRequest(ServiceError):
    """The request is malformed: a wrong field, an unknown option."""


class AudioError(ServiceError):
    """The uploaded bytes are not usable audio (empty, corrupt, unsupported, too long, non-finite)."""

    default_code = "invalid_audio"


class PayloadTooLarge(ServiceError):
    status_code = 413
    default_code = "payload_too_large"


class NotFound(ServiceError):
    status_code = 404
    default_code = "not_found"


class Unauthorized(ServiceError):
    status_code = 401
    error_type = "authentication_error"
    default_code = "invalid_api_key"


class Overloaded(ServiceError):
    """The bounded queue is full: the client should retry later (429 with Retry-After)."""

    status_code = 429
    error_type = "rate_limit_error"
    default_code = "queue_full"


class Unavailable(ServiceError):
    """The service cannot take work now (model not loaded, shutting down): 503 with Retry-After."""

    status_code = 503
    error_type = "server_error"
    default_code = "unavailable"


class EngineFailure(ServiceError):
    """Decoding failed inside the engine for this request; other requests are unaffected."""

    status_code = 500
    error_type = "server_error"
    default_code = "engine_error"


class EngineOutOfMemory(EngineFailure):
    """The engine ran out of memory on this request; it is being restarted (503 with Retry-After)."""

    status_code = 503
    default_code = "engine_out_of_memory"


class EngineRestarting(Unavailable):
    """The engine failed and is being restarted; the client should retry (503 with Retry-After)."""

    default_code = "engine_restarting"


class StorageFull(ServiceError):
    """The disk is full: results could not be written (nothing half-written is kept)."""

    status_code = 507
    error_type = "server_error"
    default_code = "insufficient_storage"


class Timeout(ServiceError):
    status_code = 504
    error_type = "server_error"
    default_code = "timeout"
