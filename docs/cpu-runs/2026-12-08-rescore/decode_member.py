"""Decode one ensemble member's transcripts of an eval draw into the cache `megaasr eval` reads, in its own process.

Why: `megaasr eval` decodes an ensemble's members one after another; on the 2-core CPU a second process can
decode a later member at the same time. The decoder is set up exactly as `training.eval.run_eval` sets it up
(beam, gates, the base model as no-speech probe, batch size, threads), and the cache is written by
`training.eval.cached_hyps` with the same fingerprint, so `megaasr eval` then reuses it as its own. Run from
the repository root, then copy OUT into the eval's folder before that eval reaches the member:

    python docs/cpu-runs/2026-12-08-rescore/decode_member.py --config runs/r32/t1.toml --seed 2026 \\
        --clips-per-scenario 4 --beam-size 5 --bundle checkpoints/whisper-base-robust --member 2 \\
        --out runs/r32/fresh-m2/robust_hyps-member2.json
"""
import argparse
from pathlib import Path

import torch

from service.engines.no_speech_probe import NoSpeechProbe
from training.cli import eval_settings
from training.config import load_config
from training.eval import _adapted, _bundle_of, build_eval_clips, cached_hyps, decode_temperatures
from training.whisper import Decoder, resolve_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--config", required=True)
parser.add_argument("--seed", type=int)
parser.add_argument("--clips-per-scenario", type=int)
parser.add_argument("--beam-size", type=int)
parser.add_argument("--bundle", required=True)
parser.add_argument("--member", type=int, required=True, help="1-based, as robust_hyps-member<N>.json")
parser.add_argument("--out", required=True)
args = parser.parse_args()

recipe = load_config(args.config)
cfg = eval_settings(recipe.eval, argparse.Namespace(out=None, seed=args.seed, clips_per_scenario=args.clips_per_scenario,
                                                    decode=None, beam_size=args.beam_size, best_of=None))
torch.set_num_threads(cfg.threads)
bundle = _bundle_of(args.bundle)
assert bundle is not None and len(bundle.ensemble) >= args.member, f"{args.bundle} has no member {args.member}"
clips = build_eval_clips(cfg)
decoder = Decoder(resolve_model(recipe.sft.base_model), threads=cfg.threads, batch_size=cfg.batch_size,
                  max_new_tokens=cfg.max_new_tokens, temperatures=decode_temperatures(cfg.decode),
                  beam_size=cfg.beam_size, best_of=cfg.best_of)
base_runner = decoder.transcriber.runner
adapter = bundle.ensemble[args.member - 1]
decoder.use_model(_adapted(bundle.base_model, adapter, "cpu")[0])
decoder.transcriber.guards.min_avg_logprob = bundle.robust_logprob_gate
if bundle.robust_no_speech_gate is not None:
    decoder.transcriber.probe = NoSpeechProbe(base_runner, decoder.transcriber.vocab, bundle.robust_no_speech_gate)
out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
hyps = cached_hyps(out, str(adapter), clips, decoder, f"robust member {args.member}")
print(f"{len(hyps)} transcripts -> {out}")
