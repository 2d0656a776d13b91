"""The ``megaasr`` command. Each package contributes subcommands, imported lazily.

``serve`` flags are generated from :class:`service.config.Settings`, so every setting is both a
``--flag`` and a ``MEGAASR_*`` environment variable, with the same help text.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

from service.config import Settings

#: (module, description) of subcommand groups that register themselves when importable.
PLUGINS = (
    ("service.models.cli", "models"),
    ("simulation.cli", "simulate"),
    ("training.cli", "train/eval/export"),
    ("service.stress_cli", "stress"),
    ("benchmarks.cli", "bench"),
)


def _add_settings_flags(parser: argparse.ArgumentParser, only: tuple[str, ...] | None = None) -> None:
    for name, field in Settings.model_fields.items():
        if only is not None and name not in only:
            continue
        flag = "--" + name.replace("_", "-")
        default = field.default if field.default_factory is None else "(computed)"
        help_text = f"{field.description or ''} [env MEGAASR_{name.upper()}; default {default}]"
        annotation = str(field.annotation)
        if "list" in annotation:
            parser.add_argument(flag, dest=name, nargs="*", default=None, help=help_text)
        else:
            parser.add_argument(flag, dest=name, default=None, help=help_text)


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment first, then only the flags the user actually gave."""
    overrides: dict[str, Any] = {k: v for k, v in vars(args).items() if k in Settings.model_fields and v is not None}
    return Settings(**overrides)


def _cmd_serve(args: argparse.Namespace) -> int:
    import logging

    from service.api.app import create_app
    from service.api.lifecycle import serve

    settings = settings_from_args(args)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _prepare_model(settings)
    app = create_app(settings)
    # Not uvicorn.run: SIGTERM drains in-flight work first (service/api/lifecycle.py).
    serve(app, host=settings.host, port=settings.port, log_level="info")
    return 0


def _prepare_model(settings: Settings) -> None:
    """Pull and convert the model before binding the port, so the first start shows progress."""
    from service.engines.factory import served_model
    from service.models.registry import resolve

    model, _ = served_model(settings)
    resolve(model, home=settings.home, pull_if_missing=True)


def _cmd_transcribe(args: argparse.Namespace) -> int:
    import asyncio
    import json
    from pathlib import Path

    from service.api import formatters
    from service.audio import decode_audio
    from service.engines.base import TranscriptionOptions
    from service.engines.factory import build_engine
    from service.errors import ServiceError

    settings = settings_from_args(args)

    async def run() -> int:
        engine = build_engine(settings)
        await engine.start()
        status = 0
        try:
            for name in args.files:
                try:
                    audio = decode_audio(Path(name).read_bytes(), max_duration_s=settings.max_duration_s)
                    opts = TranscriptionOptions(language=args.language)
                    result = (await engine.transcribe([audio.samples], [opts]))[0]
                except (OSError, ServiceError) as exc:
                    print(f"{name}: error: {exc}", file=sys.stderr)
                    status = 1
                    continue
                if args.format == "text":
                    out = result.text
                elif args.format == "srt":
                    out = formatters.to_srt(result)
                elif args.format == "vtt":
                    out = formatters.to_vtt(result)
                else:
                    out = json.dumps(formatters.to_verbose_json(result, "transcribe").model_dump(), indent=2)
                print(out if len(args.files) == 1 or args.format != "text" else f"{name}: {out}")
        finally:
            await engine.close()
        return status

    return asyncio.run(run())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="megaasr", description="Mega-ASR: robust speech recognition service.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    serve = sub.add_parser("serve", help="Run the HTTP/websocket service.",
                           description="Run the OpenAI-compatible transcription service.")
    _add_settings_flags(serve)
    serve.set_defaults(func=_cmd_serve)

    tr = sub.add_parser("transcribe", help="Transcribe audio files locally (no server).")
    tr.add_argument("files", nargs="+", metavar="FILE", help="Audio files (wav, flac, ogg, mp3).")
    tr.add_argument("--language", default=None, help="ISO-639-1 code; detected when omitted.")
    tr.add_argument("--format", choices=("text", "json", "srt", "vtt"), default="text", help="Output format.")
    _add_settings_flags(tr, only=("model", "home", "threads", "compute_type", "device", "max_duration_s"))
    tr.set_defaults(func=_cmd_transcribe)

    for module, _ in PLUGINS:
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and (exc.name == module or module.startswith(exc.name + ".")):
                continue  # that feature is not part of this build
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from pydantic import ValidationError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ValidationError as exc:
        for err in exc.errors():
            where = ".".join(str(p) for p in err.get("loc", ()))
            name = f" --{where.replace('_', '-')}" if where else "s"
            print(f"megaasr: invalid setting{name}: {err.get('msg')}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # clear one-line messages for the errors users can fix
        from service.models.bundle import BundleError
        from service.models.registry import ModelRegistryError

        if isinstance(exc, (ModelRegistryError, BundleError)):
            print(f"megaasr: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
