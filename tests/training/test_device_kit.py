"""The device kit: the GPU recipe reads only what the kit carries, and the device scripts fail clearly.

The kit itself (wheels from PyPI, flite speech, the model archive) is built by hand before a GPU run
(`python scripts/device_kit.py`); docs/training.md records the CPU emulation of both device calls.
"""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest

from training.config import DataConfig, EvalConfig, load_config

ROOT = Path(__file__).resolve().parents[2]
GPU_RECIPE = ROOT / "training/configs/tiny-en-gpu.toml"


def _kit_module():
    spec = importlib.util.spec_from_file_location("device_kit", ROOT / "scripts/device_kit.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _path_fields(section) -> dict[str, str]:
    """The settings whose default is a file or folder of this machine (a Debian package or the shared data)."""
    return {k: getattr(section, k) for k, field in type(section).model_fields.items()
            if isinstance(field.default, str) and field.default.startswith("/")}


GPU_RECIPES = sorted((ROOT / "training/configs").glob("*-gpu*.toml"))


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=[p.stem for p in GPU_RECIPES])
def test_the_gpu_recipe_reads_only_from_the_kit(recipe):
    """A bare GPU machine has no Debian packages: every source path of the recipe points into .gpu/data."""
    cfg = load_config(recipe)
    assert all(p.startswith(".gpu/data/texts/") for p in cfg.data.extra_texts), cfg.data.extra_texts
    fields = _path_fields(cfg.data) | {f"eval.{k}": v for k, v in _path_fields(cfg.eval).items()}
    assert len(fields) == 8
    assert all(v.startswith(".gpu/data/") for v in fields.values()), fields
    assert cfg.router.real_clean_train == []  # not carried: the run evaluates with the shipped router
    assert cfg.data.workers > 1 and cfg.sft.batch_size > load_config(ROOT / "training/configs/tiny-en.toml").sft.batch_size


@pytest.mark.parametrize("recipe", GPU_RECIPES, ids=[p.stem for p in GPU_RECIPES])
def test_the_gpu_recipe_grades_with_the_model_the_kit_carries(recipe):
    """The kit carries one model, the recipe's base model: `train data` there grades its clips with it."""
    cfg = load_config(recipe)
    assert cfg.data.grade_model in (None, cfg.sft.base_model)
    assert _kit_module().kit_models(cfg) == [cfg.sft.base_model]


def test_the_kit_builder_refuses_a_recipe_that_grades_with_another_model():
    cfg = load_config(ROOT / "training/configs/base-gpu.toml")
    tiny_graded = cfg.model_copy(update={"data": cfg.data.model_copy(update={"grade_model": "whisper-tiny.en"})})
    with pytest.raises(SystemExit, match="grade_model"):
        _kit_module().kit_models(tiny_graded)


def test_the_kit_builder_maps_every_kit_path_back_to_this_machine():
    kit = _kit_module()
    cfg = load_config(GPU_RECIPE)
    mapped = kit.system_config(cfg.data)
    for name, value in _path_fields(mapped).items():
        assert value == kit.SYSTEM_PATHS[name] and not value.startswith(".gpu"), name
    # The data settings that decide the plan are untouched, so the kit renders exactly the recipe's utterances.
    same = {k for k in DataConfig.model_fields if k not in kit.SYSTEM_PATHS}
    assert {k: getattr(mapped, k) for k in same} == {k: getattr(cfg.data, k) for k in same}
    assert set(_path_fields(EvalConfig())) <= set(kit.SYSTEM_PATHS)


def test_the_kit_carries_the_distributions_the_gpu_image_lacks():
    """Each top-level import of the training code that the GPU image lacks has a wheel in the kit."""
    kit = _kit_module()
    wheels = {w.lower().replace("-", "_") for w in kit.WHEELS}
    for module in ("pydantic", "pydantic_settings", "jiwer", "soundfile", "soxr", "pyloudnorm",
                   "whisper_normalizer", "fastapi", "uvicorn"):
        assert module in wheels, module


