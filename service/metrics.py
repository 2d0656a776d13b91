"""Prometheus metrics, one registry per app instance (so tests can build many apps).

Names are part of the deployment contract: the Grafana dashboard in ``deploy/`` queries them, and
a CI check verifies every query names a metric defined here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)
RTF_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1, 2, 5)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("megaasr_requests_total", "HTTP requests by endpoint and status.",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("megaasr_request_latency_seconds", "HTTP request latency.", ["endpoint"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self.audio_seconds = Counter("megaasr_audio_seconds_total", "Seconds of audio transcribed.",
                                     ["adapter"], registry=r)
        self.rtf = Histogram("megaasr_real_time_factor", "Processing time divided by audio duration.",
                             buckets=RTF_BUCKETS, registry=r)
        self.queue_depth = Gauge("megaasr_queue_depth", "Requests waiting for or in decoding.", registry=r)
        self.batch_size = Histogram("megaasr_batch_size", "Requests decoded together in one batch.",
                                    buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)
        self.router_decisions = Counter("megaasr_router_decisions_total", "Router choices.",
                                        ["adapter", "mode"], registry=r)
        self.skipped_windows = Counter(
            "megaasr_skipped_windows_total",
            "30-second windows answered with no text by a guard: reason=guard (OpenAI's no-speech gate, a loop, "
            "the robust log-prob gate) or no_speech_gate (the robust path's base-model no-speech gate).",
            ["adapter", "reason"], registry=r)
        self.router_p_degraded = Histogram("megaasr_router_p_degraded",
                                           "Router probability that the audio is degraded (router=auto).",
                                           buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0), registry=r)
        self.ws_active = Gauge("megaasr_websocket_sessions_active", "Open realtime sessions.", registry=r)
        self.ws_total = Counter("megaasr_websocket_sessions_total", "Realtime sessions opened.", registry=r)
        self.partial_latency = Histogram("megaasr_partial_latency_seconds",
                                         "Time from audio arrival to a partial transcript.",
                                         buckets=LATENCY_BUCKETS, registry=r)
        self.stress_jobs = Counter("megaasr_stress_jobs_total", "Stress jobs by final state.", ["state"],
                                   registry=r)
        self.stress_wer = Gauge("megaasr_stress_wer", "WER of the latest stress job per scenario and path.",
                                ["scenario", "path"], registry=r)
        self.model_load_seconds = Gauge("megaasr_model_load_seconds", "Time to load the model.", ["model"],
                                        registry=r)
        self.engine_ready = Gauge("megaasr_engine_ready", "1 when the engine can take requests.", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
