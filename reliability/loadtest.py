"""Bounded mixed load on loopback: file transcriptions, stress jobs, websocket sessions, overload bursts.

Starts ``megaasr serve`` as a separate process on 127.0.0.1 (nothing else is contacted), warms it
up, records the warm RSS baseline, runs the mixed load for ``--duration`` seconds while sampling the
server's RSS, lets it idle, and writes ``<out>.json`` and ``<out>.png``. Exit status 1 when any
request got a 5xx (other than a 503 with Retry-After during an overload burst), any request was lost
(no answer: connection error or timeout), a 429/503 came without Retry-After, a stress job or
websocket utterance did not finish, or the idle RSS did not return near the baseline.

    python -m reliability.loadtest --duration 240 --out docs/reliability_load
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import httpx
import numpy as np
import psutil
import soundfile as sf
import soxr
import websockets

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
RT_RATE = 24_000


@dataclass
class Record:
    kind: str  # file | stress | ws | burst
    started: float  # seconds since the load began
    latency_s: float
    status: str  # HTTP status, "completed", or an error name


@dataclass
class Results:
    duration_s: float
    records: list[Record] = field(default_factory=list)
    rss: list[tuple[float, float]] = field(default_factory=list)  # (seconds since start, MiB)
    missing_retry_after: int = 0
    problems: list[str] = field(default_factory=list)


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, home: Path, port: int, env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """``megaasr serve`` in its own process, configured through MEGAASR_* variables."""
    full_env = {**os.environ, "MEGAASR_HOST": "127.0.0.1", "MEGAASR_PORT": str(port), "MEGAASR_MODEL": model,
                "MEGAASR_HOME": str(home), **env}
    log = open(log_path, "wb")  # noqa: SIM115 - closed with the process by the caller
    return subprocess.Popen([sys.executable, "-m", "service.cli", "serve"], env=full_env, stdout=log,
                            stderr=subprocess.STDOUT, cwd=Path(__file__).resolve().parents[1])


def wait_ready(url: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} during start-up")
        try:
            if httpx.get(f"{url}/ready", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise TimeoutError("server did not become ready")


class RssSampler(threading.Thread):
    def __init__(self, pid: int, t0: float, out: list[tuple[float, float]], interval: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.proc, self.t0, self.out, self.interval = psutil.Process(pid), t0, out, interval
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                self.out.append((time.monotonic() - self.t0, self.proc.memory_info().rss / 2**20))
            except psutil.Error:
                return
            self.stop.wait(self.interval)


def rss_now(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


class Load:
    def __init__(self, url: str, clips: list[bytes], pcm: list[bytes], res: Results, t0: float,
                 max_queue: int) -> None:
        self.url, self.clips, self.pcm, self.res, self.t0 = url, clips, pcm, res, t0
        self.ws_url = url.replace("http://", "ws://") + "/v1/realtime"
        self.max_queue = max_queue
        self.rng = random.Random(0)

    def record(self, kind: str, started: float, status: str) -> None:
        self.res.records.append(Record(kind, started - self.t0, time.monotonic() - started, status))

    def check_retry_after(self, r: httpx.Response) -> None:
        if r.status_code in (429, 503) and not r.headers.get("Retry-After", "").isdigit():
            self.res.missing_retry_after += 1

    async def file_request(self, client: httpx.AsyncClient, kind: str = "file") -> httpx.Response | None:
        started = time.monotonic()
        try:
            r = await client.post(f"{self.url}/v1/audio/transcriptions", data={"model": "whisper-1"},
                                  files={"file": ("clip.wav", self.rng.choice(self.clips))})
        except httpx.HTTPError as exc:
            self.record(kind, started, f"lost:{type(exc).__name__}")
            return None
        self.check_retry_after(r)
        self.record(kind, started, str(r.status_code))
        return r

    async def file_worker(self, client: httpx.AsyncClient, until: float) -> None:
        while time.monotonic() < until:
            r = await self.file_request(client)
            if r is not None and r.status_code in (429, 503):
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")))

    async def stress_worker(self, client: httpx.AsyncClient, until: float) -> None:
        scenarios = ["noise", "far_field", "distortion", "stutter", "barrier"]
        while time.monotonic() < until:
            started = time.monotonic()
            try:
                r = await client.post(f"{self.url}/v1/stress", files={"file": ("clip.wav", self.clips[0])},
                                      data={"scenarios": self.rng.choice(scenarios), "severities": "0.5",
                                            "router": "base"})
            except httpx.HTTPError as exc:
                self.record("stress", started, f"lost:{type(exc).__name__}")
                continue
            self.check_retry_after(r)
            if r.status_code != 202:
                self.record("stress", started, str(r.status_code))
                await asyncio.sleep(float(r.headers.get("Retry-After", "1")) if r.status_code == 429 else 1)
                continue
            job_url = f"{self.url}{r.json()['status_url']}"
            status = "lost:never_finished"
            while time.monotonic() < until + 300:
                try:
                    job = (await client.get(job_url)).json()
                except (httpx.HTTPError, ValueError):
                    await asyncio.sleep(0.5)
                    continue
                if job["status"] not in ("queued", "running"):
                    status = job["status"]
                    break
                await asyncio.sleep(0.5)
            self.record("stress", started, status)

    async def ws_worker(self, until: float) -> None:
        while time.monotonic() < until:
            pcm = self.rng.choice(self.pcm)
            started = time.monotonic()
            status = "lost:no_transcript"
            try:
                async with websockets.connect(self.ws_url, max_size=2**22, open_timeout=30) as ws:
                    await ws.recv()
                    await ws.send(json.dumps({"type": "session.update", "session": {"turn_detection": None}}))
                    step = RT_RATE // 5 * 2  # 200 ms chunks, sent at 4x real time
                    for i in range(0, len(pcm), step):
                        await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                                  "audio": base64.b64encode(pcm[i:i + step]).decode()}))
                        await asyncio.sleep(0.05)
                    started = time.monotonic()  # latency: commit -> final transcript
                    await ws.send(json.dumps({"type": "input_audio_buffer.commit"}))
                    deadline = time.monotonic() + 120
                    while time.monotonic() < deadline:
                        event = json.loads(await asyncio.wait_for(ws.recv(), deadline - time.monotonic()))
                        if event["type"].endswith("transcription.completed"):
                            status = "completed"
                            break
                        if event["type"].endswith("transcription.failed"):
                            status = f"failed:{event['error']['code']}"
                            break
            except (OSError, TimeoutError, websockets.WebSocketException) as exc:
                status = f"lost:{type(exc).__name__}"
            self.record("ws", started, status)

    async def burst_worker(self, client: httpx.AsyncClient, until: float, every_s: float) -> None:
        """Over capacity on purpose: 3x the queue at once must give 200s and 429/503 with Retry-After."""
        next_burst = time.monotonic() + every_s / 2
        while True:
            await asyncio.sleep(max(0.0, min(next_burst, until) - time.monotonic()))
            if time.monotonic() >= until:
                return
            await asyncio.gather(*(self.file_request(client, "burst") for _ in range(3 * self.max_queue)))
            next_burst = time.monotonic() + every_s

    async def run(self, duration: float, file_workers: int, ws_workers: int, burst_every_s: float) -> None:
        until = time.monotonic() + duration
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=50)
        async with httpx.AsyncClient(timeout=180, limits=limits) as client:
            tasks = [self.file_worker(client, until) for _ in range(file_workers)]
            tasks += [self.stress_worker(client, until)]
            tasks += [self.ws_worker(until) for _ in range(ws_workers)]
            tasks += [self.burst_worker(client, until, burst_every_s)]
            await asyncio.gather(*tasks)


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "p99": None}
    arr = np.asarray(values)
    return {f"p{q}": round(float(np.percentile(arr, q)), 3) for q in (50, 95, 99)}


def summarise(res: Results, baseline: float, after: float, cold: float, load_window: tuple[float, float],
              rss_tolerance_mb: float) -> dict:
    by_kind: dict[str, dict] = {}
    for kind in ("file", "stress", "ws", "burst"):
        recs = [r for r in res.records if r.kind == kind]
        statuses: dict[str, int] = {}
        for r in recs:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        ok = [r.latency_s for r in recs if r.status in ("200", "completed")]
        by_kind[kind] = {"requests": len(recs), "statuses": statuses, "latency_ok_s": percentiles(ok)}
    server_errors = sum(1 for r in res.records if r.status[:1] == "5" and r.status != "503")
    unavailable = sum(1 for r in res.records if r.status == "503")
    lost = sum(1 for r in res.records if r.status.startswith("lost"))
    unfinished = sum(1 for r in res.records if r.kind in ("stress", "ws") and r.status not in
                     ("completed", "429", "503"))
    peak = max((m for t, m in res.rss), default=0.0)
    summary = {
        "duration_s": res.duration_s, "by_kind": by_kind,
        "all_ok_latency_s": percentiles([r.latency_s for r in res.records if r.kind in ("file", "burst")
                                         and r.status == "200"]),
        "server_errors_5xx": server_errors, "unavailable_503": unavailable, "lost": lost,
        "unfinished_stress_or_ws": unfinished, "missing_retry_after": res.missing_retry_after,
        "rss_mb": {"cold": round(cold, 1), "warm_baseline": round(baseline, 1), "peak": round(peak, 1),
                   "after_idle": round(after, 1), "tolerance": rss_tolerance_mb},
        "load_window_s": load_window,
    }
    failures = []
    if server_errors:
        failures.append(f"{server_errors} 5xx answers")
    if unavailable and not all(r.kind == "burst" for r in res.records if r.status == "503"):
        failures.append("503 outside an overload burst")
    if lost:
        failures.append(f"{lost} requests lost")
    if unfinished:
        failures.append(f"{unfinished} stress jobs or websocket utterances did not finish")
    if res.missing_retry_after:
        failures.append(f"{res.missing_retry_after} 429/503 without Retry-After")
    if after > baseline + rss_tolerance_mb:
        failures.append(f"RSS after idle {after:.0f} MiB > baseline {baseline:.0f} + {rss_tolerance_mb:.0f} MiB")
    if not by_kind["burst"]["statuses"].get("429") and not by_kind["burst"]["statuses"].get("503"):
        failures.append("the overload bursts never reached capacity (no 429/503)")
    summary["failures"] = failures + res.problems
    return summary


def plot(res: Results, summary: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(10, 7), sharex=True)
    t, mb = zip(*res.rss) if res.rss else ((), ())
    ax1.plot(t, mb, color="tab:blue", lw=1.2, label="server RSS")
    a, b = summary["load_window_s"]
    for ax in (ax1, ax2):
        ax.axvspan(a, b, color="tab:orange", alpha=0.08, label="load" if ax is ax1 else None)
    ax1.axhline(summary["rss_mb"]["warm_baseline"], color="grey", ls="--", lw=1, label="warm baseline")
    ax1.set_ylabel("RSS (MiB)")
    ax1.legend(loc="lower right")
    ax1.set_title("Mixed loopback load: RSS and latency over time")
    colours = {"file": "tab:green", "burst": "tab:purple", "stress": "tab:red", "ws": "tab:cyan"}
    for kind, colour in colours.items():
        ok = [(r.started + a, r.latency_s) for r in res.records if r.kind == kind and r.status in ("200", "completed")]
        if ok:
            x, y = zip(*ok)
            ax2.scatter(x, y, s=6, color=colour, label=f"{kind} ok")
    limited = [(r.started + a, r.latency_s) for r in res.records if r.status in ("429", "503")]
    if limited:
        x, y = zip(*limited)
        ax2.scatter(x, y, s=6, marker="x", color="black", label="429/503 (Retry-After)")
    ax2.set_yscale("log")
    ax2.set_ylabel("latency (s)")
    ax2.set_xlabel("time since server ready (s)")
    ax2.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--duration", type=float, default=180.0, help="seconds of load")
    p.add_argument("--idle", type=float, default=30.0, help="seconds of idle sampling before and after the load")
    p.add_argument("--warmup", type=float, default=20.0, help="seconds of the same mix before the baseline")
    p.add_argument("--malloc-arena-max", default="2",
                   help="MALLOC_ARENA_MAX for the server ('' = glibc default); see docs/reliability.md")
    p.add_argument("--model", default="whisper-tiny.en")
    p.add_argument("--mmap-threshold", default="131072",
                   help="MALLOC_MMAP_THRESHOLD_ for the server ('' = glibc default): big buffers are mmapped "
                        "and go back to the OS when freed")
    p.add_argument("--file-workers", type=int, default=3)
    p.add_argument("--ws-workers", type=int, default=2)
    p.add_argument("--burst-every", type=float, default=30.0, help="seconds between overload bursts")
    p.add_argument("--max-queue", type=int, default=8, help="server max_queue (bursts send 3x this)")
    p.add_argument("--rss-tolerance-mb", type=float, default=64.0)
    p.add_argument("--out", default="docs/reliability_load", help="path prefix for .json and .png")
    args = p.parse_args(argv)

    clips = [path.read_bytes() for path in sorted(LIBRIVOX.glob("*.wav"))]
    pcm = []
    for path in sorted(LIBRIVOX.glob("*.wav")):
        x, sr = sf.read(path, dtype="float32")
        pcm.append((np.clip(soxr.resample(x, sr, RT_RATE), -1, 1) * 32767).astype("<i2").tobytes())
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="megaasr-load-") as home:
        env = {"MEGAASR_MAX_QUEUE": str(args.max_queue), "MEGAASR_THREADS": "0", "MEGAASR_STRESS_MAX_JOBS": "1",
               "MEGAASR_STRESS_RETENTION_S": "60", "MEGAASR_STRESS_MAX_STORED_JOBS": "5"}
        if args.malloc_arena_max:
            env["MALLOC_ARENA_MAX"] = args.malloc_arena_max
        if args.mmap_threshold:
            env["MALLOC_MMAP_THRESHOLD_"] = args.mmap_threshold
        proc = start_server(args.model, Path(home), port, env, Path(home) / "server.log")
        try:
            wait_ready(url, proc)
            t0 = time.monotonic()
            res = Results(duration_s=args.duration)
            sampler = RssSampler(proc.pid, t0, res.rss)
            sampler.start()
            cold = rss_now(proc.pid)
            load = Load(url, clips, pcm, res, t0, args.max_queue)
            # Warm-up: the same mix (one burst included) for --warmup s, so the baseline holds what the
            # first batches of each shape allocate once (torch and allocator caches), then idle.
            asyncio.run(Load(url, clips, pcm, Results(0), t0, args.max_queue).run(
                args.warmup, args.file_workers, args.ws_workers, 2 * args.warmup))
            time.sleep(args.idle)
            baseline = float(np.median([m for _, m in res.rss[-10:]]))
            start = time.monotonic() - t0
            asyncio.run(load.run(args.duration, args.file_workers, args.ws_workers, args.burst_every))
            end = time.monotonic() - t0
            for r in res.records:  # plot and report relative to the load start
                r.started -= start
            time.sleep(args.idle)
            sampler.stop.set()
            sampler.join()
            after = float(np.median([m for _, m in res.rss[-10:]]))
            if proc.poll() is not None:
                res.problems.append(f"server exited with {proc.returncode}")
            log_text = (Path(home) / "server.log").read_text(errors="replace")
            tracebacks = log_text.count("Traceback (most recent call last)")
            if tracebacks:
                res.problems.append(f"{tracebacks} tracebacks in the server log")
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
    # Plot time axis: seconds since the server was ready; records shifted back by the load start.
    summary = summarise(res, baseline, after, cold, (round(start, 1), round(end, 1)), args.rss_tolerance_mb)
    summary["server_tracebacks"] = tracebacks
    summary["settings"] = {"model": args.model, "max_queue": args.max_queue, "file_workers": args.file_workers,
                           "ws_workers": args.ws_workers, "burst_every_s": args.burst_every,
                           "warmup_s": args.warmup, "malloc_arena_max": args.malloc_arena_max or "default",
                           "malloc_mmap_threshold": args.mmap_threshold or "default",
                           "cpu_count": os.cpu_count()}
    out.with_suffix(".json").write_text(json.dumps({"summary": summary,
                                                    "records": [asdict(r) for r in res.records],
                                                    "rss": res.rss}, indent=1) + "\n")
    plot(res, summary, out.with_suffix(".png"))
    print(json.dumps(summary, indent=1))
    if summary["failures"]:
        print("FAILED: " + "; ".join(summary["failures"]), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
