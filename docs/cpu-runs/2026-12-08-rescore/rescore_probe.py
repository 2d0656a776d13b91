"""Round 32 probe: pick each robust clip's answer among the ensemble's transcripts by how likely its adapters find it.

Why: round 31's ROVER vote closes a third of the gap between round 22 alone and the per-clip oracle over the
three adapters (3+ effects: 11.7 % -> 12.4 % pooled, oracle 17.1 %). A vote counts words; it never asks the
models how well a transcript fits the audio. Here each candidate (the three adapters' transcripts and their
vote, duplicates removed) is scored teacher-forced by every adapter: the mean log-probability per token
(EOT included; the ranking OpenAI's Whisper and this project's beam search use), averaged over the adapters.
The best-scoring candidate is answered. Reference-free; the rule was fixed before any score was seen.

Reads a ``megaasr eval`` run of the ensemble bundle (clips.jsonl with ``robust_member_hyps``), rebuilds its
clips from the same config and draw (the eval set is seeded), and writes a copy of the run whose ``robust_hyp``
and ``routed_hyp`` are the chosen candidates (``training.compare_pair`` reads it). Run from the repo root:

    python docs/cpu-runs/2026-12-08-rescore/rescore_probe.py runs/r32/std runs/r32/std-rescore \\
        --config training/configs/base-r19.toml --bundle checkpoints/whisper-base-robust
"""
import argparse
import json
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from service.engines.candidate_scores import mean_token_logprobs
from service.engines.features import pad_or_trim
from training.cli import eval_settings
from training.config import load_config
from training.eval import _adapted, _bundle_of, build_eval_clips
from training.whisper import Decoder, resolve_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("run")
parser.add_argument("out")
parser.add_argument("--config", required=True)
parser.add_argument("--bundle", required=True)
parser.add_argument("--seed", type=int)
parser.add_argument("--clips-per-scenario", type=int)
parser.add_argument("--threads", type=int, default=2)
args = parser.parse_args()
torch.set_num_threads(args.threads)

cfg = eval_settings(load_config(args.config).eval, argparse.Namespace(
    out=None, seed=args.seed, clips_per_scenario=args.clips_per_scenario, decode=None, beam_size=None, best_of=None))
rows = [json.loads(line) for line in (Path(args.run) / "clips.jsonl").read_text().splitlines()]
audio = {c["id"]: c["audio"] for c in build_eval_clips(cfg)}
assert set(audio) == {r["id"] for r in rows}, "the run's clips are not this config's draw"

bundle = _bundle_of(args.bundle)
assert bundle is not None and bundle.ensemble, f"{args.bundle} is not an ensemble bundle"
helper = Decoder(resolve_model(bundle.base_model), threads=args.threads)  # mel, tokenizer, vocabulary
vocab, tokenizer, log_mel = helper.transcriber.vocab, helper.transcriber.tokenizer, helper.transcriber.log_mel


def candidates(row: dict) -> list[str]:
    seen: list[str] = []
    for text in [*row["robust_member_hyps"], row["robust_hyp"]]:
        if text not in seen:
            seen.append(text)
    return seen


todo = [r for r in rows if r.get("robust_member_hyps") and len(candidates(r)) > 1]
print(f"{len(todo)} of {len(rows)} clips have more than one distinct candidate")
scores: dict[str, list[list[float]]] = {r["id"]: [] for r in todo}
for adapter in [bundle.adapter, *bundle.ensemble]:
    model = _adapted(bundle.base_model, adapter, "cpu")[0].merge_and_unload().eval()
    with torch.inference_mode():
        for r in tqdm(todo, desc=f"score {adapter.name}"):
            mel = pad_or_trim(log_mel(audio[r["id"]]))[None]
            states = model.model.encoder(mel).last_hidden_state
            per_text = mean_token_logprobs(model, vocab, tokenizer, states, candidates(r))
            scores[r["id"]].append(per_text)
    del model

out = Path(args.out)
out.mkdir(parents=True, exist_ok=True)
changed = 0
with open(out / "clips.jsonl", "w") as handle:
    for r in rows:
        if r["id"] in scores:
            texts = candidates(r)
            mean = [sum(s[i] for s in scores[r["id"]]) / len(scores[r["id"]]) for i in range(len(texts))]
            best = texts[max(range(len(texts)), key=lambda i: mean[i])]
            r["rescore_candidates"] = texts
            r["rescore_scores"] = mean
            changed += best != r["robust_hyp"]
            r["robust_hyp"] = best
            if r.get("routed_robust"):
                r["routed_hyp"] = best
        handle.write(json.dumps(r) + "\n")
for name in ("summary.json",):
    if (Path(args.run) / name).exists():
        shutil.copy(Path(args.run) / name, out / name)
print(f"answer changed on {changed} clips -> {out / 'clips.jsonl'}")
