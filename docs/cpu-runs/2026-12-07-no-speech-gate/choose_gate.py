"""Choose the robust path's base-model no-speech gate (``robust_no_speech_gate``) on validation clips.

Why offline: the gate skips a whole window, so on clips of one window (all of these are under 30 s) the
routed system with gate t answers exactly "" where the clip went to the robust model and the base model's
no-speech probability is above t, and its ungated hypothesis elsewhere. One pass of the base model's probe
over the clips (the served code: `Transcriber._probe_no_speech`, full 30 s windows as served) then scores
every threshold, and only the chosen one needs a served decode on the eval draws.

The rule picks the threshold with the fewest word errors in all: the routed system's word edits on the
speech clips (clean and degraded) plus the words it writes on the non-speech clips (each an insertion); a
tie goes to the higher threshold (the gate that silences less). Inputs are `megaasr eval` folders (ungated
decodes with the router) with their manifests. Run from the repository root:

    python docs/cpu-runs/2026-12-07-no-speech-gate/choose_gate.py runs/r28/choose \
        runs/r24/val-eval/manifest.jsonl:runs/r24/val-r22 runs/r28/val-nonspeech/manifest.jsonl:runs/r28/val-ns-b5
"""
import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from service.engines.base import TranscriptionOptions
from service.engines.features import N_FRAMES, SAMPLE_RATE
from service.engines.no_speech_probe import NoSpeechProbe
from service.scoring import corpus_score
from training.eval import NOISE_ONLY, SILENT, clips_from_manifest, speech_groups
from training.whisper import Decoder, resolve_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("out")
parser.add_argument("sets", nargs="+", help="MANIFEST:EVAL_DIR pairs")
parser.add_argument("--base", default="whisper-base")
parser.add_argument("--grid", default="0.3:0.96:0.05", help="start:stop:step of the thresholds tried")
args = parser.parse_args()


def base_no_speech(clips: list[dict], base: str) -> list[float]:
    """The served probe's probability for each clip's (only) window; NaN where the silence gate skips it."""
    transcriber = Decoder(resolve_model(base)).transcriber
    transcriber.probe = NoSpeechProbe(transcriber.runner, transcriber.vocab, 0.999999)
    options = TranscriptionOptions(language="en")
    out = []
    for start in tqdm(range(0, len(clips), 8), desc="base no-speech probe", unit="batch"):
        jobs = [transcriber._new_job(c["audio"], options) for c in clips[start:start + 8]]
        assert all(j.content_frames <= N_FRAMES for j in jobs), "clips must be one window (< 30 s)"
        live = [j for j in jobs if not transcriber._is_silent(j, j.content_frames)]
        if live:
            transcriber._probe_no_speech(live, [j.content_frames for j in live])
        out += [j.base_no_speech_probs[0] if j.base_no_speech_probs else float("nan") for j in jobs]
    return out


clips = []
for pair in args.sets:
    manifest, folder = pair.split(":")
    audio = {c["id"]: c["audio"] for c in clips_from_manifest(manifest)}
    for line in (Path(folder) / "clips.jsonl").read_text().splitlines():
        row = json.loads(line)
        clips.append({**row, "audio": audio[row["id"]], "set": folder})
for c, p in zip(clips, base_no_speech(clips, args.base)):
    c["base_no_speech"] = p
    assert len(c["audio"]) <= 30 * SAMPLE_RATE

groups = speech_groups(clips)
non_speech = [c for c in clips if c["scenario"] in (NOISE_ONLY, SILENT)]
start, stop, step = (float(x) for x in args.grid.split(":"))
rows = []
for t in [None, *np.round(np.arange(start, stop, step), 3).tolist()]:
    def hyp(c: dict, t=t) -> str:
        gated = t is not None and c["routed_robust"] and c["base_no_speech"] > t
        return "" if gated else c["routed_hyp"]

    row = {"threshold": t}
    edits = 0
    for name, members in groups.items():
        score = corpus_score((c["text"], hyp(c)) for c in members)
        row[name] = round(100 * score.wer, 2)
        if name != "3+ effects":
            edits += score.word_edits
    row["speech_clips_silenced"] = sum(hyp(c) == "" and c["routed_hyp"] != "" for c in groups["clean"] + groups["degraded"])
    row["non_speech_clips_with_words"] = sum(bool(hyp(c).strip()) for c in non_speech)
    row["non_speech_words"] = sum(len(hyp(c).split()) for c in non_speech)
    row["base_non_speech_words"] = sum(len(c["base_hyp"].split()) for c in non_speech)
    row["word_errors"] = edits + row["non_speech_words"]
    rows.append(row)
gated = [r for r in rows if r["threshold"] is not None]
best = min(gated, key=lambda r: (r["word_errors"], -r["threshold"]))

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
keys = ["threshold", "clean", "degraded", "3+ effects", "speech_clips_silenced", "non_speech_clips_with_words",
        "non_speech_words", "base_non_speech_words", "word_errors"]
table = "| " + " | ".join(keys) + " |\n|" + "---|" * len(keys) + "\n"
for r in rows:
    table += "| " + " | ".join("none" if r[k] is None else str(r[k]) for k in keys) + " |\n"
table += f"\nChosen: {best['threshold']} ({len(clips)} clips: {len(groups['clean'])} clean, " \
         f"{len(groups['degraded'])} degraded, {len(non_speech)} non-speech)\n"
(out / "thresholds.md").write_text(table)
(out / "thresholds.json").write_text(json.dumps({"chosen": best["threshold"], "rows": rows, "probs": [
    {k: c[k] for k in ("id", "set", "scenario", "routed_robust", "base_no_speech")} for c in clips]}, indent=2))

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

fig, axes = plt.subplots(1, 2, figsize=(12, 4))
routed = [c for c in clips if c["routed_robust"] and not np.isnan(c["base_no_speech"])]
bins = np.linspace(0, 1, 41)
for label, members in (("degraded speech", [c for c in routed if c in groups["degraded"]]),
                       ("non-speech", [c for c in routed if c in non_speech])):
    axes[0].hist([c["base_no_speech"] for c in members], bins=bins, alpha=0.6, label=f"{label} ({len(members)})")
axes[0].axvline(best["threshold"], color="k", ls="--", label=f"chosen {best['threshold']}")
axes[0].set(xlabel=f"{args.base} p(no speech)", ylabel="clips routed to the robust model",
            title="the probe on validation clips")
axes[0].legend()
ts = [r["threshold"] for r in gated]
axes[1].plot(ts, [r["word_errors"] - rows[0]["word_errors"] for r in gated], marker="o", label="all word errors")
axes[1].plot(ts, [r["non_speech_words"] - rows[0]["non_speech_words"] for r in gated], marker=".",
             label="words on non-speech")
axes[1].axhline(0, color="grey", lw=0.8)
axes[1].set(xlabel="gate threshold", ylabel="change against no gate", title="word errors by threshold")
axes[1].legend()
fig.tight_layout()
fig.savefig(out / "thresholds.png", dpi=110)
print(table)
