"""Schemathesis against the service's own OpenAPI schema, on a real loopback server.

Every documented operation is fuzzed with schema-valid and schema-invalid inputs. What must hold
for every case: no 5xx, the status code is one the schema documents, and the body, content type
and headers match what the schema says. ``positive_data_acceptance`` is left out on purpose: a
schema-valid upload of random bytes is still not audio, and 400 is the right answer to it.
The run is bounded (examples per operation) so the suite stays fast.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.api.app import create_app
from service.config import Settings
from tests.server import running_server

pytestmark = pytest.mark.slow
CHECKS = [not_a_server_error, status_code_conformance, response_schema_conformance, content_type_conformance,
          response_headers_conformance]


@pytest.fixture(scope="module")
def fuzz_url(tiny_en_dir: Path, tmp_path_factory) -> Iterator[str]:
    s = Settings(model=str(tiny_en_dir), home=tmp_path_factory.mktemp("fuzz"), threads=2, max_upload_mb=2.0,
                 max_duration_s=30.0, stress_max_audio_s=10.0)
    with running_server(s) as url:
        yield url


# The schema is the app's own (FastAPI builds it without loading a model); the cases then go to
# the loopback server. (schemathesis.pytest.from_fixture does not work with pytest 9.)
schema = schemathesis.openapi.from_dict(create_app(Settings()).openapi())


@schema.parametrize()
@settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck))
def test_every_operation_answers_within_its_schema(case, fuzz_url: str) -> None:
    case.call_and_validate(base_url=fuzz_url, checks=CHECKS, timeout=120)
