"""``megaasr stress FILE --server URL``: run a stress job on a server and print the ranked table.

The main CLI (service/cli.py) imports this module and calls :func:`register`. The command posts
the file to ``/v1/stress``, shows a progress bar while polling the job, then prints every cell
(scenario, severity, WER per path, flags, router choice) worst first. Ctrl-C cancels the job on
the server. Exit codes: 0 completed, 1 the job failed or was cancelled, 2 the server refused the
request (the message says why).

    megaasr stress speech.wav --server http://127.0.0.1:8000 --scenarios singles --severities 0.5,1
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

_FINAL = ("completed", "cancelled", "failed", "interrupted")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``stress`` to the parent CLI."""
    p = subparsers.add_parser(
        "stress", help="Probe a server's robustness on your audio with simulated acoustic scenarios.",
        description="Run a stress job (POST /v1/stress) and print the results, worst first.")
    p.add_argument("file", metavar="FILE", type=Path, help="Audio file (wav, flac, ogg, mp3).")
    p.add_argument("--server", required=True, help="Base URL of the service, e.g. http://127.0.0.1:8000.")
    p.add_argument("--reference", default=None,
                   help="What is said in FILE; without it the clean transcript is the reference.")
    p.add_argument("--scenarios", nargs="+", default=None,
                   help="Scenario names, aliases or a group (singles ... quintuples, all). Default: all.")
    p.add_argument("--severities", nargs="+", default=None,
                   help="Values in [0, 1]. Default: 0.25 0.5 0.75 1.")
    p.add_argument("--seed", type=int, default=0, help="Simulator seed (same seed: same clips).")
    p.add_argument("--model", default=None, help="Served model id (default: the served model).")
    p.add_argument("--router", default="auto", choices=("auto", "base", "robust"),
                   help="auto compares every loaded path; base or robust restrict it.")
    p.add_argument("--language", default=None, help="ISO-639-1 code; detected when omitted.")
    p.add_argument("--api-key", default=os.environ.get("MEGAASR_API_KEY"),
                   help="Bearer token, if the server needs one [env MEGAASR_API_KEY].")
    p.add_argument("--html", type=Path, default=None, help="Also save the HTML report here.")
    p.add_argument("--json", type=Path, default=None, help="Also save the job's JSON here.")
    p.add_argument("--poll", type=float, default=1.0, help="Seconds between progress polls.")
    p.set_defaults(func=_cmd_stress)


def _cmd_stress(args: argparse.Namespace) -> int:
    return run(args, Console())


def run(args: argparse.Namespace, console: Console) -> int:
    """Drive one job from upload to table; separated from argparse so tests can pass a console."""
    headers = {"Authorization": f"Bearer {args.api_key}"} if args.api_key else {}
    base = args.server.rstrip("/")
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        console.print(f"[red]megaasr stress: cannot read {args.file}: {exc.strerror or exc}[/red]")
        return 2
    with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
        try:
            job_id = _submit(client, args, data)
            if job_id is None:
                return 2
            try:
                job = _follow(client, job_id, args.poll, console)
            except KeyboardInterrupt:
                client.delete(f"/v1/stress/{job_id}")
                console.print(f"[yellow]Cancelled job {job_id}.[/yellow]")
                return 130
            _save_outputs(client, job, args, console)
        except httpx.HTTPError as exc:
            console.print(f"[red]megaasr stress: cannot reach {base}: {exc}[/red]")
            return 2
    print_results(job, console)
    return 0 if job["status"] == "completed" else 1


def _submit(client: httpx.Client, args: argparse.Namespace, data: bytes) -> str | None:
    form: dict[str, str | list[str]] = {"seed": str(args.seed), "router": args.router}
    for key in ("reference", "model", "language"):
        if getattr(args, key):
            form[key] = getattr(args, key)
    if args.scenarios:
        form["scenarios"] = args.scenarios
    if args.severities:
        form["severities"] = args.severities
    r = client.post("/v1/stress", data=form, files={"file": (args.file.name, data)})
    if r.status_code != 202:
        print(f"megaasr stress: the server refused the job ({r.status_code}): {_error_message(r)}",
              file=sys.stderr)
        return None
    return r.json()["id"]


def _error_message(r: httpx.Response) -> str:
    try:
        return r.json()["error"]["message"]
    except (ValueError, KeyError, TypeError):
        return r.text[:300]


def _follow(client: httpx.Client, job_id: str, poll: float, console: Console) -> dict:
    """Poll until the job ends, with a progress bar on a terminal (plain lines otherwise)."""
    columns = (TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(f"stress {job_id[:15]}", total=None)
        while True:
            r = client.get(f"/v1/stress/{job_id}")
            r.raise_for_status()
            job = r.json()
            bar.update(task, total=job["progress"]["total"], completed=job["progress"]["done"],
                       description=f"{job['status']:>9}")
            if job["status"] in _FINAL:
                return job
            time.sleep(poll)


def _save_outputs(client: httpx.Client, job: dict, args: argparse.Namespace, console: Console) -> None:
    if args.json is not None:
        import json

        args.json.write_text(json.dumps(job, indent=2))
        console.print(f"JSON saved to {args.json}")
    if args.html is not None:
        r = client.get(f"/v1/stress/{job['id']}/report.html")
        r.raise_for_status()
        args.html.write_text(r.text)
        console.print(f"HTML report saved to {args.html}")


def print_results(job: dict, console: Console) -> None:
    """Every cell, worst base WER first, then the per-scenario ranking's top line and the job's note."""
    paths = job["request"]["paths"]
    table = Table(title=f"Stress job {job['id']} — {job['status']}", show_lines=False)
    table.add_column("scenario")
    table.add_column("severity", justify="right")
    for path in paths:
        table.add_column(f"WER {path}", justify="right")
    table.add_column("flags")
    table.add_column("router")
    cells = sorted(job["results"], key=lambda c: -c["paths"]["base"]["wer"])
    for cell in cells:
        flags = sorted({f"{name}:{p}" for p, r in cell["paths"].items()
                        for name in ("hallucination", "omission") if r[name]})
        route = cell["paths"].get("routed", cell["paths"]["base"])["router"]
        prob = f" p={route['p_degraded']:.2f}" if route.get("p_degraded") is not None else ""
        wers = (f"{100 * cell['paths'][p]['wer']:.1f}%" if p in cell["paths"] else "-" for p in paths)
        table.add_row(cell["public_name"], f"{cell['severity']:g}", *wers, ", ".join(flags),
                      f"{route['adapter']}{prob}")
    console.print(table)
    if job.get("clean"):
        clean = ", ".join(f"{p} {100 * r['wer']:.1f}%" for p, r in job["clean"]["paths"].items())
        console.print(f"Clean audio WER: {clean}")
    if job["request"]["reference_source"] == "clean_transcript":
        console.print("No reference was given: WER is measured against the clean audio's transcript.")
    if job.get("error"):
        console.print(f"[yellow]{job['error']}[/yellow]")
