"""``megaasr eval``: base vs robust vs routed on held-out speech, per scenario and severity.

The evaluation set is built on the fly from the reserved Asterisk prompts (speaker and sentences
never trained on): every scenario corrupts ``clips_per_scenario`` prompts (rotating through the
prompts) at a severity drawn with the paper's linear mapping, plus the clean prompts, noise-only
clips and silent clips (reference ""). A manifest written by the data module can be given instead.

Reported: WER/CER micro-averaged after the Whisper English normaliser, by system, by scenario, by
number of effects and by severity band; hallucination rate (any word on noise-only/silent clips;
insertion-rate or repeated-n-gram flag on speech) and omission rate; the router's decisions.
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from service.engines.base import DEFAULT_TEMPERATURES
from service.scoring import corpus_score, hallucination_flag, omission_flag, score
from simulation import resolve_scenarios, simulate
from simulation.noise_bank import COLOURS, coloured_noise
from training.config import EvalConfig
from training.sources import (
    SAMPLE_RATE,
    asterisk_utterances,
    read_asterisk_transcripts,
    read_audio,
    read_reserved_names,
)

if TYPE_CHECKING:
    from service.models.bundle import Bundle

SYSTEMS = ("base", "robust", "routed")
NOISE_ONLY, SILENT, CLEAN = "noise_only", "silent", "clean"


def severity_band(m: float) -> str:
    return "low" if m < 1 / 3 else "mid" if m < 2 / 3 else "high"


def build_eval_clips(cfg: EvalConfig, scenarios: str | None = None) -> list[dict[str, Any]]:
    """Clips (with audio arrays) of the held-out evaluation split."""
    names = read_reserved_names(cfg.reserved_prompts)
    prompts = asterisk_utterances(cfg.asterisk_dir, read_asterisk_transcripts(cfg.asterisk_transcripts), names)
    return corrupt_utterances([(u.id, u.text, read_audio(u.audio_path)) for u in prompts], cfg, scenarios)


def corrupt_utterances(utterances: list[tuple[str, str, np.ndarray]], cfg: EvalConfig,
                       scenarios: str | None = None) -> list[dict[str, Any]]:
    """The evaluation's clip set made from any clean ``(id, text, audio)`` utterances.

    Why a function of its own: a tuning set (the validation speakers, docs/training.md round 24) must be
    corrupted exactly as the eval prompts are (every scenario ``clips_per_scenario`` times, rotating
    through the utterances, ``cfg.seed``), plus the clean clips and the noise-only and silent ones.
    """
    rng = np.random.default_rng(cfg.seed)
    clips: list[dict[str, Any]] = []
    if cfg.clean:
        clips += [{"id": uid, "text": text, "scenario": CLEAN, "n_effects": 0, "severity": 0.0, "audio": audio}
                  for uid, text, audio in utterances]
    order = list(rng.permutation(len(utterances)))
    cursor = 0
    for scenario in resolve_scenarios(scenarios or cfg.scenarios):
        for copy in range(cfg.clips_per_scenario):
            uid, text, audio = utterances[order[cursor % len(order)]]
            cursor += 1
            seed = int(rng.integers(2**31))
            result = simulate(audio, SAMPLE_RATE, scenario, None, seed, severity_mapping=cfg.severity_mapping)
            clips.append({"id": f"{uid}__{scenario}__{copy}", "text": text, "scenario": scenario,
                          "n_effects": len(result.effects), "severity": result.severity, "seed": seed,
                          "audio": result.audio})
    for i in range(cfg.noise_only_clips):
        n = int(rng.uniform(2.0, 8.0) * SAMPLE_RATE)
        level = 10 ** (rng.uniform(-45.0, -15.0) / 20)
        colour = COLOURS[i % len(COLOURS)]
        clips.append({"id": f"noise-{colour}-{i}", "text": "", "scenario": NOISE_ONLY, "n_effects": 0,
                      "severity": 0.0, "audio": (coloured_noise(colour, n, rng) * level).clip(-1, 1)})
    for i in range(cfg.silent_clips):
        n = int(rng.uniform(2.0, 8.0) * SAMPLE_RATE)
        level = 0.0 if i % 2 == 0 else 10 ** (-55 / 20)  # digital zero, then a quiet room tone
        clips.append({"id": f"silent-{i}", "text": "", "scenario": SILENT, "n_effects": 0, "severity": 0.0,
                      "audio": (coloured_noise("pink", n, rng) * level).astype(np.float32)})
    return clips


def clips_from_manifest(path: str | Path) -> list[dict[str, Any]]:
    from training.data import read_manifest

    return [{**r, "audio": read_audio(r["audio"])} for r in read_manifest(path)]


# -- systems -----------------------------------------------------------------------------------
def robust_model(robust: str, device: str | torch.device = "cpu") -> tuple[torch.nn.Module, Path]:
    """A merged checkpoint folder, or a bundle (its merged model, else base + adapter), on ``device``."""
    from training.whisper import load_model, resolve_model

    path = Path(robust)
    bundle = _bundle_of(robust)
    if bundle is not None:
        if bundle.merged is not None:
            return load_model(str(bundle.merged), device)[0].eval(), bundle.merged
        if bundle.adapter is None:  # a base-model-only bundle: there is no robust model to evaluate
            raise ValueError(f"{path}: the bundle has neither a merged model nor an adapter, so it has no robust "
                             f"model; evaluate its base model ({bundle.base_model!r}) as the base system instead")
        return _adapted(bundle.base_model, bundle.adapter, device)
    return load_model(str(path), device)[0].eval(), resolve_model(str(path))


def _adapted(base_model: str, adapter: Path, device: str | torch.device) -> tuple[torch.nn.Module, Path]:
    """The base model with a peft adapter on top (unmerged, as peft applies it), and the base's folder."""
    from training.export import apply_adapter
    from training.whisper import load_model

    base, _, base_dir = load_model(base_model, device)
    return apply_adapter(base, adapter).eval(), base_dir


