"""Dataset builder: a clean manifest in, corrupted FLAC files and a JSONL of how each was made out.

Design, for runs of millions of utterances:
- Every output row is a pure function of (config, manifest line, copy): its scenario, severity and
  simulation seed come from ``SeedSequence([seed, line, copy])``. So the dataset is the same on one
  core, on many, and on Ray, whatever order work finishes in.
- Work is cut into shards of consecutive rows. A shard is committed by atomically renaming its
  ``shards/shard-NNNNNN.jsonl`` into place after all its audio is written. Resuming after a crash or
  Ctrl-C skips committed shards and redoes the others (their audio is rewritten identically), so no
  row is redone twice or duplicated. ``manifest.jsonl`` is assembled from the shards, in order, at
  the end (atomically). ``plan.json`` pins the config: resuming with a different one is refused.
- Scenario shares follow the paper (§1.6): 60 % singles, 24 % the four important doubles, 16 % the
  other 43, uniform within a group; configurable. Restricting the scenario pool keeps the shares of
  the groups that remain, renormalised.
- Bad manifest lines are reported with their line numbers before any work starts; ``on_error="skip"``
  drops them (listed in ``errors.jsonl``), ``"fail"`` stops before writing anything. Audio that
  passes the check but fails to decode later is skipped or fails the run the same way; committed
  shards are never touched.
- Every file is written to a temporary sibling, fsynced and renamed into place (audio included), so
  a crash or a full disk never leaves a half-written file under its final name. A full disk stops
  the run with :class:`DiskFull`; committed shards stay, and the same command resumes.
- Parallelism: ``workers`` local processes (``concurrent.futures``), or Ray tasks on a cluster
  (``ray_address``; "local" starts a local Ray). With Ray, the manifest's audio and ``out_dir`` must be
  on storage every node can read and write (a shared filesystem).
"""

from __future__ import annotations

import errno
import hashlib
import io
import json
import os
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr

from simulation.manifests import ManifestEntry, ManifestError, ManifestProblem, read_manifest
from simulation.scenarios import IMPORTANT_DOUBLES, all_scenarios, resolve_scenarios
from simulation.severity import MAPPINGS, check_severity, sample_severity
from simulation.simulate import REVERB_ENGINES, simulate

QUESTION = "Please transcribe the audio content into text."
PLAN_VERSION = 1


@dataclass
class BuildConfig:
    """Everything that decides the dataset's content (pinned in plan.json)."""

    seed: int = 42
    scenarios: Sequence[str] | str = "all"
    single_ratio: float = 0.6
    important_ratio: float = 0.24
    important: Sequence[str] = IMPORTANT_DOUBLES
    copies: int = 1
    severity: float | None = None
    severity_mapping: str = "linear"
    noise_bank: str | None = None
    reverb_engine: str = "freeverb"
    sample_rate: int | None = None
    language: str = "en"
    shard_size: int = 32

    def validate(self) -> None:
        if not (0 <= self.single_ratio <= 1 and 0 <= self.important_ratio <= 1
                and self.single_ratio + self.important_ratio <= 1):
            raise ValueError("single_ratio and important_ratio must be in [0, 1] and sum to at most 1")
        if self.copies < 1 or self.shard_size < 1:
            raise ValueError("copies and shard_size must be >= 1")
        if self.severity is not None:
            check_severity(self.severity)
        if self.severity_mapping not in MAPPINGS:
            raise ValueError(f"unknown severity mapping {self.severity_mapping!r}")
        if self.reverb_engine not in REVERB_ENGINES:
            raise ValueError(f"reverb_engine must be one of {REVERB_ENGINES}")
        if self.sample_rate is not None and self.sample_rate < 1000:
            raise ValueError("sample_rate must be >= 1000 Hz")
        self.scenarios = resolve_scenarios(self.scenarios)
        self.important = resolve_scenarios(list(self.important))


@dataclass
class BuildReport:
    """What a run did."""

    out_dir: str
    rows: int = 0
    shards_total: int = 0
    shards_done_before: int = 0
    shards_done_now: int = 0
    skipped_lines: list[str] = field(default_factory=list)
    failed_rows: list[str] = field(default_factory=list)
    complete: bool = False


class RowError(RuntimeError):
    """A row failed while processing (e.g. audio that cannot be decoded)."""


