"""``megaasr bench``: the standard side-by-side benchmark set (and the simulation speed benchmark).

The main CLI (service/cli.py) imports this module and calls :func:`register`; the parser it adds
sets ``func``, which returns an exit code. ``python -m benchmarks.cli`` runs the same command alone.

    megaasr bench                    # latency, throughput, streaming vs faster-whisper (~15 min)
    megaasr bench --quick            # a short smoke run
    megaasr bench --sections latency --compute-types int8
    megaasr bench simulation [--quick]   # benchmarks/simulation_speed.py
"""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bench`` to a parent CLI's subparsers."""
    from benchmarks.asr_speed import add_arguments

    p = subparsers.add_parser(
        "bench", help="Benchmark the embedded engine against faster-whisper (latency, throughput, streaming, WER).",
        description="Measure ours and faster-whisper side by side on the same machine, audio and weights; "
                    "writes benchmarks/results/asr_speed.json and .md.")
    add_arguments(p)
    p.set_defaults(func=_cmd_bench)
    actions = p.add_subparsers(dest="bench_action", metavar="{simulation}")
    actions.required = False
    sim = actions.add_parser("simulation", help="simulation speed vs audiomentations (benchmarks/simulation_speed.py)")
    sim.add_argument("--quick", action="store_true", help="one severity and one seed")
    sim.set_defaults(func=_cmd_simulation)


def _cmd_bench(args: argparse.Namespace) -> int:
    from benchmarks.asr_speed import run_from_args

    run_from_args(args)
    return 0


def _cmd_simulation(args: argparse.Namespace) -> int:
    import subprocess
    from pathlib import Path

    script = Path(__file__).resolve().parent / "simulation_speed.py"
    command = [sys.executable, str(script)] + (["--quick"] if args.quick else [])
    # Its own process: it pins itself to one core and one thread per math library at import time.
    return subprocess.run(command, check=False).returncode


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="megaasr")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
