"""The benchmark harness: its speech sets, report and CLI wiring (no timing is asserted)."""

from __future__ import annotations

import argparse
import io
import os
from pathlib import Path

import numpy as np
import soundfile as sf

from benchmarks import asr_speed
from benchmarks.procs import PeakRss
from benchmarks.speech import SAMPLE_RATE, clips


def test_clips_are_real_speech_of_the_asked_length_and_deterministic() -> None:
    for seconds in (3, 10, 30):
        made = clips(seconds, 3)
        for clip in made:
            assert 0.5 * seconds <= clip.seconds <= seconds + 0.01, (seconds, clip.seconds)
            assert clip.reference.strip() and "(" not in clip.reference
            assert np.abs(clip.audio).max() > 0.01
        again = clips(seconds, 3)
        assert [c.reference for c in again] == [c.reference for c in made]
        assert all(np.array_equal(a.audio, b.audio) for a, b in zip(again, made))


def test_wav_upload_round_trips() -> None:
    clip = clips(3, 1)[0]
    audio, sr = sf.read(io.BytesIO(clip.wav_bytes()), dtype="float32")
    assert sr == SAMPLE_RATE and len(audio) == len(clip.audio)
    assert np.abs(audio - clip.audio).max() < 1e-3


def test_peak_rss_samples_a_process() -> None:
    sampler = PeakRss(os.getpid(), interval=0.01)
    _ = np.ones(8_000_000)  # 64 MB touched
    import time

    time.sleep(0.1)
    assert sampler.stop() > 50 * 2**20


def _fake_result() -> dict:
    row = {"clips": 2, "audio_s": 6.0, "ours": {"rtf": 0.1, "wer": 5.0}, "theirs": {"rtf": 0.1, "wer": 4.0},
           "rtf_ratio": 1.0, "cpu_ratio": 1.1, "wer_diff_points": 1.0}
    tp = {"requests": 32, "audio_s": 300.0, "ours": {"audio_s_per_s": 30.0, "wer": 3.0},
          "theirs": {"audio_s_per_s": 15.0, "wer": 3.0}, "throughput_ratio": 2.0, "wer_diff_points": 0.0}
    return {"created": "now", "loadavg_start": [1.0], "loadavg_end": [1.0],
            "machine": {"cpu": "cpu", "logical_cores": 2, "memory_gib": 24, "torch": "t", "transformers": "t",
                        "ctranslate2": "c", "faster_whisper": "f"},
            "config": {"model": "whisper-tiny.en", "threads": 2, "quick": True},
            "latency": {"float32": {"3s": row, "peak_rss_mib": {"ours": 1.0, "theirs": 1.0}}},
            "throughput": {"float32": {"c16": tp, "peak_rss_mib": {"ours": 1.0, "theirs": 1.0}}},
            "streaming": {"max_first_partial_s": 1.6, "median_first_partial_s": 1.2, "median_end_to_final_s": 0.9,
                          "vad_silence_ms": 500, "wer": 2.0, "peak_rss_mib": 1.0}}


def test_targets_judge_each_bound() -> None:
    result = _fake_result()
    got = asr_speed.targets(result)
    assert got["rtf_ratio_float32_3s"]["met"]
    assert not got["wer_diff_float32_3s"]["met"]  # 1.0 point worse than faster-whisper
    assert got["throughput_ratio_float32_c16"]["met"]
    assert not got["first_partial_s"]["met"]  # the slowest run counts
    result["targets"] = got
    text = asr_speed.markdown(result)
    assert "| float32 | 3s |" in text and "**no**" in text


def test_bench_registers_with_the_cli() -> None:
    from benchmarks.cli import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--quick", "--compute-types", "int8"])
    assert args.quick and args.compute_types == "int8" and callable(args.func)
    sim = parser.parse_args(["bench", "simulation", "--quick"])
    assert sim.func.__name__ == "_cmd_simulation"
    from service.cli import build_parser

    assert build_parser().parse_args(["bench", "--quick"]).quick


def test_beam_and_best_of_reach_both_systems_alike() -> None:
    """``--beam-size 5 --best-of 5`` is what faster-whisper is given and what ``megaasr serve`` reads."""
    from benchmarks.cli import register
    from benchmarks.fw_server import GREEDY, Decoding, transcribe_options
    from service.cli import _add_settings_flags, settings_from_args

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["bench", "--beam-size", "5", "--best-of", "4"])
    decoding = Decoding(args.beam_size, args.best_of)
    theirs = transcribe_options("en", decoding)
    assert (theirs["beam_size"], theirs["best_of"]) == (5, 4)
    assert (transcribe_options("en")["beam_size"], transcribe_options("en")["best_of"]) == (1, 1)
    serve = argparse.ArgumentParser()
    _add_settings_flags(serve)
    ours = settings_from_args(serve.parse_args(decoding.flags()))
    assert (ours.beam_size, ours.best_of) == (5, 4)
    assert decoding != GREEDY and "width 5" in decoding.describe()


def test_a_missing_peer_stops_the_run_with_the_install_command_before_any_work(monkeypatch) -> None:
    import importlib.util

    import pytest

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "faster_whisper" else real(name, *a))
    monkeypatch.setattr(asr_speed, "run", lambda **kw: pytest.fail("the run started without its peer"))
    parser = argparse.ArgumentParser()
    asr_speed.add_arguments(parser)
    with pytest.raises(SystemExit, match=r"faster_whisper .*pip install -e '\.\[bench\]'"):
        asr_speed.run_from_args(parser.parse_args(["--quick"]))


def test_the_ensemble_benchmark_refuses_a_bundle_without_members(capsys) -> None:
    """A bundle with one robust adapter has nothing to compare: a one-line error before any model loads."""
    import pytest

    from benchmarks.robust_ensemble import main

    with pytest.raises(SystemExit) as stop:
        main(["--checkpoint", str(Path(__file__).resolve().parents[2] / "checkpoints" / "whisper-tiny.en-robust")])
    assert stop.value.code == 2 and "has no robust ensemble" in capsys.readouterr().err


def test_save_results_names_the_beam_and_keeps_the_run_settings(tmp_path, monkeypatch, capsys) -> None:
    import argparse
    import json

    import benchmarks.no_speech_gate as bench

    monkeypatch.setattr(bench, "RESULTS", tmp_path)
    args = argparse.Namespace(checkpoint="ck", beam_size=5, threads=2, repeats=3)
    bench.save_results("thing", args, 0.7, {"row": {"ratio": 2.5}}, "A against B", "| t |\n")
    saved = json.loads((tmp_path / "thing_beam5.json").read_text())
    assert saved["row"] == {"ratio": 2.5} and saved["meta"]["gate"] == 0.7 and saved["meta"]["repeats"] == 3
    text = (tmp_path / "thing_beam5.md").read_text()
    assert text.startswith("A against B, ") and "beam 5, 2 threads, median of 3\n\n| t |" in text
    assert "| t |" in capsys.readouterr().out
    bench.save_results("thing", argparse.Namespace(**{**vars(args), "beam_size": 1}), None, {}, "x", "")
    assert (tmp_path / "thing.json").exists()
