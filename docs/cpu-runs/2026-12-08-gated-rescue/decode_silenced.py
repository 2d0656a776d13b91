"""For a manifest (the validation set, the non-speech set): which clips the shipped bundle silences, and what
each member writes there without the gate.

A clip is silenced when the bundle's router sends it to the robust path and whisper-base's no-speech probability
on its (only) window is above the bundle's gate: the served engine then skips the window and answers "". On
every other clip the rescue rules change nothing, so only these are decoded (by every member, no gate); the
rules' effect on the set is then exact (rescue_manifest.py). The probability is read as the served probe reads
it (`NoSpeechProbe` on whisper-base's runner, start-of-transcript position of the first window).

    python docs/cpu-runs/2026-12-08-gated-rescue/decode_silenced.py runs/r33/val-eval/manifest.jsonl \\
        --out runs/r33/val-silenced.json [--threads 1]
"""
import argparse
import json
from pathlib import Path

import torch
from tqdm import tqdm

from service.engines.features import N_FRAMES
from service.engines.no_speech_probe import NoSpeechProbe
from service.models.router_net import AudioQualityRouter
from training.eval import _adapted, _bundle_of, clips_from_manifest, decode_temperatures, transcribe_all
from training.whisper import Decoder, resolve_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("manifest")
parser.add_argument("--bundle", default="checkpoints/whisper-base-robust")
parser.add_argument("--beam-size", type=int, default=5)
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--out", required=True)
args = parser.parse_args()

torch.set_num_threads(args.threads)
bundle = _bundle_of(args.bundle)
clips = clips_from_manifest(args.manifest)
router = AudioQualityRouter.load(str(Path(args.bundle, bundle.router)), "cpu")
p_dirty = [float(p) for s in range(0, len(clips), 32)
           for p in router.predict_proba([c["audio"] for c in clips[s:s + 32]])]
decoder = Decoder(resolve_model(bundle.base_model), threads=args.threads, batch_size=16,
                  temperatures=decode_temperatures("served"), beam_size=args.beam_size)
t = decoder.transcriber
probe = NoSpeechProbe(t.runner, t.vocab, bundle.robust_no_speech_gate)
p_no_speech: list[float | None] = []
with torch.no_grad():
    for s in tqdm(range(0, len(clips), 16), desc="no-speech probe", unit="batch"):
        # the transcriber's own first window: its job, size, silence check and encoder frames
        jobs = [t._new_job(c["audio"], decoder.options) for c in clips[s:s + 16]]
        assert all(j.content_frames <= N_FRAMES for j in jobs), "a clip longer than one window"
        sizes = [j.content_frames for j in jobs]
        quiet = [t._is_silent(j, size) for j, size in zip(jobs, sizes)]
        loud = [i for i, q in enumerate(quiet) if not q]
        probs = dict(zip(loud, probe.probabilities(*t._encode([jobs[i] for i in loud], [sizes[i] for i in loud],
                                                              probe.runner),
                                                   [jobs[i].language for i in loud],
                                                   [jobs[i].options.task for i in loud]))) if loud else {}
        p_no_speech += [probs.get(i) for i in range(len(jobs))]
# a digitally silent window is skipped before the probe (it is "" on every path and no rule changes it)
silenced = [i for i, c in enumerate(clips) if p_dirty[i] >= bundle.router_threshold
            and p_no_speech[i] is not None and probe.silent(p_no_speech[i])]
print(f"{len(silenced)} of {len(clips)} clips silenced")
members: list[list[str]] = []
for k, adapter in enumerate((bundle.adapter, *bundle.ensemble)):
    decoder.use_model(_adapted(bundle.base_model, adapter, "cpu")[0])  # no probe: the gate is off
    members.append(transcribe_all(decoder, [clips[i] for i in silenced], f"member {k}"))
keep = ("id", "text", "scenario", "n_effects", "severity")
Path(args.out).parent.mkdir(parents=True, exist_ok=True)
Path(args.out).write_text(json.dumps({
    "manifest": args.manifest, "bundle": args.bundle, "beam_size": args.beam_size,
    "clips": [{**{k: clips[i].get(k) for k in keep}, "p_dirty": p_dirty[i], "p_no_speech": p_no_speech[i],
               "member_hyps": [m[j] for m in members]} for j, i in enumerate(silenced)]}, indent=1))
print(f"-> {args.out}")
