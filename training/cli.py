"""``megaasr train {data,sft,rl,router}``, ``megaasr eval`` and ``megaasr export``.

Every setting comes from a recipe TOML (``--config``, default ``training/configs/tiny-en.toml``);
flags only choose what to run and where the inputs are, plus ``--device`` (train data/sft/rl/router and
eval), which replaces the stages' ``device`` before the recipe is validated. Heavy imports happen
inside commands.
"""

from __future__ import annotations

import argparse
import json
import logging
from dataclasses import dataclass
from pathlib import Path

from training.config import DEFAULT_CONFIG, EvalConfig, RecipeConfig


def _config(args: argparse.Namespace):
    from training.config import load_config

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    device, stage = getattr(args, "device", None), getattr(args, "device_stage", None)
    return load_config(args.config, device=device, stages=(stage,) if stage else ())


@dataclass(frozen=True)
class GateArg:
    """A gate flag's value: a number, or ``none`` for no gate (distinct from "not given", which is None).

    ``--logprob-gate`` takes a log-probability (<= 0), ``--no-speech-gate`` a probability in (0, 1).
    """

    value: float | None

    @classmethod
    def _read(cls, text: str, what: str, valid, rule: str) -> GateArg:
        if text.strip().lower() == "none":
            return cls(None)
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what} or 'none', got {text!r}") from None
        if not valid(value):
            raise argparse.ArgumentTypeError(f"{rule}, got {text!r}")
        return cls(value)

    @classmethod
    def parse(cls, text: str) -> GateArg:
        """``--logprob-gate``: a log-probability (<= 0), or ``none``."""
        return cls._read(text, "a log-probability", lambda v: v <= 0.0, "a log-probability is <= 0")

    @classmethod
    def parse_probability(cls, text: str) -> GateArg:
        """``--no-speech-gate``: a probability strictly between 0 and 1, or ``none``."""
        return cls._read(text, "a probability", lambda v: 0.0 < v < 1.0,
                         "a no-speech gate lies strictly between 0 and 1")


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default=str(DEFAULT_CONFIG), help="recipe TOML (training/configs/)")


def _add_device(p: argparse.ArgumentParser, stage: str) -> None:
    p.add_argument("--device", help=f"cpu, cuda (cuda:LOCAL_RANK under torchrun), cuda:N or auto "
                                    f"(default: [{stage}].device of the recipe, itself cpu by default)")
    p.set_defaults(device_stage=stage)


def grade_model(cfg: RecipeConfig) -> str:
    """The model that grades training clips: ``[data].grade_model``, else the model being adapted."""
    return cfg.data.grade_model or cfg.sft.base_model


def _cmd_data(args: argparse.Namespace) -> int:
    from training.data import build_datasets

    cfg = _config(args)
    if args.regrade_from:
        from training.regrade import regrade_build

        paths = regrade_build(args.regrade_from, cfg.data, grade_model(cfg), cfg.sft.threads)
    else:
        paths = build_datasets(cfg.data, grade_model(cfg), cfg.sft.threads)
    print(json.dumps({k: str(v) for k, v in paths.items()}, indent=2))
    return 0


def _cmd_sft(args: argparse.Namespace) -> int:
    from training.sft import train_sft

    cfg = _config(args)
    final = train_sft(cfg.sft, args.data or cfg.data.out_dir, cfg.data.clean_fraction, cfg.data.learnability_max_wer,
                      max_steps=args.max_steps)
    _leave_process_group()
    print(final)
    return 0


