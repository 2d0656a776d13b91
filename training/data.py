"""Training and validation manifests: clean speech → simulated scenarios → base-model WER.

Each row of a manifest (JSONL) is one clip on disk with its transcript, its speaker, the
scenario and severity that made it (``"clean"`` for the untouched copy), and the base model's
hypothesis and WER on it. The WER-graded subsets (< 30 / 50 / 70 %) and the learnability filter
(drop > 70 %) of the paper are then just filters over ``base_wer``.

Splits are speaker- and sentence-disjoint: validation uses its own TTS voices and the LibriVox
reader, and only sentences whose every sentence hashes to "val"; training only sentences that all
hash to "train". The evaluation prompts are refused by :func:`training.sources.check_not_reserved`.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from simulation import resolve_scenarios, simulate
from simulation.scenarios import get_scenario
from training.config import DataConfig
from training.sources import (
    CleanUtterance,
    ReservedGuard,
    asterisk_utterances,
    check_not_reserved,
    librivox_utterances,
    read_asterisk_transcripts,
    read_audio,
    sentence_keys,
    speech_end_seconds,
    synthesise,
    telephone_band,
    text_split,
    tts_utterances,
    write_audio,
)
from training.text_corpus import extra_text_utterances

log = logging.getLogger(__name__)

NOISE_ONLY, SILENT = "noise_only", "silent"
IMPORTANT_DOUBLES = ("far_field_crosstalk", "far_field_noise", "far_field_stutter", "noise_stutter")
CLEAN = "clean"


def plan_clean(cfg: DataConfig, guard: ReservedGuard) -> dict[str, list[CleanUtterance]]:
    """Which clean utterances go to which split (nothing synthesised yet)."""
    transcripts = read_asterisk_transcripts(cfg.asterisk_transcripts)
    allowed = {n: t for n, t in transcripts.items()
               if guard.violation(CleanUtterance(n, t, "", "tts", None, n)) is None
               and len(t.split()) <= cfg.max_words}
    by_side: dict[str, dict[str, str]] = {"train": {}, "val": {}}
    for name, text in allowed.items():
        side = text_split(text, cfg.val_sentence_fraction, cfg.seed)
        if side is not None:
            by_side[side][name] = text
    plan = {
        "train": tts_utterances(by_side["train"], cfg.tts_voices_train),
        "val": tts_utterances(by_side["val"], cfg.tts_voices_val) + librivox_utterances(cfg.librivox_dir),
    }
    if cfg.use_asterisk_speaker:
        plan["train"] += asterisk_utterances(cfg.asterisk_dir, by_side["train"], set(by_side["train"]))
    if cfg.extra_texts:
        plan["train"] += extra_text_utterances(cfg.extra_texts, cfg.tts_voices_train, cfg.extra_text_max_sentences,
                                               cfg.max_words, cfg.val_sentence_fraction, cfg.seed, guard)
    if cfg.max_utterances is not None:
        rng = np.random.default_rng(cfg.seed)
        for split, utts in plan.items():
            if len(utts) > cfg.max_utterances:
                keep = sorted(rng.choice(len(utts), cfg.max_utterances, replace=False))
                plan[split] = [utts[i] for i in keep]
    check_not_reserved(plan["train"] + plan["val"], guard)
    _check_disjoint(plan["train"], plan["val"])
    return plan


def _check_disjoint(train: list[CleanUtterance], val: list[CleanUtterance]) -> None:
    speakers = {u.speaker for u in train} & {u.speaker for u in val}
    sentences = set().union(*(sentence_keys(u.text) for u in train)) & set().union(
        *(sentence_keys(u.text) for u in val)) if train and val else set()
    if speakers or sentences:
        raise ValueError(f"train/val overlap: speakers {sorted(speakers)[:3]}, sentences {sorted(sentences)[:3]}")


def materialise(utt: CleanUtterance, out_dir: Path) -> tuple[CleanUtterance, np.ndarray]:
    """Synthesise a TTS utterance (cached on disk) and read any utterance as 16 kHz audio."""
    if utt.audio_path is None:
        voice = utt.speaker.removeprefix("flite-")
        path = out_dir / "clean" / f"{utt.id.replace('/', '_')}.wav"
        if not path.exists():
            synthesise(utt.text, voice, path)
        utt = CleanUtterance(utt.id, utt.text, utt.speaker, utt.source, str(path), utt.prompt_name)
    return utt, read_audio(utt.audio_path)


def draw_scenario(rng: np.random.Generator, cfg: DataConfig, names: list[str]) -> str:
    """The paper's scheduler (60 % singles, 24 % four important doubles, 16 % the other 43), or
    ``cfg.scenario_weighting == "uniform"``: each scenario equally likely."""
    if cfg.scenario_weighting == "uniform":
        return names[int(rng.integers(len(names)))]
    singles = [n for n in names if len(get_scenario(n).effects) == 1]
    important = [n for n in names if n in IMPORTANT_DOUBLES]
    rest = [n for n in names if n not in singles and n not in important]
    u = rng.random()
    pool = singles if u < cfg.single_ratio else important if u < cfg.single_ratio + cfg.important_ratio else rest
    pool = pool or names
    return pool[int(rng.integers(len(pool)))]


@dataclass(frozen=True)
class RenderJob:
    """One clean utterance and everything random about its clips, drawn up front.

    Why: every draw (telephone band or not, each copy's scenario and seed) is made in one sequential
    pass over the plan, so rendering the audio (synthesis, simulation, writing) can run in any number
    of worker processes and still give bit-identical manifests (``[data].workers``).
    """

    utt: CleanUtterance
    split: str
    narrowband: bool
    draws: tuple[tuple[str, int], ...]  # (scenario, seed) of each simulated copy
    first_copy: int = 0  # number of the first copy (its clip id's last field)


def plan_jobs(plan: dict[str, list[CleanUtterance]], cfg: DataConfig, names: list[str]) -> list[RenderJob]:
    """The random draws of every clip, in the order the sequential builder has always made them."""
    rng = np.random.default_rng(cfg.seed if cfg.first_copy == 0 else [cfg.seed, cfg.first_copy])
    band_rng = np.random.default_rng([cfg.seed, 8000])
    jobs = []
    for split, utts in plan.items():
        copies = cfg.train_copies if split == "train" else cfg.val_copies
        for utt in utts:
            band = split == "train" and bool(band_rng.random() < cfg.narrowband_fraction)
            draws = []
            for _ in range(copies):
                scenario = draw_scenario(rng, cfg, names)
                draws.append((scenario, int(rng.integers(2**31))))
            jobs.append(RenderJob(utt, split, band, tuple(draws), cfg.first_copy))
    return jobs


def clip_rows(utt: CleanUtterance, audio: np.ndarray, split: str, draws: tuple[tuple[str, int], ...],
              severity_mapping: str, out_dir: Path, first_copy: int = 0) -> list[dict[str, Any]]:
    """The clean row plus one simulated row per (scenario, seed) draw of one utterance (audio written to disk)."""
    base = {"text": utt.text, "speaker": utt.speaker, "source": utt.source, "split": split,
            "clean_id": utt.id, "speech_end": round(speech_end_seconds(audio), 2),
            "duration": round(len(audio) / 16000, 3)}
    rows = [{**base, "id": utt.id, "audio": utt.audio_path, "scenario": CLEAN, "effects": [],
             "n_effects": 0, "severity": 0.0, "seed": None}]
    for copy, (scenario, seed) in enumerate(draws, start=first_copy):
        result = simulate(audio, 16000, scenario, None, seed, severity_mapping=severity_mapping)
        clip_id = f"{utt.id}__{scenario}__{copy}"
        path = out_dir / "sim" / split / f"{clip_id.replace('/', '_')}.wav"
        write_audio(path, result.audio)
        rows.append({**base, "id": clip_id, "audio": str(path), "scenario": scenario,
                     "effects": list(result.effects), "n_effects": len(result.effects),
                     "severity": result.severity, "seed": seed})
    return rows


def render(job: RenderJob, severity_mapping: str, out_dir: Path) -> list[dict[str, Any]]:
    """Synthesise (or read) one utterance, band-limit it if drawn, simulate its copies: its manifest rows."""
    utt, audio = materialise(job.utt, out_dir)
    if job.narrowband:
        utt, audio = narrowband(utt, audio, out_dir)
    return clip_rows(utt, audio, job.split, job.draws, severity_mapping, out_dir, job.first_copy)


def render_all(jobs: list[RenderJob], severity_mapping: str, out_dir: Path, workers: int = 1
               ) -> dict[str, list[dict[str, Any]]]:
    """Every job's rows, by split, in plan order; ``workers`` > 1 renders in that many processes."""
    from concurrent.futures import ProcessPoolExecutor
    from functools import partial

    work = partial(render, severity_mapping=severity_mapping, out_dir=out_dir)
    progress = {"desc": "synthesise + simulate", "unit": "utt", "total": len(jobs)}
    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            results = list(tqdm(pool.map(work, jobs, chunksize=8), **progress))
    else:
        results = [work(job) for job in tqdm(jobs, **progress)]
    rows: dict[str, list[dict[str, Any]]] = {}
    for job, job_rows in zip(jobs, results):
        rows.setdefault(job.split, []).extend(job_rows)
    return rows


def narrowband(utt: CleanUtterance, audio: np.ndarray, out_dir: Path) -> tuple[CleanUtterance, np.ndarray]:
    """The same utterance through an 8 kHz telephone band (a new clean recording on disk)."""
    audio = telephone_band(audio)
    path = out_dir / "clean8k" / f"{utt.id.replace('/', '_')}.wav"
    write_audio(path, audio)
    return CleanUtterance(f"{utt.id}@8k", utt.text, utt.speaker, utt.source, str(path), utt.prompt_name), audio


def nonspeech_rows(n: int, split: str, rng: np.random.Generator, out_dir: Path,
                   sonic_pi_dir: str | Path | None, first_index: int = 0) -> list[dict[str, Any]]:
    """``n`` clips with no speech and an empty target: real noise (sonic-pi CC0), coloured noise, silence.

    Half are real recorded noise where the sonic-pi samples are installed, a third of the rest
    coloured noise, the remainder digital silence or a quiet room tone; levels -50..-12 dBFS.
    """
    from simulation.noise_bank import COLOURS, NoiseBank, coloured_noise

    bank = NoiseBank(sonic_pi_dir) if sonic_pi_dir and Path(sonic_pi_dir).is_dir() else None
    rows = []
    for i in range(n):
        length = int(rng.uniform(1.5, 8.0) * 16000)
        kind = rng.random()
        if kind < 0.5 and bank is not None:
            noise, info = bank.sample(length, 16000, rng)
            scenario, source = NOISE_ONLY, f"sonic_pi:{info['source']}"
        elif kind < 0.8:
            colour = COLOURS[int(rng.integers(len(COLOURS)))]
            noise, scenario, source = coloured_noise(colour, length, rng), NOISE_ONLY, f"coloured:{colour}"
        else:
            noise, scenario, source = coloured_noise("pink", length, rng), SILENT, "silence"
        if scenario == SILENT:
            level = 0.0 if rng.random() < 0.5 else 10 ** (rng.uniform(-70.0, -50.0) / 20)
        else:
            level = 10 ** (rng.uniform(-50.0, -12.0) / 20)
        rms = float(np.sqrt(np.mean(noise ** 2))) or 1.0
        audio = (noise / rms * level).clip(-1, 1).astype(np.float32)
        clip_id = f"{scenario}-{split}-{first_index + i}"
        path = out_dir / "sim" / split / f"{clip_id}.wav"
        write_audio(path, audio)
        rows.append({"id": clip_id, "audio": str(path), "text": "", "speaker": "none", "source": source,
                     "split": split, "clean_id": None, "speech_end": 0.0, "duration": round(length / 16000, 3),
                     "scenario": scenario, "effects": [], "n_effects": 0, "severity": 0.0, "seed": None,
                     "base_hyp": "", "base_wer": 0.0})
    return rows


def record_base_wer(rows: list[dict[str, Any]], transcribe, batch_size: int = 32) -> None:
    """Add ``base_hyp`` and ``base_wer`` to every row (the served decode of the base model)."""
    from service.scoring import score

    for start in tqdm(range(0, len(rows), batch_size), desc="base WER", unit="batch"):
        chunk = rows[start:start + batch_size]
        hyps = transcribe([read_audio(r["audio"]) for r in chunk])
        for row, hyp in zip(chunk, hyps):
            row["base_hyp"] = hyp
            row["base_wer"] = round(score(row["text"], hyp).wer, 4)


def clip_effects(row: dict[str, Any]) -> tuple[str, ...]:
    """A degraded clip's atomic effects: its ``effects`` field, else parsed from its scenario name.

    Training manifests carry the field; eval ``clips.jsonl`` rows and older manifests name only the scenario.
    """
    if row.get("effects") is not None:
        return tuple(row["effects"])
    return get_scenario(row["scenario"]).effects


def degraded_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The degraded speech clips of a split: the rows a build grades (not clean copies, not non-speech)."""
    return [r for r in rows if r["scenario"] not in (CLEAN, NOISE_ONLY, SILENT)]


def wer_subset(rows: list[dict[str, Any]], max_wer: float) -> list[dict[str, Any]]:
    """Rows whose base WER is below ``max_wer`` (a WER-graded subset; unscored clean rows pass)."""
    return [r for r in rows if r.get("base_wer", 0.0) < max_wer]


def learnable(rows: list[dict[str, Any]], max_wer: float = 0.7) -> list[dict[str, Any]]:
    """The learnability filter: drop clips the base model gets more than ``max_wer`` wrong."""
    return [r for r in rows if r.get("base_wer", 0.0) <= max_wer]


def write_manifest(rows: list[dict[str, Any]], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as handle:
        handle.writelines(json.dumps(row) + "\n" for row in rows)
    return path


def read_manifest(path: str | Path) -> list[dict[str, Any]]:
    with open(path) as handle:
        return [json.loads(line) for line in handle if line.strip()]


#: Settings that decide which utterances go to which split: merged builds must agree on them.
SPLIT_SETTINGS = ("reserved_prompts", "tts_voices_train", "tts_voices_val", "use_asterisk_speaker",
                  "val_sentence_fraction", "max_words", "seed", "max_utterances", "narrowband_fraction",
                  "extra_texts", "extra_text_max_sentences")


#: What an incremental build (``merge_new_only``) may add to the builds it merges: training utterances only.
ADDITIVE_SETTINGS = ("extra_texts", "extra_text_max_sentences")


def check_merge_sources(cfg: DataConfig) -> None:
    """Refuse ``merge_from`` builds whose recorded split settings differ (checked before any rendering)."""
    if cfg.merge_new_only and not cfg.merge_from:
        raise ValueError("merge_new_only needs merge_from: the builds whose utterances are not rendered again")
    checked = [k for k in SPLIT_SETTINGS if not (cfg.merge_new_only and k in ADDITIVE_SETTINGS)]
    for folder in cfg.merge_from:
        theirs = json.loads((Path(folder) / "summary.json").read_text())["config"]
        differ = [k for k in checked if theirs.get(k) != getattr(cfg, k)]
        if differ:
            raise ValueError(f"merge_from {folder}: built with other split settings ({', '.join(differ)})")


def merged_rows(cfg: DataConfig, split: str, own: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``cfg.merge_from``'s rows of ``split``, then ``own``; a row id seen before is kept once (the clean rows)."""
    check_merge_sources(cfg)
    rows: list[dict[str, Any]] = []
    for folder in cfg.merge_from:
        rows += read_manifest(Path(folder) / f"{split}.jsonl")
    seen: set[str] = set()
    out = []
    for row in rows + own:
        if row["id"] not in seen:
            seen.add(row["id"])
            out.append(row)
    return out


def known_utterances(folders: list[str]) -> set[str]:
    """Clean-utterance ids (telephone-band suffix removed) that the data ``folders`` already hold, any split."""
    known: set[str] = set()
    for folder in folders:
        for split in ("train", "val"):
            path = Path(folder) / f"{split}.jsonl"
            if path.exists():
                known |= {r["clean_id"].removesuffix("@8k") for r in read_manifest(path) if r.get("clean_id")}
    return known


def count_nonspeech(folders: list[str], split: str) -> int:
    """Noise-only and silent clips in ``split`` of the data ``folders`` (where new ones start numbering)."""
    return sum(r["scenario"] in (NOISE_ONLY, SILENT) for folder in folders
               for r in read_manifest(Path(folder) / f"{split}.jsonl"))


def build_datasets(cfg: DataConfig, base_model: str, threads: int = 2) -> dict[str, Path]:
    """Synthesise, simulate, score with the base model and write every manifest under ``cfg.out_dir``."""
    from training.whisper import Decoder, resolve_model

    out_dir = Path(cfg.out_dir)
    check_merge_sources(cfg)
    guard = ReservedGuard.from_files(cfg.reserved_prompts, cfg.asterisk_transcripts)
    plan = plan_clean(cfg, guard)
    names = resolve_scenarios("all")
    jobs = plan_jobs(plan, cfg, names)
    if cfg.merge_new_only:
        known = known_utterances(cfg.merge_from)
        jobs = [job for job in jobs if job.utt.id not in known]
        log.info("incremental build: %d new utterances to render, %d already in %s",
                 len(jobs), len(known), ", ".join(cfg.merge_from))
    rows = {split: [] for split in plan} | render_all(jobs, cfg.severity_mapping, out_dir, cfg.workers)
    decoder = Decoder(resolve_model(base_model), threads=threads, device=cfg.device)
    for split in rows:
        # Clean copies need no WER (the curriculum grades degraded clips only): on a CPU the
        # encoder pass per clip (a full 30-s window) is the cost of this whole step.
        scored = [r for r in rows[split] if r["scenario"] != CLEAN]
        record_base_wer(scored, decoder)
    n_nonspeech = round(cfg.nonspeech_fraction * sum(r["scenario"] != CLEAN for r in rows["train"]))
    # An incremental build numbers its noise clips after the merged builds' and draws them from another stream,
    # so they neither collide with nor repeat the clips already there.
    first = count_nonspeech(cfg.merge_from, "train") if cfg.merge_new_only else 0
    rng = np.random.default_rng([cfg.seed, 0] if first == 0 else [cfg.seed, 0, first])
    rows["train"] += nonspeech_rows(n_nonspeech, "train", rng, out_dir, cfg.sonic_pi_dir, first_index=first)
    rows = {split: merged_rows(cfg, split, own) if cfg.merge_from else own for split, own in rows.items()}
    return write_build(rows, cfg, out_dir, base_model)


def write_build(rows: dict[str, list[dict[str, Any]]], cfg: DataConfig, out_dir: Path, base_model: str,
                extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """Write a build's manifests, its WER-graded subsets and ``summary.json`` (``base_model``: the grader)."""
    from service.scoring import corpus_score

    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {split: write_manifest(r, out_dir / f"{split}.jsonl") for split, r in rows.items()}
    degraded = degraded_rows(rows["train"])
    for grade in cfg.wer_grades:
        paths[f"train-wer{int(grade * 100)}"] = write_manifest(
            wer_subset(degraded, grade), out_dir / f"train-wer{int(grade * 100)}.jsonl")
    summary = {
        **(extra or {}),
        "base_model": base_model,
        "counts": {k: len(read_manifest(p)) for k, p in paths.items()},
        "speakers": {s: sorted({r["speaker"] for r in r_}) for s, r_ in rows.items()},
        "learnable_train": len(learnable(degraded, cfg.learnability_max_wer)),
        "nonspeech_train": sum(r["scenario"] in (NOISE_ONLY, SILENT) for r in rows["train"]),
        "narrowband_clean_train": sum(r["scenario"] == CLEAN and r["id"].endswith("@8k") for r in rows["train"]),
        "dropped_by_learnability": len(degraded) - len(learnable(degraded, cfg.learnability_max_wer)),
        "scenario_counts_train": dict(Counter(r["scenario"] for r in degraded)),
        "base_wer_degraded": {s: corpus_score((r["text"], r["base_hyp"]) for r in r_ if r["scenario"] != CLEAN).wer
                              for s, r_ in rows.items()},
        "config": cfg.model_dump(),
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    paths["summary"] = out_dir / "summary.json"
    return paths
