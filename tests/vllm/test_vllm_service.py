"""The service with ``--engine vllm`` passes the embedded engine's own API, bad-input and stress tests.

The test functions are imported from tests/api and tests/stress, not copied: the fixtures they ask
for (``server``, ``api_settings``, ``stress_server``, ...) are redefined in tests/vllm/conftest.py to
run the service in front of real vLLM servers. Left out: ``test_bearer_auth`` (it starts its own
embedded-engine server, so it would test nothing about vLLM).
"""

from __future__ import annotations

import pytest

from tests.api.test_bad_input import (  # noqa: F401 (collected here, against the vLLM engine)
    test_empty_file,
    test_missing_file,
    test_non_finite_samples,
    test_not_audio,
    test_over_duration_limit,
    test_over_size_limit,
    test_over_size_limit_chunked_without_length,
    test_queue_full_answers_429_with_retry_after,
    test_truncated_header,
    test_unknown_model,
    test_unknown_response_format,
    test_unknown_route_is_openai_style_404,
    test_unsupported_codec,
    test_unsupported_language_for_english_model,
    test_wrong_field_types,
    test_zero_length_audio,
)
from tests.api.test_transcriptions import (  # noqa: F401
    test_any_rate_and_channels,
    test_models_health_ready,
    test_openai_client_streaming,
    test_openai_client_transcribes_real_speech,
    test_openai_client_verbose_json_and_alias,
    test_response_formats,
    test_without_a_checkpoint_routing_says_so,
)
from tests.stress.test_stress_api import (  # noqa: F401
    test_bad_audio_for_a_job,
    test_bad_job_requests_are_4xx_before_any_work,
    test_cancel_keeps_partial_results_and_delete_removes,
    test_cli_prints_the_table,
    test_corrupt_bad_input,
    test_corrupt_is_deterministic_and_seeded,
    test_job_limit_answers_429_with_retry_after,
    test_restart_marks_an_unfinished_job_interrupted,
    test_scenarios_lists_all_54_with_chains,
    test_three_scenarios_finish_with_sensible_numbers,
    test_unknown_jobs_and_clips_are_404,
    test_without_reference_the_clean_transcript_is_the_reference,
)

pytestmark = [pytest.mark.slow, pytest.mark.vllm]
