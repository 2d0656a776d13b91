"""The browser demo page, end to end: headless Chromium, a fake microphone fed from a WAV file.

Chromium's fake capture device plays real LibriVox speech into ``getUserMedia``; the page streams
it to ``/v1/realtime`` on a real uvicorn server and must show live partials and then finals whose
words match the references. Needs Debian's ``chromium`` (installed by ``scripts/setup.sh test``)
and the ``playwright`` Python package (driving it through ``executable_path``; no browser download).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import soundfile as sf
import soxr

from service.config import Settings
from service.scoring import corpus_score
from tests.server import running_server

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         "--autoplay-policy=no-user-gesture-required"]


@pytest.fixture(scope="module")
def demo_server(tiny_en_dir: Path, tmp_path_factory) -> Iterator[str]:
    settings = Settings(model=str(tiny_en_dir), home=tmp_path_factory.mktemp("home"), threads=2)
    with running_server(settings) as url:
        yield url


def _speech_wav(librivox, path: Path) -> list[str]:
    """Two utterances with a pause between and silence after, as a 48 kHz PCM16 file."""
    rate = 48_000
    parts, refs = [np.zeros(rate // 2, dtype=np.float32)], []
    for wav, ref in librivox[:2]:
        x, sr = sf.read(wav, dtype="float32", always_2d=True)
        parts += [soxr.resample(x.mean(axis=1), sr, rate).astype(np.float32), np.zeros(2 * rate, np.float32)]
        refs.append(ref)
    parts.append(np.zeros(rate * 2, dtype=np.float32))
    sf.write(path, np.concatenate(parts), rate, subtype="PCM_16")
    return refs


def test_the_demo_page_is_served_without_a_key(demo_server: str) -> None:
    page = httpx.get(f"{demo_server}/demo")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/v1/realtime" in page.text and "input_audio_buffer.append" in page.text


def test_microphone_to_live_text_in_chromium(demo_server: str, librivox, tmp_path: Path) -> None:
    playwright = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed (scripts/setup.sh test installs it)")
    wav = tmp_path / "speech.wav"
    references = _speech_wav(librivox, wav)
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=[*FLAGS, f"--use-file-for-fake-audio-capture={wav}%noloop"])
        try:
            page = browser.new_page()
            console: list[str] = []
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{demo_server}/demo")
            page.click("#start")
            page.wait_for_function("window.megaasrDemo.finals.length >= 2", timeout=120_000)
            stats = page.evaluate("window.megaasrDemo")
            finals_in_dom = page.locator("#transcript .final").all_inner_texts()
        finally:
            browser.close()
    assert stats["errors"] == [], (stats, console)
    assert stats["deltas"] >= len(stats["finals"]) + 1, stats  # partials came before the finals
    assert stats["firstDeltaMs"] is not None
    hypothesis = " ".join(stats["finals"])
    assert [t.strip() for t in finals_in_dom] == [t.strip() for t in stats["finals"]]
    assert corpus_score([(" ".join(references), hypothesis)]).wer <= 0.15, hypothesis
