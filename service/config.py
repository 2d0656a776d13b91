"""One settings object for the whole service.

Every limit and knob lives here. CLI flags and ``MEGAASR_*`` environment variables both map onto
these fields (``megaasr serve --help`` lists them), so nothing else in the code reads the
environment.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_home() -> Path:
    return Path.home() / ".cache" / "megaasr"


class Settings(BaseSettings):
    """Service configuration. Field descriptions double as ``--help`` text."""

    model_config = SettingsConfigDict(env_prefix="MEGAASR_", extra="ignore")

    # Where converted checkpoints, noise banks and job results live.
    home: Path = Field(default_factory=_default_home, description="Cache folder for models and job data.")

    # Network.
    host: str = Field("127.0.0.1", description="Address to bind.")
    port: int = Field(8000, ge=0, le=65535, description="Port to bind.")

    # Model and engine.
    model: str = Field("whisper-tiny.en", description="Model name from the registry, or a local HF Whisper folder.")
    checkpoint: Path | None = Field(None, description="Served checkpoint bundle from `megaasr export` (robust LoRA + router); its base model is served unless --model is given.")
    robust_no_speech_gate: Literal["bundle", "off"] | float = Field(
        "bundle", description="The robust path's base-model no-speech gate: 'bundle' uses the checkpoint's "
        "robust_no_speech_gate, 'off' serves without it, a probability in (0, 1) replaces it. The gate skips a robust "
        "window whose base-model no-speech probability is above it; it stops the adapter writing text on music and "
        "noise and costs one base-model encoder pass per robust window (docs/training.md, round 28; embedded engine "
        "only).")
    robust_ensemble: Literal["bundle", "off"] = Field(
        "bundle", description="A checkpoint bundle's robust ensemble (its `ensemble` members): 'bundle' decodes robust "
        "audio with the main adapter and every member and serves the ROVER vote of their transcripts (one more decode "
        "and one more model copy in memory per member; docs/training.md, round 31); 'off' serves the main adapter "
        "alone. The vLLM engine sends robust requests to every member too (vllm_robust_member_models).")
    engine: Literal["embedded", "vllm"] = Field("embedded", description="Inference engine.")
    device: str = Field("cpu", description="torch device for the embedded engine.")
    threads: int = Field(0, ge=0, description="torch intra-op threads (0 = all cores).")
    compute_type: Literal["float32", "int8"] = Field("float32", description="Embedded engine weights: fp32 or dynamic int8.")
    trim_padding: bool = Field(False, description="Encode a window holding under 30 s of audio with only its audio "
                               "plus trim_margin_s of padding, not the full 30 s (embedded engine; faster on short "
                               "clips, see docs/benchmarks.md for its accuracy).")
    trim_margin_s: float = Field(5.0, ge=0.0, le=30.0, description="Silence kept after the audio when trimming.")
    beam_size: int = Field(1, ge=1, le=10, description="Beam width of the temperature-0 pass (uploads, streaming "
                           "finals, the stress endpoint); 1 is greedy. The embedded engine runs OpenAI's beam "
                           "search; the vLLM engine refuses a width above 1 at start-up.")
    best_of: int = Field(1, ge=1, le=10, description="Samples drawn per window at each fallback temperature "
                         "(and for a request's own temperature above 0); the most likely one is kept, as "
                         "OpenAI's and faster-whisper's best_of. 1 draws one. The vLLM engine refuses more "
                         "than 1 at start-up.")

    # Batching and queueing.
    max_batch_size: int = Field(8, ge=1, le=256, description="Most requests decoded together in one batch.")
    batch_wait_ms: float = Field(10.0, ge=0, le=5000, description="How long the batcher waits to fill a batch.")
    max_queue: int = Field(64, ge=1, description="Pending requests allowed before answering 429.")
    retry_after_s: int = Field(1, ge=1, description="Retry-After seconds sent with 429/503.")

    # Engine supervision (service/engines/supervisor.py).
    engine_max_consecutive_failures: int = Field(3, ge=1, description="Failed decodes in a row before the engine is restarted.")
    engine_restart_backoff_s: float = Field(1.0, gt=0, description="First wait between engine restart attempts (doubles).")
    engine_restart_max_backoff_s: float = Field(60.0, gt=0, description="Longest wait between engine restart attempts.")
    engine_restart_drain_s: float = Field(30.0, ge=0, description="How long in-flight requests may finish before a restart.")

    # Input limits.
    max_upload_mb: float = Field(25.0, gt=0, description="Largest accepted upload, in MB (10^6 bytes).")
    max_duration_s: float = Field(1800.0, gt=0, description="Longest accepted audio, in seconds.")
    request_timeout_s: float = Field(600.0, gt=0, description="Most time one transcription may take.")

    # Realtime websocket sessions.
    realtime_max_sessions: int = Field(32, ge=1, description="Concurrent /v1/realtime sessions (more: close 1013).")
    realtime_idle_timeout_s: float = Field(60.0, gt=0, description="Close a session after this long without a message.")
    realtime_max_session_s: float = Field(3600.0, gt=0, description="Longest realtime session before it is closed.")
    realtime_partial_interval_s: float = Field(0.25, gt=0, description="How often live partials are decoded (they encode only the audio so far, so this is cheap).")
    realtime_max_utterance_s: float = Field(28.0, gt=1, le=30, description="Utterances are committed at this length.")
    realtime_max_pending_events: int = Field(256, ge=8, description="Unsent events before a slow reader is dropped.")
    realtime_max_message_bytes: int = Field(1_048_576, ge=1024, description="Largest websocket message accepted.")

    # Stress jobs (POST /v1/stress).
    stress_max_jobs: int = Field(2, ge=1, description="Stress jobs queued or running at once (more: 429).")
    stress_max_cells: int = Field(216, ge=1, description="Most scenario x severity cells in one job.")
    stress_max_audio_s: float = Field(60.0, gt=0, description="Longest audio a stress job accepts, in s.")
    stress_concurrency: int = Field(2, ge=1, le=64, description="Cells of one stress job in flight at once.")
    stress_retention_s: float = Field(86400.0, gt=0, description="Seconds a finished stress job is kept.")
    stress_max_stored_jobs: int = Field(50, ge=1, description="Finished stress jobs kept; the oldest go first.")

    # vLLM engine (--engine vllm): the service fronts a vLLM OpenAI-compatible server (docs/deploy.md).
    vllm_url: str = Field("http://127.0.0.1:8001/v1", description="Base URL of the vLLM OpenAI-compatible server, with /v1.")
    vllm_served_model: str | None = Field(None, description="Name vLLM serves the base model under (default: the id of --model).")
    vllm_robust_model: str | None = Field(None, description="Name vLLM serves the robust model under: a LoRA adapter or a merged checkpoint (default with a robust --checkpoint: '<model id>-robust'; unset otherwise: no robust path).")
    vllm_robust_url: str | None = Field(None, description="Base URL of the vLLM server with the robust model, when it is a second server (default: --vllm-url, as for a LoRA adapter).")
    vllm_robust_member_models: list[str] | None = Field(None, description="Names vLLM serves a bundle's robust ensemble members under, in bundle order (LoRA adapters: `--lora-modules NAME=DIR/members/N`). Default with an ensemble bundle and robust_ensemble=bundle: '<robust model>-m1', '-m2', ... Robust requests go to the robust model and every member, and the ROVER vote of their transcripts is served.")
    vllm_robust_member_urls: list[str] | None = Field(None, description="Base URLs of the vLLM servers holding the ensemble members, one per member in bundle order (CPU: one merged member per server). Default: the robust model's server for every member.")
    vllm_api_key: SecretStr | None = Field(None, description="Bearer key of the vLLM server (its --api-key), if it has one.")
    vllm_startup_timeout_s: float = Field(600.0, gt=0, description="How long start-up waits for the vLLM server and its models before failing.")
    vllm_health_interval_s: float = Field(5.0, gt=0, description="How often the vLLM server is checked; /ready follows it.")
    vllm_health_failures: int = Field(3, ge=1, description="Consecutive failed checks before /ready turns false (one slow answer from a busy vLLM is not an outage).")
    vllm_max_audio_s: float = Field(600.0, gt=0, description="Longest audio sent to vLLM (400 audio_too_long above); keep <= the server's VLLM_MAX_AUDIO_DECODE_DURATION_S (600 by default).")

    # Lifecycle (service/api/lifecycle.py).
    drain_grace_s: float = Field(30.0, ge=0, description="On SIGTERM: how long in-flight requests and realtime sessions may finish before the process exits.")

    # Security.
    api_key: SecretStr | None = Field(None, description="If set, every endpoint but /health needs 'Authorization: Bearer <key>'.")
    cors_origins: list[str] = Field(default_factory=list, description="Allowed CORS origins (empty = CORS off).")

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @model_validator(mode="after")
    def _int8_is_cpu_only(self) -> Settings:
        """torch's dynamic int8 kernels exist only on the CPU: refuse the pair at start, not mid-request."""
        if self.compute_type == "int8" and self.device != "cpu":
            raise ValueError(f"compute_type int8 runs on the CPU only; use float32 with device {self.device!r}")
        return self

    @model_validator(mode="after")
    def _no_speech_gate_is_a_probability(self) -> Settings:
        gate = self.robust_no_speech_gate
        if not isinstance(gate, str) and not 0.0 < gate < 1.0:
            raise ValueError(f"robust_no_speech_gate must be 'bundle', 'off' or a probability in (0, 1), got {gate}")
        return self

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once from the environment."""
    return Settings()