def _leave_process_group() -> None:
    """End the torchrun process group (if any) cleanly."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def _cmd_rl(args: argparse.Namespace) -> int:
    from training.rl import train_rl

    cfg = _config(args)
    rl = cfg.rl if args.steps is None else cfg.rl.model_copy(update={"steps": args.steps})
    print(train_rl(rl, args.data or cfg.data.out_dir))
    return 0


def _cmd_router(args: argparse.Namespace) -> int:
    from training.router import train_router

    cfg = _config(args)
    final = train_router(cfg.router, args.data or cfg.data.out_dir)
    print(json.dumps(json.loads((Path(cfg.router.out_dir) / "metrics.json").read_text())["val_at_threshold"]))
    print(final)
    return 0


def eval_settings(eval_cfg: EvalConfig, args: argparse.Namespace) -> EvalConfig:
    """The recipe's ``[eval]`` with the command line's overrides (a fresh draw: ``--seed``, more clips)."""
    update = {key: value for key, value in (("out_dir", args.out), ("seed", args.seed),
                                             ("clips_per_scenario", args.clips_per_scenario), ("decode", args.decode),
                                             ("beam_size", args.beam_size), ("best_of", args.best_of))
              if value is not None}
    return EvalConfig.model_validate({**eval_cfg.model_dump(), **update})


def _cmd_eval(args: argparse.Namespace) -> int:
    from training.eval import robust_gate, robust_no_speech_gate, run_eval

    cfg = _config(args)
    ecfg = eval_settings(cfg.eval, args)
    gate = no_speech = None
    if args.robust:
        gate = (args.logprob_gate.value if args.logprob_gate is not None
                else robust_gate(args.robust, cfg.export.robust_logprob_gate))
        no_speech = (args.no_speech_gate.value if args.no_speech_gate is not None
                     else robust_no_speech_gate(args.robust, cfg.export.robust_no_speech_gate))
    summary = run_eval(ecfg, args.base or cfg.sft.base_model, args.robust, args.router, args.threshold,
                       manifest=args.manifest, scenarios=args.scenarios, robust_logprob_gate=gate,
                       robust_no_speech_gate=no_speech)
    print(summary["markdown"] or json.dumps(summary["overall_degraded"], indent=2))
    print(f"written to {ecfg.out_dir}")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from service.models.bundle import BundleError
    from training.export import (
        ensemble_member_adapters,
        export_bundle,
        export_source,
        model_card,
        writing_destroys,
    )
    from training.export import router_summary as read_router_summary

    cfg = _config(args)
    members = args.ensemble_member or []
    for flag, source in (("--robust", args.robust), ("--router", args.router),
                         *(("--ensemble-member", m) for m in members)):
        if source and writing_destroys(args.out, source):
            raise BundleError(f"--out {args.out} is the {flag} folder, or inside or around it; export replaces its "
                              "--out folder, so write elsewhere and move it")
    source = export_source(args.robust)
    ensemble = [ensemble_member_adapters(m) for m in members]
    eval_summary = json.loads(Path(args.eval_summary).read_text()) if args.eval_summary else None
    router_summary = read_router_summary(args.router) if args.router else None
    threshold = args.threshold if args.threshold is not None else (router_summary or {}).get("threshold", 0.5)
    gate = cfg.export.robust_logprob_gate if args.logprob_gate is None else args.logprob_gate.value
    no_speech = cfg.export.robust_no_speech_gate if args.no_speech_gate is None else args.no_speech_gate.value
    recipe = cfg.model_dump()  # the card's recipe shows the gates the bundle really has (flags included)
    recipe["export"].update(robust_logprob_gate=gate, robust_no_speech_gate=no_speech)
    card = model_card(cfg.sft.base_model, recipe, eval_summary,
                      {k: v for k, v in (router_summary or {}).items() if k != "history"} or None,
                      stage=source.stage, ensemble_members=len(ensemble), ensemble_pick=args.ensemble_pick)
    bundle = export_bundle(args.out, cfg.sft.base_model, source.adapters,
                           None if args.no_merged else source.merged, args.router, float(threshold), card,
                           robust_logprob_gate=gate, robust_no_speech_gate=no_speech, ensemble=ensemble,
                           ensemble_pick=args.ensemble_pick)
    print(bundle)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``train`` (data, sft, rl, router), ``eval`` and ``export`` to the ``megaasr`` CLI."""
    from service.models.bundle import ENSEMBLE_PICKS  # light: the bundle format only

    train = subparsers.add_parser("train", help="robust LoRA training: data, A2S-SFT, DG-WGPO, router",
                                  description="Train the Mega-ASR robust adapter and router from a recipe TOML.")
    stages = train.add_subparsers(dest="train_stage", metavar="{data,sft,rl,router}")
    stages.required = True

    data = stages.add_parser("data", help="build train/val manifests: TTS + real speech -> 54 scenarios -> base WER")
    _add_config(data)
    _add_device(data, "data")
    data.add_argument("--regrade-from", metavar="BUILD",
                      help="do not render: grade BUILD's clips again with the recipe's grade model ([data].grade_model, "
                           "else [sft].base_model) and write the regraded build to [data].out_dir")
    data.set_defaults(func=_cmd_data)

    sft = stages.add_parser("sft", help="A2S-SFT: three LoRA phases (upper encoder, decoder, joint), merged between",
                            description="A2S-SFT. Multi-process: torchrun --nproc_per_node N -m service.cli train sft "
                                        "(gloo on the CPU; with --device cuda one GPU per process and NCCL; "
                                        "[sft].batch_size is the global batch).")
    _add_config(sft)
    _add_device(sft, "sft")
    sft.add_argument("--data", help="manifest folder (default: [data].out_dir)")
    sft.add_argument("--max-steps", type=int, help="stop each phase after this many steps (resume later)")
    sft.set_defaults(func=_cmd_sft)

    rl = stages.add_parser("rl", help="DG-WGPO: GRPO advantages + DAPO loss + dual-granularity reward")
    _add_config(rl)
    _add_device(rl, "rl")
    rl.add_argument("--data", help="manifest folder (default: [data].out_dir)")
    rl.add_argument("--steps", type=int, help="override [rl].steps")
    rl.set_defaults(func=_cmd_rl)

    router = stages.add_parser("router", help="audio-quality router: clean vs degraded, label-smoothed CE")
    _add_config(router)
    _add_device(router, "router")
    router.add_argument("--data", help="manifest folder (default: [data].out_dir)")
    router.set_defaults(func=_cmd_router)

    ev = subparsers.add_parser("eval", help="WER/CER, hallucination and omission: base vs robust vs routed",
                               description="Evaluate on the held-out eval prompts corrupted on the fly, or a manifest.")
    _add_config(ev)
    _add_device(ev, "eval")
    ev.add_argument("--manifest", help="evaluate this JSONL manifest instead of the on-the-fly eval split")
    ev.add_argument("--scenarios", help="scenario group/names for the on-the-fly split (default: [eval].scenarios)")
    ev.add_argument("--base", help="base model (default: [sft].base_model)")
    ev.add_argument("--robust", help="merged robust checkpoint folder or an exported bundle")
    ev.add_argument("--router", help="trained router folder (enables the routed system)")
    ev.add_argument("--threshold", type=float, help="router threshold (default: the one picked on validation)")
    ev.add_argument("--out", help="output folder (default: [eval].out_dir)")
    ev.add_argument("--seed", type=int, help="seed of the on-the-fly split: another draw of clips and severities "
                                             "(default: [eval].seed)")
    ev.add_argument("--clips-per-scenario", type=int,
                    help="degraded clips per scenario (default: [eval].clips_per_scenario)")
    ev.add_argument("--decode", choices=("served", "greedy"),
                    help="served: the service's default decode (greedy + temperature fallback); greedy: one greedy "
                         "pass, the protocol of rounds 1-4 (default: [eval].decode)")
    ev.add_argument("--beam-size", type=int, help="beam width of the temperature-0 pass for every system, as the "
                                               "service's --beam-size (default: [eval].beam_size, 1 = greedy)")
    ev.add_argument("--best-of", type=int, help="samples per window at each fallback temperature for every system, "
                                             "the most likely kept, as the service's --best-of (default: "
                                             "[eval].best_of, 1)")
    ev.add_argument("--logprob-gate", type=GateArg.parse, metavar="LOGPROB|none",
                    help="the robust system's confidence gate (default: the bundle's; for a checkpoint folder, "
                         "[export].robust_logprob_gate); 'none' decodes it without one")
    ev.add_argument("--no-speech-gate", type=GateArg.parse_probability, metavar="PROB|none",
                    help="skip a robust window whose base-model no-speech probability is above PROB (default: the "
                         "bundle's robust_no_speech_gate; for a checkpoint folder, [export].robust_no_speech_gate); "
                         "'none' decodes it without one")
    ev.set_defaults(func=_cmd_eval)

    ex = subparsers.add_parser("export", help="write a megaasr-bundle/1 folder for `megaasr serve --checkpoint`")
    _add_config(ex)
    ex.add_argument("--robust", required=True,
                    help="final merged checkpoint (sft/final or rl/final), or an exported bundle to write again "
                         "(its adapter, with new gates, router or card; no merged/)")
    ex.add_argument("--router", help="trained router folder")
    ex.add_argument("--threshold", type=float, help="router threshold (default: from router metrics)")
    ex.add_argument("--eval-summary", help="summary.json of `megaasr eval`, quoted in the model card")
    ex.add_argument("--no-merged", action="store_true", help="omit merged/ (adapter only)")
    ex.add_argument("--logprob-gate", type=GateArg.parse, metavar="LOGPROB|none",
                    help="robust_logprob_gate written into the bundle (default: [export].robust_logprob_gate)")
    ex.add_argument("--no-speech-gate", type=GateArg.parse_probability, metavar="PROB|none",
                    help="robust_no_speech_gate written into the bundle (default: [export].robust_no_speech_gate)")
    ex.add_argument("--ensemble-member", action="append", metavar="PATH",
                    help="a further robust adapter (training output, bundle, or a bundle's members/N; same base model) served beside "
                         "--robust as a ROVER ensemble (repeatable; docs/training.md, round 31)")
    ex.add_argument("--ensemble-pick", choices=ENSEMBLE_PICKS, default="vote",
                    help="how the ensemble's transcripts become one answer: their ROVER vote, or the candidate "
                         "the members find likeliest (docs/training.md, round 32)")
    ex.add_argument("--out", required=True, help="bundle folder to write (replaced)")
    ex.set_defaults(func=_cmd_export)