@pytest.mark.parametrize("script", ["device_stage1.sh", "device_train.sh"])
def test_device_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "scripts" / script)], check=True)


def test_call_two_without_call_one_says_so(tmp_path):
    """If the machine was given back between the calls, call 2 stops at once with the reason (exit 2)."""
    result = subprocess.run(["bash", str(ROOT / "scripts/device_train.sh")], capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "KIT_STAGE": str(tmp_path / "none"),
                                 "OUT": str(tmp_path / "out")}, timeout=60, check=False)
    assert result.returncode == 2
    assert "call 1 (scripts/device_stage1.sh) did not run on this machine" in result.stdout + result.stderr


def test_without_flite_the_training_tests_speak_from_a_built_manifest(tmp_path, monkeypatch, librivox):
    """On the GPU machine (no flite) the CUDA tests take the shortest clean flite rows of the run's manifest."""
    from tests.training.helpers import RECORDED_SPEECH_ENV, SENTENCES, spoken_rows, write_jsonl

    rows = [{"id": f"tts-slt-{i}", "scenario": "clean", "speaker": "flite-slt", "audio": str(path), "text": text}
            for i, (path, text) in enumerate(librivox)]
    rows += [{"id": "tts-slt-x@8k", "scenario": "clean", "speaker": "flite-slt", "audio": "none", "text": "a"},
             {"id": "tts-awb-0", "scenario": "clean", "speaker": "flite-awb", "audio": "none", "text": "b"}]
    manifest = write_jsonl(rows, tmp_path / "train.jsonl")
    monkeypatch.setenv(RECORDED_SPEECH_ENV, str(manifest))
    spoken = spoken_rows(tmp_path)
    shortest = sorted(librivox, key=lambda p: len(p[1]))[:len(SENTENCES)]
    assert [r["text"] for r in spoken] == [text for _, text in shortest]
    assert all(r["speech_end"] > 0 for r in spoken)
    with pytest.raises(ValueError, match="fewer than"):
        spoken_rows(tmp_path, voices=("awb",))


def test_two_parts_while_the_noise_keeps_its_floor_then_as_many_as_the_model_needs():
    """The kit stays at 2 calls while it can; a grown working tree costs noise first, then one more part."""
    kit = _kit_module()
    mb = 1_000_000
    budget, archive, first, last = 46 * mb, 68 * mb, 8 * mb, 12 * mb
    noise, slices = kit.plan_parts(archive, first, last, budget)
    assert noise == kit.NOISE_MAX_BYTES and len(slices) == 2 and sum(slices) == archive
    assert slices[0] == budget - first and slices[1] + last + noise <= budget
    # 1.3 MB less room per part: 2 parts still, with less noise (what the room allows).
    noise, slices = kit.plan_parts(archive, first, last, budget - 1_300_000)
    assert kit.NOISE_MIN_BYTES <= noise < kit.NOISE_MAX_BYTES and len(slices) == 2
    assert slices[1] + last + noise + kit.NOISE_SAFETY == budget - 1_300_000
    # Under the noise floor: 3 parts, and the noise gets its full size back.
    noise, slices = kit.plan_parts(archive, first, last, budget - 2_500_000)
    assert noise == kit.NOISE_MAX_BYTES and len(slices) == 3 and sum(slices) == archive
    assert all(s <= budget - 2_500_000 for s in slices)
    with pytest.raises(SystemExit, match="does not fit"):
        kit.plan_parts(archive, first, budget, budget)


def test_a_later_stage_call_without_call_one_says_so(tmp_path):
    """Slice K>1 staged on a machine that lost call 1's stage: exit 2 and the reason, nothing staged."""
    part = tmp_path / ".gpu" / "part2"
    part.mkdir(parents=True)
    (part / "payload.2").write_bytes(b"slice")
    result = subprocess.run(["bash", str(ROOT / "scripts/device_stage1.sh"), str(part)], capture_output=True,
                            text=True, env={"PATH": "/usr/bin:/bin", "KIT_STAGE": str(tmp_path / "stage"),
                                            "OUT": str(tmp_path / "out")}, timeout=60, check=False)
    assert result.returncode == 2
    assert "call 1 (scripts/device_stage1.sh) did not run on this machine" in result.stderr
    assert not (tmp_path / "stage" / "payload.2").exists()