def _bundle_of(robust: str) -> Bundle | None:
    """The bundle at ``robust``, or None for a checkpoint folder."""
    from training.export import load_bundle

    path = Path(robust)
    return load_bundle(path) if (path / "bundle.json").exists() else None


def ensemble_members(robust: str) -> tuple[Path, ...]:
    """A bundle's further robust adapters (its ``ensemble``); none for a checkpoint folder."""
    bundle = _bundle_of(robust)
    return bundle.ensemble if bundle is not None else ()


def vote_ensemble(clips: list[dict[str, Any]], robust: str, decoder, out: Path,
                  device: str | torch.device = "cpu") -> tuple[Path, ...]:
    """For an ensemble bundle, decode with each member too and make ``robust_hyp`` the ensemble's answer, as served.

    The answer is the ROVER vote, or with the bundle's ``ensemble_pick = "likelihood"`` the candidate the
    members find likeliest (:func:`likeliest_candidates`). The main adapter's transcripts must already be in
    ``robust_hyp``; every transcript goes to ``robust_member_hyps`` (main first) for analysis. Each member's
    transcripts are cached like the main's (``robust_hyps-member<N>.json``), under the same gates, as the
    embedded engine decodes them. Returns the members (none for a checkpoint folder or a bundle without an
    ensemble).
    """
    bundle = _bundle_of(robust)
    if bundle is None or not bundle.ensemble:
        return ()
    from service.engines.rover import combine

    votes = [[c["robust_hyp"]] for c in clips]
    for k, adapter in enumerate(bundle.ensemble, start=1):
        model, _ = _adapted(bundle.base_model, adapter, device)
        decoder.use_model(model)
        hyps = cached_hyps(out / f"robust_hyps-member{k}.json", str(adapter), clips, decoder, f"robust member {k}")
        for vote, h in zip(votes, hyps):
            vote.append(h)
        del model
    for c, vote in zip(clips, votes):
        c["robust_member_hyps"] = vote
        c["robust_hyp"] = combine(vote)
    if bundle.ensemble_pick == "likelihood":
        likeliest_candidates(clips, bundle, decoder.transcriber, device)
    return bundle.ensemble


