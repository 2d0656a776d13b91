"""Decode, without the no-speech gate, the eval clips the shipped ensemble answers with nothing, by every member.

Why (round 33, a probe): half of the 3+ effects clips (52 of 116 fresh, 31 of 58 std) come back empty from the
shipped bundle, because whisper-base's no-speech probability is above the 0.7 gate and the window is skipped;
those clips are 620 of the 1,276 word errors on the fresh draw's 3+ effects clips. Round 28 measured that the
single adapter's ungated text there was about as wrong as silence. With three members, a word all of them
write independently is more likely to be right; this decodes what each member would have written, so the
answer rules fixed in advance (rescue.py) can be measured offline. Noise-only and silent clips routed to the
robust path are decoded too: a rescue must not bring back hallucinations.

    python docs/cpu-runs/2026-12-08-gated-rescue/decode_gated.py --rows runs/r32/std --out runs/r33/std-gated.json
"""
import argparse
import json
from pathlib import Path

import torch

from training.config import EvalConfig
from training.eval import _adapted, _bundle_of, build_eval_clips, decode_temperatures, transcribe_all
from training.whisper import Decoder, resolve_model

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--rows", required=True, help="the shipped bundle's eval folder of this draw (clips.jsonl, "
                    "summary.json: the draw's own eval settings, so its clips are rebuilt exactly)")
parser.add_argument("--bundle", default="checkpoints/whisper-base-robust")
parser.add_argument("--threads", type=int, default=1)
parser.add_argument("--out", required=True)
args = parser.parse_args()

summary = json.loads(Path(args.rows, "summary.json").read_text())
cfg = EvalConfig.model_validate({**summary["config"], "threads": args.threads})
torch.set_num_threads(cfg.threads)
bundle = _bundle_of(args.bundle)
rows = [json.loads(line) for line in Path(args.rows, "clips.jsonl").read_text().splitlines()]
clips = build_eval_clips(cfg)
assert [c["id"] for c in clips] == [r["id"] for r in rows] and [c["scenario"] for c in clips] == [r["scenario"] for r in rows]
# the clips the shipped ensemble answers with nothing on the robust path, every member empty
todo = [i for i, r in enumerate(rows) if r["routed_robust"] and not any(h.strip() for h in r["robust_member_hyps"])]
print(f"{len(todo)} silenced clips of {len(rows)}")
decoder = Decoder(resolve_model(bundle.base_model), threads=cfg.threads, batch_size=cfg.batch_size,
                  max_new_tokens=cfg.max_new_tokens, temperatures=decode_temperatures(cfg.decode),
                  beam_size=cfg.beam_size, best_of=cfg.best_of)
members: list[list[str]] = []
for k, adapter in enumerate((bundle.adapter, *bundle.ensemble)):
    decoder.use_model(_adapted(bundle.base_model, adapter, "cpu")[0])  # no probe: the gate is off
    members.append(transcribe_all(decoder, [clips[i] for i in todo], f"member {k}"))
out = Path(args.out)
out.parent.mkdir(parents=True, exist_ok=True)
out.write_text(json.dumps({"rows": args.rows, "bundle": args.bundle, "beam_size": cfg.beam_size,
                           "clips": [{"index": i, "id": rows[i]["id"], "scenario": rows[i]["scenario"],
                                      "member_hyps": [m[j] for m in members]} for j, i in enumerate(todo)]}, indent=1))
print(f"-> {out}")