def test_reusing_data_that_is_not_there_says_so(tmp_path):
    """REUSE_DATA=1 (a later call training more variants on an earlier call's clips) needs those clips."""
    import sys

    result = subprocess.run(["bash", str(ROOT / "scripts/device_train.sh"), str(GPU_RECIPE)],
                            capture_output=True, text=True, timeout=120, check=False,
                            env={"PATH": "/usr/bin:/bin", "PY": sys.executable, "REUSE_DATA": "1",
                                 "KIT_WHEELS": "skip", "KIT_STAGE": str(tmp_path / "none"),
                                 "OUT": str(tmp_path / "out"), "RESULTS": str(tmp_path / "res")})
    assert result.returncode == 2
    assert "REUSE_DATA=1 but no runs/gpu/data/summary.json" in result.stdout + result.stderr


def test_extra_texts_travel_in_the_kit_and_map_back_here():
    """A GPU recipe reads its extra prose from .gpu/data/texts/; the builder reads it from the Debian package."""
    kit = _kit_module()
    cfg = load_config(GPU_RECIPE).data.model_copy(update={"extra_texts": [".gpu/data/texts/devil.dict.dz"]})
    assert kit.system_config(cfg).extra_texts == ["/usr/share/dictd/devil.dict.dz"]
    assert kit.system_config(cfg.model_copy(update={"extra_texts": []})).extra_texts == []
    with pytest.raises(KeyError):  # a text the kit does not know how to carry is refused before the build
        kit.system_config(cfg.model_copy(update={"extra_texts": [".gpu/data/texts/unknown.txt"]}))


def test_the_payload_round_trips_over_any_cut_and_refuses_mixed_kits():
    """Model archive and clean speech travel as one stream cut to each part's room (training/kit_payload.py)."""
    from training import kit_payload

    archive, clean = bytes(range(256)) * 40, b"clean speech tar " * 300
    payload, fields = kit_payload.pack(archive, clean)
    kit = {"parts": 3, **fields}
    for sizes in ([len(payload) - 10, 5, 5], [100, len(archive), len(payload) - 100 - len(archive)], [0, 0, len(payload)]):
        assert kit_payload.unpack(kit_payload.cut(payload, sizes), kit) == (archive, clean)
    pieces = kit_payload.cut(payload, [4000, 4000, len(payload) - 8000])
    with pytest.raises(ValueError, match="checksum differs"):
        kit_payload.unpack([pieces[1], pieces[0], pieces[2]], kit)  # same bytes, wrong order
    other, _ = kit_payload.pack(archive, clean.upper())
    with pytest.raises(ValueError, match="clean tar's checksum"):
        kit_payload.unpack([*pieces[:2], other[8000:]], kit)
    with pytest.raises(ValueError, match="a slice is missing"):
        kit_payload.unpack(pieces[:2], kit)
    with pytest.raises(ValueError, match="older scripts/device_kit.py"):
        kit_payload.unpack(pieces, {"parts": 3, "model_archive_bytes": len(archive)})
    with pytest.raises(ValueError, match="add up"):
        kit_payload.cut(payload, [1, 2])


def test_more_clean_speech_costs_parts_not_a_refusal():
    """The last part no longer has to hold all the clean speech: a 50 MB text set spreads over the parts."""
    kit = _kit_module()
    mb = 1_000_000
    budget, model, first, last = 44 * mb, 68 * mb, 8 * mb, 6 * mb
    small = kit.plan_parts(model + 13 * mb, first, last, budget)[1]
    large = kit.plan_parts(model + 51 * mb, first, last, budget)[1]
    assert len(large) > len(small) and sum(large) == model + 51 * mb
    assert all(s <= budget for s in large) and large[0] + first <= budget
