"""``megaasr simulate``: build a dataset, render a demo, list scenarios, make manifests and noise banks.

The main ``megaasr`` CLI (service/cli.py) calls ``register(subparsers)``; the parser it adds sets
``func`` so the caller runs ``args.func(args)`` and gets an exit code. ``python -m simulation.cli``
runs the same command on its own.

    megaasr simulate --manifest clean.jsonl --out DIR [--workers N | --ray ADDRESS] ...
    megaasr simulate --demo input.wav --out DIR [--scenario S] [--severity 0.5]
    megaasr simulate list [--group doubles] [--json]
    megaasr simulate manifest {folder,librivox,asterisk} [SOURCE] -o clean.jsonl [--eval-split]
    megaasr simulate noise-bank -o DIR [--speech-manifest clean.jsonl]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from simulation.severity import MAPPINGS


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``simulate`` command to a parent CLI's subparsers."""
    p = subparsers.add_parser(
        "simulate",
        help="acoustic simulation: corrupt a manifest into a dataset, or render a demo page",
        description="Corrupt clean speech with the 54 Mega-ASR acoustic scenarios.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    _add_run_arguments(p)
    actions = p.add_subparsers(dest="simulate_action", metavar="{list,manifest,noise-bank}")
    actions.required = False

    ls = actions.add_parser("list", help="list the scenarios with their chains and parameter ranges")
    ls.add_argument("--group", default="all",
                    help="group, name or comma-separated names: singles, doubles, triples, quadruples, quintuples, all")
    ls.add_argument("--json", action="store_true", help="print the full JSON description")
    ls.set_defaults(func=_cmd_list)

    mf = actions.add_parser("manifest", help="write a clean-speech manifest (JSONL: path, text)")
    mf.add_argument("source", choices=["folder", "librivox", "asterisk"],
                    help="folder of wav+txt pairs, pocketsphinx-testdata LibriVox, or asterisk prompts")
    mf.add_argument("path", nargs="?", default=None,
                    help="the folder (for 'folder'), or a non-default install folder for the others")
    mf.add_argument("-o", "--output", required=True, help="manifest file to write")
    mf.add_argument("--eval-split", action="store_true",
                    help="asterisk: write only the evaluation prompts (excluded by default)")
    mf.add_argument("--reserved", default=None, help="asterisk: the reserved evaluation prompt list")
    mf.set_defaults(func=_cmd_manifest)

    nb = actions.add_parser("noise-bank", help="fill a noise-bank folder (sonic-pi CC0, coloured, babble)")
    nb.add_argument("-o", "--output", required=True, help="folder to fill")
    nb.add_argument("--speech-manifest", default=None,
                    help="manifest whose speech is mixed into babble (default: LibriVox + asterisk train)")
    nb.add_argument("--sample-rate", type=int, default=16000, help="sample rate of the written files")
    nb.add_argument("--seed", type=int, default=0, help="seed for generated noise and babble")
    nb.set_defaults(func=_cmd_noise_bank)
    p.set_defaults(func=_cmd_run)


def _add_run_arguments(p: argparse.ArgumentParser) -> None:
    what = p.add_mutually_exclusive_group()
    what.add_argument("--manifest", help="clean JSONL manifest (path, text) to corrupt into a dataset")
    what.add_argument("--demo", metavar="INPUT_WAV", help="render one file per scenario and an HTML page")
    p.add_argument("--out", help="output folder (dataset or demo)")
    p.add_argument("--scenario", default="all",
                   help="scenario pool: a group (singles..quintuples, all), names or public aliases, comma-separated")
    p.add_argument("--severity", type=float, default=None,
                   help="fixed global severity m in [0, 1] (dataset default: drawn per sample; demo default 0.5)")
    p.add_argument("--severity-mapping", choices=sorted(MAPPINGS), default="linear",
                   help="how a uniform draw becomes m when severity is drawn")
    p.add_argument("--seed", type=int, default=42, help="global seed: same seed, same dataset")
    p.add_argument("--workers", type=int, default=1, help="local worker processes (or CPUs for a local Ray)")
    p.add_argument("--ray", metavar="ADDRESS", default=None,
                   help="run on a Ray cluster ('auto', 'ray://host:10001', or 'local' for a local instance)")
    p.add_argument("--noise-bank", default=None,
                   help="folder of noise recordings (default: generated white/pink/brown noise)")
    p.add_argument("--reverb-engine", choices=["freeverb", "room"], default="freeverb",
                   help="algorithmic Freeverb (the paper) or a pyroomacoustics shoebox room")
    p.add_argument("--copies", type=int, default=1, help="corrupted copies per clean utterance")
    p.add_argument("--single-ratio", type=float, default=0.6, help="share of single-effect scenarios")
    p.add_argument("--important-ratio", type=float, default=0.24,
                   help="share of the four important doubles (the rest goes to the other 43)")
    p.add_argument("--sample-rate", type=int, default=None, help="resample inputs to this rate first")
    p.add_argument("--language", default="en", help="language tag used in the 'subset' field")
    p.add_argument("--shard-size", type=int, default=32, help="rows per committed shard (resume granularity)")
    p.add_argument("--on-error", choices=["skip", "fail"], default="skip",
                   help="bad manifest lines: report and skip, or report and stop before writing")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.manifest is None and args.demo is None:
        print("simulate: give --manifest M --out DIR, --demo INPUT.wav --out DIR, or a subcommand "
              "(list, manifest, noise-bank); see --help", file=sys.stderr)
        return 2
    if not args.out:
        print("simulate: --out is required", file=sys.stderr)
        return 2
    if args.demo:
        from simulation.demo import make_demo

        page = make_demo(args.demo, args.out, args.scenario, 0.5 if args.severity is None else args.severity,
                         args.seed, args.noise_bank, args.reverb_engine)
        print(f"demo written: {page}")
        return 0
    from simulation.builder import BuildConfig, DiskFull, build_dataset
    from simulation.manifests import ManifestError

    config = BuildConfig(
        seed=args.seed, scenarios=args.scenario, single_ratio=args.single_ratio,
        important_ratio=args.important_ratio, copies=args.copies, severity=args.severity,
        severity_mapping=args.severity_mapping, noise_bank=args.noise_bank,
        reverb_engine=args.reverb_engine, sample_rate=args.sample_rate, language=args.language,
        shard_size=args.shard_size,
    )
    try:
        report = build_dataset(args.manifest, args.out, config, workers=args.workers, on_error=args.on_error,
                               ray_address=args.ray, progress=not args.no_progress)
    except (ManifestError, DiskFull) as exc:
        print(f"simulate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    print(f"{report.rows} rows in {Path(args.out) / 'manifest.jsonl'} "
          f"({report.shards_done_before} shards resumed, {report.shards_done_now} done now, "
          f"{len(report.skipped_lines)} bad lines skipped, {len(report.failed_rows)} rows failed)")
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from simulation.scenarios import list_scenarios

    listing = list_scenarios(args.group)
    if args.json:
        print(json.dumps(listing, indent=1))
        return 0
    for s in listing:
        chain = " → ".join(f"{st['effect']}.{st['primitive']}" for st in s["chain"])
        print(f"{s['group']:<11} {s['name']:<47} {s['public_name']:<45} {chain}")
    return 0


def _cmd_manifest(args: argparse.Namespace) -> int:
    from simulation import manifests

    if args.source == "folder":
        if not args.path:
            print("simulate manifest folder: give the folder", file=sys.stderr)
            return 2
        rows = manifests.from_folder(args.path)
    elif args.source == "librivox":
        rows = manifests.from_librivox(args.path or manifests.LIBRIVOX_DIR)
    else:
        rows = manifests.from_asterisk(
            "eval" if args.eval_split else "train", args.path or manifests.ASTERISK_DIR,
            reserved=args.reserved or manifests.RESERVED_PROMPTS)
    n = manifests.write_manifest(rows, args.output)
    print(f"{n} rows written to {args.output}")
    return 0


def _cmd_noise_bank(args: argparse.Namespace) -> int:
    from simulation import manifests
    from simulation.noise_bank import build_noise_bank

    if args.speech_manifest:
        entries, _ = manifests.read_manifest(args.speech_manifest)
        speech = [e.path for e in entries]
    else:
        speech = []
        for make in (manifests.from_librivox, manifests.from_asterisk):
            try:
                speech += [r["path"] for r in make()]
            except ValueError:
                pass
    counts = build_noise_bank(args.output, args.sample_rate, speech, seed=args.seed)
    print(f"noise bank in {args.output}: {counts}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry point: ``python -m simulation.cli simulate ...``."""
    parser = argparse.ArgumentParser(prog="megaasr")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
