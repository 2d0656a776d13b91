"""Every kind of bad input gets a 4xx with an OpenAI-style error body; never a 500, never a hang."""

from __future__ import annotations

import asyncio
import io
import struct
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf

from service.config import Settings
from tests.server import running_server

pytestmark = pytest.mark.slow


def post(server: str, content: bytes | None = None, timeout: float = 60, **data) -> httpx.Response:
    fields = {"model": "whisper-1", **data}
    files = {"file": ("clip.wav", content)} if content is not None else None
    return httpx.post(f"{server}/v1/audio/transcriptions", data=fields, files=files, timeout=timeout)


def assert_error(r: httpx.Response, status: int, code: str | None = None) -> dict:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["message"]
    if code is not None:
        assert err["code"] == code
    return err


def wav(samples: np.ndarray, sr: int = 16000, subtype: str = "PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, samples, sr, format="WAV", subtype=subtype)
    return buf.getvalue()


def test_empty_file(server: str) -> None:
    assert_error(post(server, b""), 400, "empty_file")


def test_not_audio(server: str) -> None:
    assert_error(post(server, b"%PDF-1.4 definitely not audio" * 20), 400, "invalid_audio")


def test_truncated_header(server: str) -> None:
    assert_error(post(server, b"RIFF\x24\x00\x00\x00WAVEfmt "), 400, "invalid_audio")


def test_unsupported_codec(server: str) -> None:
    # A WAV whose format tag is 0x0160 (Windows Media Audio): a real container, a codec we don't read.
    fmt = struct.pack("<HHIIHH", 0x0160, 1, 16000, 16000, 1, 16)
    body = b"\x00" * 3200
    data = (b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(body)) + b"WAVE" + b"fmt " +
            struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(body)) + body)
    assert_error(post(server, data), 400, "invalid_audio")


def test_zero_length_audio(server: str) -> None:
    assert_error(post(server, wav(np.zeros(0, dtype=np.float32))), 400, "zero_length_audio")


def test_over_duration_limit(server: str, api_settings: Settings) -> None:
    seconds = api_settings.max_duration_s + 1
    quiet = (np.random.default_rng(0).standard_normal(int(seconds * 8000)) * 0.01).astype(np.float32)
    # 8 kHz 8-bit keeps the file under the size limit while over the duration limit.
    err = assert_error(post(server, wav(quiet, 8000, "PCM_U8")), 400, "audio_too_long")
    assert err["param"] == "file"


def test_over_size_limit(server: str, api_settings: Settings) -> None:
    big = b"\x00" * (api_settings.max_upload_bytes + 1000)
    assert_error(post(server, big), 413, "payload_too_large")


def test_over_size_limit_chunked_without_length(server: str, api_settings: Settings) -> None:
    boundary = "xyz"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n"
            "Content-Type: audio/wav\r\n\r\n").encode()

    def body():
        yield head
        for _ in range(int(api_settings.max_upload_bytes / 65536) + 5):
            yield b"\x00" * 65536
        yield f"\r\n--{boundary}--\r\n".encode()

    r = httpx.post(f"{server}/v1/audio/transcriptions", content=body(), timeout=60,
                   headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert_error(r, 413, "payload_too_large")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_samples(server: str, bad: float) -> None:
    x = np.zeros(16000, dtype=np.float32)
    x[10] = bad
    assert_error(post(server, wav(x, subtype="FLOAT")), 400, "non_finite_audio")


def test_wrong_field_types(server: str, librivox) -> None:
    content = librivox[1][0].read_bytes()
    err = assert_error(post(server, content, temperature="very hot"), 400, "invalid_value")
    assert err["param"] == "temperature"
    assert_error(post(server, content, temperature="7"), 400, "invalid_value")
    assert_error(post(server, content, stream="perhaps"), 400, "invalid_value")


def test_missing_file(server: str) -> None:
    err = assert_error(post(server, None), 400)
    assert err["param"] == "file"


def test_unknown_model(server: str, librivox) -> None:
    assert_error(post(server, librivox[1][0].read_bytes(), model="gpt-7-ultra"), 404, "model_not_found")


def test_unknown_response_format(server: str, librivox) -> None:
    assert_error(post(server, librivox[1][0].read_bytes(), response_format="docx"), 400,
                 "unsupported_response_format")


def test_unsupported_language_for_english_model(server: str, librivox) -> None:
    assert_error(post(server, librivox[1][0].read_bytes(), language="de"), 400, "unsupported_language")


def test_unknown_route_is_openai_style_404(server: str) -> None:
    assert_error(httpx.get(f"{server}/v1/nothing-here"), 404)


def test_queue_full_answers_429_with_retry_after(server: str, librivox, api_settings: Settings) -> None:
    content = librivox[0][0].read_bytes()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=120) as client:
            async def one() -> httpx.Response:
                return await client.post(f"{server}/v1/audio/transcriptions", data={"model": "whisper-1"},
                                         files={"file": ("a.wav", content)})
            return await asyncio.gather(*(one() for _ in range(api_settings.max_queue + 10)))

    responses = asyncio.run(burst())
    statuses = [r.status_code for r in responses]
    assert 429 in statuses and 200 in statuses, statuses
    assert set(statuses) <= {200, 429}
    limited = next(r for r in responses if r.status_code == 429)
    assert int(limited.headers["Retry-After"]) >= 1
    assert_error(limited, 429, "queue_full")


def test_bearer_auth(tiny_en_dir: Path, tmp_path: Path, librivox) -> None:
    settings = Settings(model=str(tiny_en_dir), home=tmp_path, api_key="s3cret", threads=2)
    with running_server(settings) as url:
        assert httpx.get(f"{url}/health").status_code == 200
        assert_error(httpx.get(f"{url}/v1/models"), 401, "invalid_api_key")
        assert_error(httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"}), 401)
        ok = httpx.get(f"{url}/v1/models", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
