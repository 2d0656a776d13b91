"""Security properties: API key on every endpoint but /health, CORS off by default, the upload limit
enforced before the body is read, client filenames and paths never reach the filesystem."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import httpx
import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from service.api.app import create_app
from service.config import Settings
from tests.server import running_server


def _concrete(path: str) -> str:
    return path.replace("{job_id}", "stress_" + "0" * 32).replace("{model_id}", "whisper-1") \
        .replace("{scenario}", "noise").replace("{severity}", "0.5")


def test_api_key_guards_every_route_but_health() -> None:
    """Walk the app's own OpenAPI paths, so a route added later is covered too (no model is loaded:
    the guard answers before any route runs), plus the undocumented ones and the websocket."""
    app = create_app(Settings(api_key="s3cret"))
    client = TestClient(app)
    operations = [(m.upper(), path) for path, ops in app.openapi()["paths"].items() for m in ops]
    operations += [("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc"), ("GET", "/nowhere")]
    assert len(operations) >= 15
    for method, path in operations:
        r = client.request(method, _concrete(path))
        if path == "/health":
            assert r.status_code == 200
            continue
        assert r.status_code == 401, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "invalid_api_key"
        assert r.headers["WWW-Authenticate"] == "Bearer"
        for wrong in ("Bearer s3cre", "Bearer s3cret2", "Basic s3cret", "s3cret"):
            assert client.request(method, _concrete(path), headers={"Authorization": wrong}).status_code == 401
    with pytest.raises(WebSocketDisconnect) as closed, client.websocket_connect("/v1/realtime"):
        pass
    assert closed.value.code == 1008
    assert client.get("/openapi.json", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_api_key_compare_is_constant_time(monkeypatch: pytest.MonkeyPatch) -> None:
    import hmac

    from service.api import middleware

    calls: list[tuple[bytes, bytes]] = []
    real = hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(middleware.hmac, "compare_digest", spy)
    client = TestClient(create_app(Settings(api_key="s3cret")))
    assert client.get("/v1/models", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert calls == [(b"nope", b"s3cret")]


def test_cors_is_off_by_default() -> None:
    client = TestClient(create_app(Settings()))
    pre = client.options("/health", headers={"Origin": "https://evil.example",
                                             "Access-Control-Request-Method": "POST"})
    assert "access-control-allow-origin" not in pre.headers
    assert "access-control-allow-origin" not in client.get("/health", headers={"Origin": "https://x.example"}).headers


@pytest.fixture(scope="module")
def sec_server(tiny_en_dir: Path, tmp_path_factory):
    home = tmp_path_factory.mktemp("sec")
    with running_server(Settings(model=str(tiny_en_dir), home=home, threads=2, max_upload_mb=1.0)) as url:
        yield url, home


@pytest.mark.slow
def test_upload_limit_answers_before_the_body_is_sent(sec_server) -> None:
    url, _ = sec_server
    port = int(url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n"
                     b"Content-Type: multipart/form-data; boundary=b\r\n\r\n")
        head = sock.recv(4096)  # not one body byte was sent: the 413 cannot have waited for it
    assert head.startswith(b"HTTP/1.1 413"), head[:100]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["../../../../tmp/megaasr-pwned-{}.wav", "/tmp/megaasr-pwned-{}.wav",
                                  "..\\..\\megaasr-pwned-{}.wav"])
def test_client_filenames_never_touch_the_filesystem(sec_server, librivox, name: str) -> None:
    url, home = sec_server
    token = uuid.uuid4().hex
    filename = name.format(token)
    content = librivox[1][0].read_bytes()
    r = httpx.post(f"{url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                   files={"file": (filename, content)}, timeout=120)
    assert r.status_code == 200
    r = httpx.post(f"{url}/v1/stress", data={"scenarios": "noise", "severities": "0.5", "router": "base"},
                   files={"file": (filename, content)}, timeout=120)
    assert r.status_code == 202
    httpx.delete(f"{url}{r.json()['status_url']}")
    assert not list(Path("/tmp").glob(f"*{token}*"))
    assert not [p for p in home.rglob("*") if token in p.name]


@pytest.mark.slow
def test_stress_and_corrupt_cannot_read_server_paths(sec_server) -> None:
    url, _ = sec_server
    for path in ("/etc/passwd", "file:///etc/passwd", str(Path.home())):
        r = httpx.post(f"{url}/v1/audio/corrupt", data={"scenario": "noise", "file": path}, timeout=60)
        assert r.status_code == 400, r.text
        r = httpx.post(f"{url}/v1/audio/corrupt", data={"scenario": "noise"},
                       files={"file": ("a.wav", path.encode())}, timeout=60)
        assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_audio"
        r = httpx.post(f"{url}/v1/stress", data={"file": path, "scenarios": "noise"}, timeout=60)
        assert r.status_code == 400, r.text
    for bad in ("/v1/stress/..%2F..%2Fetc%2Fpasswd", "/v1/stress/stress_" + "0" * 32 + "/clips/..%2F..%2Fetc/0.5.wav",
                "/v1/stress/../../etc/passwd/report.html"):
        r = httpx.get(f"{url}{bad}")
        assert r.status_code in (400, 404), (bad, r.status_code)
        assert "root:" not in r.text
        json.loads(r.text)  # an OpenAI-style JSON error, not a file
