from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from service.config import Settings
from tests.server import running_server


@pytest.fixture(scope="session")
def api_settings(tiny_en_dir: Path, tmp_path_factory) -> Settings:
    """Small limits so that every limit can be hit with small test files."""
    return Settings(model=str(tiny_en_dir), home=tmp_path_factory.mktemp("home"), max_upload_mb=1.0,
                    max_duration_s=20.0, max_queue=2, max_batch_size=4, batch_wait_ms=20, threads=2)


@pytest.fixture(scope="session")
def server(api_settings: Settings) -> Iterator[str]:
    with running_server(api_settings) as url:
        yield url


@pytest.fixture(scope="session")
def clean_wer_bound() -> float:
    """Corpus WER bound on the five clean LibriVox utterances (tiny.en, embedded engine: 3/71 = 0.042).

    A fixture so that tests/vllm can run the same test with the bound measured for vLLM's decoder.
    """
    return 0.06
