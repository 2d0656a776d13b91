"""OpenAI protocol models for the transcription API (the shapes the official client parses)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

ResponseFormat = Literal["json", "text", "srt", "vtt", "verbose_json"]
RESPONSE_FORMATS: tuple[str, ...] = ("json", "text", "srt", "vtt", "verbose_json")


class Usage(BaseModel):
    type: Literal["duration"] = "duration"
    seconds: float


class TranscriptionJSON(BaseModel):
    text: str
    usage: Usage | None = None


class WordOut(BaseModel):
    word: str
    start: float
    end: float


class SegmentOut(BaseModel):
    id: int
    seek: int
    start: float
    end: float
    text: str
    tokens: list[int]
    temperature: float
    avg_logprob: float
    compression_ratio: float
    no_speech_prob: float | None = None  # None: the engine cannot measure it (vLLM does not report it)


class RouterInfo(BaseModel):
    """Which model path decoded the request and why (our extension of verbose_json)."""

    mode: Literal["auto", "base", "robust"]
    adapter: Literal["base", "robust"]
    p_degraded: float | None = None


class TranscriptionVerboseJSON(BaseModel):
    task: Literal["transcribe", "translate"] = "transcribe"
    language: str
    duration: float
    text: str
    segments: list[SegmentOut] = Field(default_factory=list)
    words: list[WordOut] | None = None
    usage: Usage | None = None
    router: RouterInfo | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "mega-asr"
    root: str | None = None
    multilingual: bool | None = None
    adapters: list[str] = Field(default_factory=list)
    router: str | None = None


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorDetail
