"""Websocket streaming (``/v1/realtime``) with ``--engine vllm``: tests/streaming's own tests, imported.

Live partials are frequent short decodes, so this is the vLLM engine under its busiest pattern.
The ``rt_server`` fixture they ask for is redefined in tests/vllm/conftest.py.
"""

from __future__ import annotations

import pytest

from tests.streaming.test_realtime_ws import (  # noqa: F401 (collected here, against the vLLM engine)
    test_idle_timeout_closes_with_4000,
    test_manual_commit_without_vad,
    test_protocol_errors_keep_the_session_open,
    test_streaming_matches_file_quality_with_steady_partials,
)

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
