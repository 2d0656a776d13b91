"""Clients that vanish: mid-upload, mid-stream, right after submitting a stress job."""

from __future__ import annotations

import base64
import json
import os
import socket
import time
from pathlib import Path

import httpx
import pytest

from service.config import Settings
from tests.reliability.conftest import wait_for
from tests.server import live_server

pytestmark = pytest.mark.slow


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def live(tiny_en_dir: Path, tmp_path_factory):
    settings = Settings(model=str(tiny_en_dir), home=tmp_path_factory.mktemp("dc"), threads=2, max_upload_mb=5)
    with live_server(settings) as server:
        yield server


def test_disconnect_mid_upload_frees_its_resources(live, librivox) -> None:
    port = int(live.url.rsplit(":", 1)[1])
    ok = httpx.post(f"{live.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                    files={"file": ("a.wav", librivox[1][0].read_bytes())}, timeout=120)
    assert ok.status_code == 200
    before = open_fds()
    head = (b"--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-1\r\n--b\r\n"
            b"Content-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n")
    for _ in range(20):  # 1.5 MB of a declared 4 MB: past the 1 MB spool, so a temp file exists
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Length: 4000000\r\n"
                         b"Content-Type: multipart/form-data; boundary=b\r\n\r\n" + head)
            sock.sendall(b"\x00" * 1_500_000)
    assert wait_for(lambda: open_fds() <= before + 2, timeout=30), (before, open_fds())
    again = httpx.post(f"{live.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                       files={"file": ("a.wav", librivox[1][0].read_bytes())}, timeout=120)
    assert again.status_code == 200
    assert live.engine.queue_depth() == 0


def test_disconnect_mid_stream_frees_the_session(live, librivox) -> None:
    import asyncio

    import websockets

    ws_url = live.url.replace("http://", "ws://") + "/v1/realtime"
    pcm = (b"\x10\x00\xf0\xff" * 12000)

    async def vanish() -> None:
        ws = await websockets.connect(ws_url)
        await ws.recv()
        await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
        for _ in range(10):
            await ws.send(json.dumps({"type": "input_audio_buffer.append", "audio": base64.b64encode(pcm).decode()}))
        await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))  # a decode is now in flight
        ws.transport.abort()  # no close frame: the TCP connection just dies

    before = open_fds()
    for _ in range(5):
        asyncio.run(vanish())
    state = live.app.state.service
    assert wait_for(lambda: state.realtime_sessions == 0, timeout=60), state.realtime_sessions
    assert wait_for(lambda: live.engine.queue_depth() == 0, timeout=60)
    assert wait_for(lambda: open_fds() <= before + 2, timeout=30), (before, open_fds())


def test_stress_job_survives_its_client_disconnecting(live, librivox) -> None:
    port = int(live.url.rsplit(":", 1)[1])
    content = librivox[0][0].read_bytes()
    body = (b"--b\r\nContent-Disposition: form-data; name=\"scenarios\"\r\n\r\nnoise\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"severities\"\r\n\r\n0.5\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"router\"\r\n\r\nbase\r\n"
            b"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n" + content +
            b"\r\n--b--\r\n")
    jobs_dir = live.app.state.stress_jobs.store.root
    existing = set(jobs_dir.iterdir()) if jobs_dir.exists() else set()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"POST /v1/stress HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     + f"Content-Length: {len(body)}\r\n\r\n".encode() + body)
        time.sleep(0.5)  # the request is in; the client leaves without reading the answer
    assert wait_for(lambda: jobs_dir.exists() and set(jobs_dir.iterdir()) - existing, timeout=60)
    job_id = (set(jobs_dir.iterdir()) - existing).pop().name
    url = f"{live.url}/v1/stress/{job_id}"
    assert wait_for(lambda: httpx.get(url).json()["status"] not in ("queued", "running"), timeout=300)
    job = httpx.get(url).json()
    assert job["status"] == "completed" and len(job["results"]) == 1
    assert httpx.get(f"{live.url}{job['results'][0]['clip_url']}").status_code == 200