def likeliest_candidates(clips: list[dict[str, Any]], bundle: Bundle, transcriber,
                         device: str | torch.device = "cpu") -> None:
    """``robust_hyp`` := the candidate the members find likeliest, as the embedded engine picks it.

    Candidates are :func:`service.engines.ensemble_pick.candidate_texts` of ``robust_member_hyps``; each
    member (main adapter first) scores them on the clip's window; the scores go to ``robust_pick_scores``.
    Clips over one window keep the vote, as served.
    """
    from tqdm import tqdm

    from service.engines.candidate_scores import window_scores
    from service.engines.ensemble_pick import best_candidate, candidate_texts, scorable
    from training.whisper import unwrap

    todo = [(c, texts) for c in clips if scorable(c["audio"])
            for texts in [candidate_texts(c["robust_member_hyps"])] if len(texts) > 1]
    scores: list[list[list[float]]] = [[] for _ in todo]
    for k, adapter in enumerate((bundle.adapter, *bundle.ensemble)):
        model = unwrap(_adapted(bundle.base_model, adapter, device)[0])
        for (c, texts), per_member in zip(tqdm(todo, desc=f"score candidates, member {k}", unit="clip"), scores):
            per_member.append(window_scores(model, transcriber.log_mel, transcriber.vocab, transcriber.tokenizer,
                                            c["audio"], texts))
        del model
    for (c, texts), per_member in zip(todo, scores):
        c["robust_hyp"] = texts[best_candidate(per_member, len(texts))]
        c["robust_pick_scores"] = per_member


def _served_value(robust: str, field: str, recipe_value: float | None) -> float | None:
    """A bundle's own ``field``, else the recipe's export value (a checkpoint folder has no bundle.json)."""
    bundle = _bundle_of(robust)
    return getattr(bundle, field) if bundle is not None else recipe_value


def robust_gate(robust: str, recipe_gate: float | None) -> float | None:
    """The confidence gate the robust system is served with: a bundle's own, else the recipe's export value."""
    return _served_value(robust, "robust_logprob_gate", recipe_gate)


def robust_no_speech_gate(robust: str, recipe_gate: float | None) -> float | None:
    """The base-model no-speech gate the robust system is served with: a bundle's own, else the recipe's."""
    return _served_value(robust, "robust_no_speech_gate", recipe_gate)


#: ``[eval].decode`` modes: the temperature schedule and how the reports name it.
DECODE_MODES: dict[str, tuple[tuple[float, ...], str]] = {
    "served": (DEFAULT_TEMPERATURES, "the service's default (greedy + temperature fallback)"),
    "greedy": ((0.0,), "one greedy pass"),
}


def decode_temperatures(decode: str) -> tuple[float, ...]:
    """The temperature schedule of an ``[eval].decode`` mode (the service's own default for ``served``)."""
    return DECODE_MODES[decode][0]


def transcribe_all(decoder, clips: list[dict[str, Any]], label: str) -> list[str]:
    from tqdm import tqdm

    out: list[str] = []
    for i in tqdm(range(0, len(clips), decoder.batch_size), desc=f"decode {label}", unit="batch"):
        out += decoder([c["audio"] for c in clips[i:i + decoder.batch_size]])
    return out