class DiskFull(OSError):
    """The disk filled up while writing: never a skipped row, always a stop (resumable)."""


def write_atomic(path: Path, data: bytes | Iterable[bytes]) -> None:
    """Write ``data`` (bytes, or chunks streamed) to ``path`` via a temporary sibling, fsync, rename.

    A full disk raises :class:`DiskFull` and leaves neither the temporary file nor a partial ``path``.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.writelines([data] if isinstance(data, bytes) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFull(errno.ENOSPC, f"disk full while writing {path}; the committed shards are kept: "
                           "free some space and run the same command again to resume") from exc
        raise


# --------------------------------------------------------------------------- per-row decisions
def scenario_groups(config: BuildConfig) -> list[tuple[float, list[str]]]:
    """(share, names) for singles, important doubles, and the rest, restricted to the pool."""
    pool = list(config.scenarios)
    scen = all_scenarios()
    singles = [n for n in pool if scen[n].group == "singles"]
    important = [n for n in pool if n in config.important and n not in singles]
    rest = [n for n in pool if n not in singles and n not in important]
    groups = [(config.single_ratio, singles), (config.important_ratio, important),
              (1.0 - config.single_ratio - config.important_ratio, rest)]
    groups = [(share, names) for share, names in groups if names and share > 0]
    if not groups:
        raise ValueError("no scenario can be drawn: every group with a non-zero share is empty")
    total = sum(share for share, _ in groups)
    return [(share / total, names) for share, names in groups]


def plan_row(config: BuildConfig, line: int, copy: int, groups: list[tuple[float, list[str]]]) -> dict[str, Any]:
    """Scenario, severity and simulation seed of one output row: a pure function of its inputs."""
    rng = np.random.default_rng(np.random.SeedSequence([config.seed, line, copy]))
    u = rng.random()
    acc = 0.0
    names = groups[-1][1]
    for share, group in groups:
        acc += share
        if u < acc:
            names = group
            break
    scenario = names[int(rng.integers(len(names)))]
    if config.severity is None:
        severity, mapping = sample_severity(rng, config.severity_mapping), config.severity_mapping
    else:
        severity, mapping = float(config.severity), "fixed"
    return {"scenario": scenario, "severity": round(severity, 6), "mapping": mapping,
            "sim_seed": int(rng.integers(2**31 - 1))}


def _load_audio(path: str, sample_rate: int | None) -> tuple[np.ndarray, int]:
    data, sr = sf.read(path, dtype="float32", always_2d=True)
    audio = data.mean(axis=1)
    if sample_rate and sr != sample_rate:
        audio, sr = soxr.resample(audio, sr, sample_rate).astype(np.float32), sample_rate
    return np.clip(audio, -1.0, 1.0), sr


def _subset(config: BuildConfig, effects: Sequence[str]) -> str:
    from simulation.effects import PUBLIC_NAMES

    kind = PUBLIC_NAMES[effects[0]] if len(effects) == 1 else "mixed"
    return f"sim-{config.language}-{kind}"


# --------------------------------------------------------------------------- shards
def _shard_path(out_dir: Path, shard: int) -> Path:
    return out_dir / "shards" / f"shard-{shard:06d}.jsonl"


def process_shard(
    out_dir: str, shard: int, tasks: list[tuple[int, dict[str, Any], int]], config: dict[str, Any],
    on_error: str,
) -> tuple[int, int, list[str]]:
    """Simulate one shard's rows, write their audio, then commit the shard file atomically.

    ``tasks`` are (row index, manifest entry as dict, copy). Returns (shard, rows, failures).
    Module-level and argument-only so it runs the same in a process pool and as a Ray task.
    """
    cfg = BuildConfig(**config)
    out = Path(out_dir)
    groups = scenario_groups(cfg)
    noise = _noise_source(cfg.noise_bank)
    rows, failures = [], []
    for index, entry, copy in tasks:
        plan = plan_row(cfg, entry["line"], copy, groups)
        try:
            audio, sr = _load_audio(entry["path"], cfg.sample_rate)
            result = simulate(audio, sr, plan["scenario"], plan["severity"], plan["sim_seed"], noise,
                              reverb_engine=cfg.reverb_engine)
        except Exception as exc:
            message = f"line {entry['line']}: cannot process {entry['path']} ({type(exc).__name__}: {exc})"
            if on_error == "fail":
                raise RowError(message) from exc
            failures.append(message)
            continue
        base = Path(entry["path"]).stem
        rel = (Path("audio") / plan["scenario"] /
               f"{index:08d}_{base}_{plan['scenario']}_{plan['mapping']}_{copy}_m{plan['severity']:.3f}.flac")
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        flac = io.BytesIO()
        sf.write(flac, result.audio, sr, format="FLAC", subtype="PCM_24")
        write_atomic(out / rel, flac.getvalue())
        record = result.record()
        rows.append({
            "index": index,
            "audio_path": str(rel),
            "question": QUESTION,
            "answer": entry["text"],
            "subset": _subset(cfg, result.effects),
            "combination": result.scenario,
            "source_scenes": list(result.effects),
            "aug_params_m": record["aug_params_m"],
            "global_severity": result.severity,
            "speed_factor": None,
            "severity_mapping": plan["mapping"],
            "seed": plan["sim_seed"],
            "source_path": entry["path"],
            "source_line": entry["line"],
            "copy": copy,
            "sample_rate": sr,
            "duration_s": round(len(result.audio) / sr, 3),
            "params": record["steps"],
            "achieved_snr_db": result.achieved_snr_db,
            "output_lufs": result.output_lufs,
            "peak_gain_db": result.peak_gain_db,
            **({"source_extra": entry["extra"]} if entry["extra"] else {}),
        })
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    lines += [json.dumps({"error": message}) + "\n" for message in failures]
    write_atomic(_shard_path(out, shard), "".join(lines).encode("utf-8"))
    return shard, len(rows), failures


_NOISE_CACHE: dict[str | None, Any] = {}


def _noise_source(folder: str | None) -> Any:
    from simulation.noise_bank import as_noise_source

    if folder not in _NOISE_CACHE:
        _NOISE_CACHE[folder] = as_noise_source(folder)
    return _NOISE_CACHE[folder]


# --------------------------------------------------------------------------- the run
def _fingerprint(manifest: Path) -> str:
    h = hashlib.sha256()
    with open(manifest, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _check_plan(out: Path, plan: dict[str, Any]) -> None:
    path = out / "plan.json"
    if path.exists():
        previous = json.loads(path.read_text())
        if previous != plan:
            flat_new = {**plan, **plan["config"]}
            flat_old = {**previous, **previous.get("config", {})}
            changed = sorted(k for k in set(flat_new) | set(flat_old)
                             if k != "config" and flat_new.get(k) != flat_old.get(k))
            raise ValueError(f"{out} holds a dataset built with a different configuration "
                             f"(changed: {', '.join(changed)}); use a new --out folder or the same options")
    else:
        out.mkdir(parents=True, exist_ok=True)
        write_atomic(path, (json.dumps(plan, indent=1) + "\n").encode())


def _shards(entries: list[ManifestEntry], copies: int, size: int) -> list[list[tuple[int, dict[str, Any], int]]]:
    tasks = [(e, c) for e in entries for c in range(copies)]
    rows = [(i, {"line": e.line, "path": e.path, "text": e.text, "extra": e.extra}, c)
            for i, (e, c) in enumerate(tasks)]
    return [rows[k: k + size] for k in range(0, len(rows), size)]


def _assemble(out: Path, n_shards: int) -> tuple[int, list[str]]:
    counts, failures = [0], []

    def lines() -> Iterator[bytes]:  # streamed: the manifest of a million rows never sits in memory
        for shard in range(n_shards):
            for raw in _shard_path(out, shard).read_text(encoding="utf-8").splitlines():
                if raw.startswith('{"error"'):
                    failures.append(json.loads(raw)["error"])
                    continue
                counts[0] += 1
                yield (raw + "\n").encode("utf-8")

    write_atomic(out / "manifest.jsonl", lines())
    return counts[0], failures


def _write_problems(out: Path, problems: list[ManifestProblem], failures: list[str]) -> None:
    lines = [json.dumps({"line": p.line, "error": p.reason}) for p in problems]
    lines += [json.dumps({"error": f}) for f in failures]
    write_atomic(out / "errors.jsonl", "".join(line + "\n" for line in lines).encode("utf-8"))


def build_dataset(
    manifest: str | Path,
    out_dir: str | Path,
    config: BuildConfig | None = None,
    workers: int = 1,
    on_error: str = "skip",
    ray_address: str | None = None,
    progress: bool = True,
    log: Callable[[str], None] = lambda msg: print(msg, file=sys.stderr),
) -> BuildReport:
    """Build (or resume) a simulated dataset from ``manifest`` into ``out_dir``."""
    if on_error not in ("skip", "fail"):
        raise ValueError(f"on_error must be 'skip' or 'fail', got {on_error!r}")
    if workers < 1:
        raise ValueError("workers must be >= 1")
    config = config or BuildConfig()
    config.validate()
    manifest, out = Path(manifest), Path(out_dir)
    entries, problems = read_manifest(manifest)
    for problem in problems:
        log(f"{manifest}: {problem}")
    if problems and on_error == "fail":
        raise ManifestError(manifest, problems)
    if not entries:
        raise ValueError(f"{manifest} has no usable line")
    plan = {"version": PLAN_VERSION, "manifest_sha256": _fingerprint(manifest), "config": asdict(config)}
    _check_plan(out, plan)
    shards = _shards(entries, config.copies, config.shard_size)
    report = BuildReport(out_dir=str(out), shards_total=len(shards),
                         skipped_lines=[str(p) for p in problems])
    (out / "shards").mkdir(parents=True, exist_ok=True)
    pending = [k for k in range(len(shards)) if not _shard_path(out, k).exists()]
    report.shards_done_before = len(shards) - len(pending)
    if report.shards_done_before:
        log(f"resuming: {report.shards_done_before}/{len(shards)} shards already done")
    cfg = asdict(config)
    total_rows = sum(len(s) for s in shards)
    done_rows = total_rows - sum(len(shards[k]) for k in pending)
    from tqdm import tqdm

    bar = tqdm(total=total_rows, initial=done_rows, unit="utt", disable=not progress, smoothing=0.1,
               desc="simulate")
    try:
        runner = _run_ray if ray_address else _run_local
        for shard, _, failures in runner(out, shards, pending, cfg, on_error, workers, ray_address):
            bar.update(len(shards[shard]))
            report.shards_done_now += 1
            for message in failures:
                log(message)
    except KeyboardInterrupt:
        log(f"interrupted: {report.shards_done_before + report.shards_done_now}/{len(shards)} shards are "
            "committed; run the same command again to resume")
        raise
    finally:
        bar.close()
    report.rows, report.failed_rows = _assemble(out, len(shards))
    _write_problems(out, problems, report.failed_rows)
    report.complete = True
    return report


def _run_local(
    out: Path, shards: list, pending: list[int], cfg: dict, on_error: str, workers: int, _address: str | None
) -> Iterator[tuple[int, int, list[str]]]:
    if workers == 1:
        for k in pending:
            yield process_shard(str(out), k, shards[k], cfg, on_error)
        return
    import multiprocessing

    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures: set[Future] = set()
        queue = list(pending)
        try:
            while queue or futures:
                while queue and len(futures) < 2 * workers:
                    k = queue.pop(0)
                    futures.add(pool.submit(process_shard, str(out), k, shards[k], cfg, on_error))
                done, futures = wait(futures, return_when=FIRST_COMPLETED)
                for f in done:
                    yield f.result()
        except BaseException:
            for f in futures:
                f.cancel()
            raise


def _run_ray(
    out: Path, shards: list, pending: list[int], cfg: dict, on_error: str, workers: int, address: str | None
) -> Iterator[tuple[int, int, list[str]]]:
    """Ray tasks, one per shard, at most a few per CPU in flight (Ray schedules them on the cluster)."""
    try:
        import ray
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("--ray needs the 'ray' package: pip install 'ray>=2.9'") from exc
    started_here = False
    if not ray.is_initialized():
        if address in ("local", "auto-local"):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
        started_here = True
    try:
        remote = ray.remote(process_shard)
        capacity = max(2, 2 * int(ray.cluster_resources().get("CPU", workers)))
        queue = list(pending)
        inflight: list = []
        while queue or inflight:
            while queue and len(inflight) < capacity:
                k = queue.pop(0)
                inflight.append(remote.remote(str(out.resolve()), k, shards[k], cfg, on_error))
            done, inflight = ray.wait(inflight, num_returns=1)
            for ref in done:
                yield ray.get(ref)
    finally:
        if started_here:
            ray.shutdown()
