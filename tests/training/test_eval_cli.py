"""``megaasr eval``'s overrides: another seeded draw and more clips per scenario, validated like the recipe."""

from __future__ import annotations

import argparse

import pytest
from pydantic import ValidationError

from training.cli import eval_settings, register
from training.config import DEFAULT_CONFIG, load_config


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["eval", "--config", str(DEFAULT_CONFIG), *argv])


def test_overrides_replace_only_what_is_given():
    recipe = load_config(DEFAULT_CONFIG).eval
    assert eval_settings(recipe, _parse()) == recipe
    fresh = eval_settings(recipe, _parse("--seed", "77", "--clips-per-scenario", "4", "--out", "runs/x"))
    assert (fresh.seed, fresh.clips_per_scenario, fresh.out_dir) == (77, 4, "runs/x")
    assert fresh.model_dump(exclude={"seed", "clips_per_scenario", "out_dir"}) == \
        recipe.model_dump(exclude={"seed", "clips_per_scenario", "out_dir"})


def test_zero_clips_per_scenario_is_refused():
    with pytest.raises(ValidationError, match="clips_per_scenario"):
        eval_settings(load_config(DEFAULT_CONFIG).eval, _parse("--clips-per-scenario", "0"))


def test_decode_defaults_to_the_served_path_and_greedy_is_an_override():
    recipe = load_config(DEFAULT_CONFIG).eval
    assert recipe.decode == "served"
    assert eval_settings(recipe, _parse("--decode", "greedy")).decode == "greedy"
    with pytest.raises(SystemExit):
        _parse("--decode", "beam")


def test_logprob_gate_is_a_log_probability_or_none(tmp_path):
    from training.cli import GateArg
    from training.eval import robust_gate

    assert _parse().logprob_gate is None  # not given: the bundle's (or the recipe's) gate
    assert _parse("--logprob-gate", "-1.5").logprob_gate == GateArg(-1.5)
    assert _parse("--logprob-gate", "none").logprob_gate == GateArg(None)
    for bad in ("0.5", "loud"):
        with pytest.raises(SystemExit):
            _parse("--logprob-gate", bad)
    assert load_config(DEFAULT_CONFIG).export.robust_logprob_gate is None  # off: it cost WER (round 7)
    assert robust_gate(str(tmp_path), -1.0) == -1.0  # a checkpoint folder: the recipe's export value


def test_no_speech_gate_is_a_probability_or_none(tmp_path):
    from training.cli import GateArg
    from training.eval import robust_no_speech_gate

    assert _parse().no_speech_gate is None  # not given: the bundle's (or the recipe's) gate
    assert _parse("--no-speech-gate", "0.8").no_speech_gate == GateArg(0.8)
    assert _parse("--no-speech-gate", "none").no_speech_gate == GateArg(None)
    for bad in ("0", "1", "-0.5", "1.2", "loud"):
        with pytest.raises(SystemExit):
            _parse("--no-speech-gate", bad)
    assert load_config(DEFAULT_CONFIG).export.robust_no_speech_gate is None
    assert robust_no_speech_gate(str(tmp_path), 0.7) == 0.7  # a checkpoint folder: the recipe's export value


def test_beam_and_best_of_are_validated_overrides():
    recipe = load_config(DEFAULT_CONFIG).eval
    assert (recipe.beam_size, recipe.best_of) == (1, 1)
    both = eval_settings(recipe, _parse("--beam-size", "5", "--best-of", "5"))
    assert (both.beam_size, both.best_of) == (5, 5)
    for flag in ("--beam-size", "--best-of"):
        with pytest.raises(ValidationError):
            eval_settings(recipe, _parse(flag, "0"))