# -- scoring -----------------------------------------------------------------------------------
def speech_groups(clips: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """The headline groups of speech clips: clean, degraded (all scenarios) and degraded with 3+ effects."""
    degraded = [c for c in clips if c["scenario"] not in (CLEAN, NOISE_ONLY, SILENT)]
    return {"clean": [c for c in clips if c["scenario"] == CLEAN], "degraded": degraded,
            "3+ effects": [c for c in degraded if c["n_effects"] >= 3]}


def _share(clips: list[dict[str, Any]], test) -> float | None:
    """Share of ``clips`` passing ``test``; None for an empty group (a manifest of non-speech only has no
    clean or degraded clips, and NaN is not valid JSON)."""
    return float(np.mean([bool(test(c)) for c in clips])) if clips else None


def summarise(clips: list[dict[str, Any]], systems: tuple[str, ...]) -> dict[str, Any]:
    """Corpus WER/CER and flag rates by system and by clip group."""
    headline = speech_groups(clips)
    clean, degraded = headline["clean"], headline["degraded"]

    def block(rows: list[dict[str, Any]], system: str) -> dict[str, Any]:
        total = corpus_score((c["text"], c[f"{system}_hyp"]) for c in rows)
        per = [score(c["text"], c[f"{system}_hyp"]) for c in rows]
        return {"wer": round(100 * total.wer, 2), "cer": round(100 * total.cer, 2), "n": len(rows),
                "hallucination_rate": round(100 * float(np.mean([hallucination_flag(s, c[f"{system}_hyp"])
                                                                 for s, c in zip(per, rows)])), 2) if rows else None,
                "omission_rate": round(100 * float(np.mean([omission_flag(s) for s in per])), 2) if rows else None}

    def groups(key, order: tuple[str, ...] = ()) -> dict[str, dict[str, Any]]:
        """Per-group blocks, in ``order`` where given (severity: low, mid, high), else sorted."""
        buckets: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for c in degraded:
            buckets[key(c)].append(c)
        rank = {k: i for i, k in enumerate(order)}
        ordered = sorted(buckets.items(), key=lambda kv: (rank.get(kv[0], len(rank)), kv[0]))
        return {k: {s: block(v, s) for s in systems} for k, v in ordered}

    silent_like = {k: [c for c in clips if c["scenario"] == k] for k in (NOISE_ONLY, SILENT)}
    compared = systems[-1] if len(systems) > 1 else None  # routed when there is a router, else robust
    summary: dict[str, Any] = {
        "overall_degraded": {s: block(degraded, s) for s in systems},
        "clean": {s: block(clean, s) for s in systems},
        "by_effect_count": groups(lambda c: f"{c['n_effects']} effects" if c["n_effects"] < 3 else "3+ effects"),
        "by_n_effects": groups(lambda c: str(c["n_effects"])),
        "by_severity": groups(lambda c: severity_band(c["severity"]), order=("low", "mid", "high")),
        "by_scenario": groups(lambda c: c["scenario"]),
        "non_speech": {k: {s: {"n": len(v), "clips_with_words": sum(bool(c[f"{s}_hyp"].strip()) for c in v),
                               "inserted_words": sum(len(c[f"{s}_hyp"].split()) for c in v)} for s in systems}
                       for k, v in silent_like.items()},
        "gain_ci95": {"system": compared,
                      "degraded": gain_interval(degraded, compared) if compared else None,
                      "3+ effects": gain_interval(headline["3+ effects"], compared) if compared else None},
    }
    if clips and "p_dirty" in clips[0]:
        non_speech = silent_like[NOISE_ONLY] + silent_like[SILENT]
        summary["router"] = {"clean_sent_to_base": _share(clean, lambda c: not c["routed_robust"]),
                             "degraded_sent_to_robust": _share(degraded, lambda c: c["routed_robust"]),
                             "non_speech_sent_to_robust": _share(non_speech, lambda c: c["routed_robust"])}
    return summary


def relative_gain(base: float, other: float) -> float:
    return round(100 * (base - other) / base, 1) if base else 0.0


def gain_interval(rows: list[dict[str, Any]], system: str, n_boot: int = 2000, seed: int = 0,
                  level: float = 0.95) -> list[float] | None:
    """Paired-bootstrap interval of ``system``'s relative corpus-WER gain over the base model (percent).

    Why: 108 degraded clips are a small sample, and a gain of a few points can be luck of the draw.
    Clips are resampled with replacement (both systems keep the same clips, so the comparison stays
    paired) and the micro-averaged gain recomputed each time; the percentile interval is returned.
    """
    if not rows:
        return None
    # The reference word count cancels out of (WER_base - WER_other) / WER_base: only edits are summed.
    base = np.array([score(c["text"], c["base_hyp"]).word_edits for c in rows], dtype=float)
    other = np.array([score(c["text"], c[f"{system}_hyp"]).word_edits for c in rows], dtype=float)
    idx = np.random.default_rng(seed).integers(0, len(rows), size=(n_boot, len(rows)))
    base_err = base[idx].sum(axis=1)
    gains = np.where(base_err > 0, 100 * (base_err - other[idx].sum(axis=1)) / np.maximum(base_err, 1), 0.0)
    tail = 100 * (1 - level) / 2
    return [round(float(np.percentile(gains, tail)), 1), round(float(np.percentile(gains, 100 - tail)), 1)]


def markdown(summary: dict[str, Any], systems: tuple[str, ...]) -> str:
    """The headline tables of an evaluation."""
    head = "| group | n | " + " | ".join(f"{s} WER" for s in systems) + " | routed vs base | 95 % CI (bootstrap) |\n"
    head += "|---|---|" + "---|" * len(systems) + "---|---|\n"
    ci = summary.get("gain_ci95", {})

    def row(name: str, blk: dict[str, Any], interval: list[float] | None = None) -> str:
        vals = " | ".join(f"{blk[s]['wer']:.2f}" for s in systems)
        gain = relative_gain(blk["base"]["wer"], blk["routed"]["wer"]) if "routed" in blk else ""
        band = f"{interval[0]}% .. {interval[1]}%" if interval else ""
        return f"| {name} | {blk[systems[0]]['n']} | {vals} | {gain}% | {band} |\n"

    decode = summary.get("config", {}).get("decode")
    intro = f"Decode: {decode}, {DECODE_MODES[decode][1]}" if decode in DECODE_MODES else ""
    beam = summary.get("config", {}).get("beam_size", 1)
    if intro and beam > 1:
        intro += f", beam search of width {beam} at temperature 0"
    best_of = summary.get("config", {}).get("best_of", 1)
    if intro and best_of > 1 and decode == "served":
        intro += f", best of {best_of} samples at each fallback temperature"
    if intro and "robust" in systems:
        gate = summary.get("systems", {}).get("robust_logprob_gate")
        intro += (f"; robust path: windows below a mean log-prob of {gate} dropped (the bundle's confidence gate)"
                  if gate is not None else "; robust path: no confidence gate")
        no_speech = summary.get("systems", {}).get("robust_no_speech_gate")
        if no_speech is not None:
            intro += f"; robust windows skipped where the base model's no-speech probability is above {no_speech}"
        members = summary.get("systems", {}).get("robust_ensemble") or []
        if members:
            intro += f"; robust transcript: the ROVER vote of the main adapter and {len(members)} ensemble members"
    intro = intro + ".\n\n" if intro else ""
    text = intro + head + row("clean", summary["clean"]) + row("degraded, all 54 scenarios", summary["overall_degraded"],
                                                       ci.get("degraded"))
    for k, blk in summary["by_effect_count"].items():
        text += row(k, blk, ci.get(k))
    for k, blk in summary["by_severity"].items():
        text += row(f"severity {k}", blk)
    text += "\n| clips | " + " | ".join(f"{s}: clips with words / inserted words" for s in systems) + " |\n"
    text += "|---|" + "---|" * len(systems) + "\n"
    for k, v in summary["non_speech"].items():
        text += f"| {k} ({v[systems[0]]['n']}) | " + " | ".join(
            f"{v[s]['clips_with_words']} / {v[s]['inserted_words']}" for s in systems) + " |\n"
    text += "\n| speech | " + " | ".join(f"{s} halluc. / omission %" for s in systems) + " |\n"
    text += "|---|" + "---|" * len(systems) + "\n"
    for name, blk in (("clean", summary["clean"]), ("degraded", summary["overall_degraded"])):
        text += f"| {name} | " + " | ".join(f"{blk[s]['hallucination_rate']} / {blk[s]['omission_rate']}"
                                            for s in systems) + " |\n"
    return text


def plot(summary: dict[str, Any], systems: tuple[str, ...], out_png: Path) -> Path:
    """WER by number of effects and by severity band, one bar per system."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4))
    for ax, key, title in ((axes[0], "by_n_effects", "WER by number of effects"),
                           (axes[1], "by_severity", "WER by severity band")):
        groups = list(summary[key])
        if key == "by_n_effects":
            groups = ["0"] + groups
        width = 0.8 / len(systems)
        for i, s in enumerate(systems):
            values = [summary["clean"][s]["wer"] if g == "0" else summary[key][g][s]["wer"] for g in groups]
            ax.bar(np.arange(len(groups)) + i * width, values, width, label=s)
        ax.set_xticks(np.arange(len(groups)) + width * (len(systems) - 1) / 2,
                      ["clean" if g == "0" else g for g in groups])
        ax.set(ylabel="WER %", title=title)
        ax.legend()
    fig.tight_layout()
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def cached_hyps(path: Path, base: str, clips: list[dict[str, Any]], decoder, label: str = "base"
                ) -> list[str]:
    """A system's hypotheses, reused when the same model decoded the same clips before.

    The eval set is a pure function of the config (seeded), so the base model's half of the work
    can run before training ends and be shared by every later evaluation of a robust model.
    """
    fingerprint = {"base": base, "ids": [c["id"] for c in clips],
                   "audio": [round(float(np.abs(c["audio"]).sum()), 3) for c in clips],
                   "temperatures": list(decoder.options.temperatures)}
    if decoder.options.beam_size > 1:  # absent for greedy: older caches stay valid
        fingerprint["beam_size"] = decoder.options.beam_size
    if decoder.options.best_of > 1:
        fingerprint["best_of"] = decoder.options.best_of
    if decoder.transcriber.guards.min_avg_logprob is not None:  # absent when unset: older caches stay valid
        fingerprint["min_avg_logprob"] = decoder.transcriber.guards.min_avg_logprob
    if decoder.transcriber.probe is not None:
        fingerprint["base_no_speech_gate"] = decoder.transcriber.probe.threshold
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["fingerprint"] == fingerprint:
            return saved["hyps"]
    hyps = transcribe_all(decoder, clips, label)
    path.write_text(json.dumps({"fingerprint": fingerprint, "hyps": hyps}))
    return hyps


def run_eval(cfg: EvalConfig, base: str, robust: str | None, router_dir: str | None, threshold: float | None,
             manifest: str | None = None, scenarios: str | None = None,
             robust_logprob_gate: float | None = None,
             robust_no_speech_gate: float | None = None) -> dict[str, Any]:
    """Decode the eval set with each system on ``cfg.device``; write clips.jsonl, summary.json, summary.md, plots.

    The base model is decoded as the service's base path (no confidence gate); the robust model with
    ``robust_logprob_gate`` and ``robust_no_speech_gate`` (the base model as its no-speech probe), as the
    service's robust path decodes it (see :func:`robust_gate`).
    """
    from service.engines.no_speech_probe import NoSpeechProbe
    from service.models.router_net import AudioQualityRouter
    from training.device import resolve_device
    from training.whisper import Decoder, resolve_model

    device = resolve_device(cfg.device)
    torch.set_num_threads(cfg.threads)
    started = time.monotonic()
    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    clips = clips_from_manifest(manifest) if manifest else build_eval_clips(cfg, scenarios)
    base_dir = resolve_model(base)
    decoder = Decoder(base_dir, threads=cfg.threads, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                      device=device, temperatures=decode_temperatures(cfg.decode), beam_size=cfg.beam_size,
                      best_of=cfg.best_of)
    for c, h in zip(clips, cached_hyps(out / "base_hyps.json", base, clips, decoder)):
        c["base_hyp"] = h
    systems: tuple[str, ...] = ("base",)
    if robust:
        model, _ = robust_model(robust, device)
        base_runner = decoder.transcriber.runner
        decoder.use_model(model)
        decoder.transcriber.guards.min_avg_logprob = robust_logprob_gate
        if robust_no_speech_gate is not None:
            decoder.transcriber.probe = NoSpeechProbe(base_runner, decoder.transcriber.vocab, robust_no_speech_gate)
        robust_id = str(Path(robust).resolve())
        for c, h in zip(clips, cached_hyps(out / "robust_hyps.json", robust_id, clips, decoder, "robust")):
            c["robust_hyp"] = h
        members = vote_ensemble(clips, robust, decoder, out, device)
        systems = ("base", "robust")
    if robust and router_dir:
        router = AudioQualityRouter.load(router_dir, device)
        t = threshold if threshold is not None else float(router.training_metadata.get("threshold", 0.5))
        for i in range(0, len(clips), 32):
            for c, p in zip(clips[i:i + 32], router.predict_proba([c["audio"] for c in clips[i:i + 32]])):
                c["p_dirty"] = float(p)
                c["routed_robust"] = bool(p >= t)
                c["routed_hyp"] = c["robust_hyp"] if p >= t else c["base_hyp"]
        systems = SYSTEMS
    summary = summarise(clips, systems)
    summary["systems"] = {"base": base, "robust": robust, "router": router_dir,
                          "robust_logprob_gate": robust_logprob_gate if robust else None,
                          "robust_no_speech_gate": robust_no_speech_gate if robust else None,
                          "robust_ensemble": [str(m) for m in members] if robust else [],
                          "robust_ensemble_pick": _bundle_of(robust).ensemble_pick if robust and members else None}
    summary["n_clips"] = len(clips)
    summary["seconds"] = round(time.monotonic() - started, 1)
    summary["config"] = cfg.model_dump()
    summary["markdown"] = markdown(summary, systems) if "routed" in systems else ""
    with open(out / "clips.jsonl", "w") as handle:
        for c in clips:
            handle.write(json.dumps({k: v for k, v in c.items() if k != "audio"}) + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    (out / "summary.md").write_text(summary["markdown"] or json.dumps(summary["overall_degraded"], indent=2))
    plot(summary, systems, out / "wer.png")
    return summary
