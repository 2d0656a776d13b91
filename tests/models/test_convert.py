"""CT2 -> HF conversion on small random Whisper models: bit-exact tensors, configs, tokenizer, safety."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from service.models.convert import (
    ConversionError,
    convert_ct2_whisper,
    ct2_to_hf_state_dict,
    hf_to_ct2_variables,
)
from service.models.ct2 import read_ct2_model, write_ct2_model
from tests.models.fake_whisper import FakeWhisper, build_variables, write_ct2_dir


def expected_hf_tensors(fake: FakeWhisper) -> dict[str, np.ndarray]:
    """The HF state dict, spelled out from the name table in docs/weights.md §2.3 (not from the converter)."""
    v, d = fake.variables, fake.d_model
    out = {
        "model.encoder.conv1.weight": v["encoder/conv1/weight"],
        "model.encoder.conv1.bias": v["encoder/conv1/bias"],
        "model.encoder.conv2.weight": v["encoder/conv2/weight"],
        "model.encoder.conv2.bias": v["encoder/conv2/bias"],
        "model.encoder.embed_positions.weight": v["encoder/position_encodings/encodings"],
        "model.encoder.layer_norm.weight": v["encoder/layer_norm/gamma"],
        "model.encoder.layer_norm.bias": v["encoder/layer_norm/beta"],
        "model.decoder.embed_tokens.weight": v["decoder/embeddings/weight"],
        "model.decoder.embed_positions.weight": v["decoder/position_encodings/encodings"],
        "model.decoder.layer_norm.weight": v["decoder/layer_norm/gamma"],
        "model.decoder.layer_norm.bias": v["decoder/layer_norm/beta"],
    }
    for side, count in (("encoder", fake.encoder_layers), ("decoder", fake.decoder_layers)):
        for i in range(count):
            c, h = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            qkv_w, qkv_b = v[f"{c}/self_attention/linear_0/weight"], v[f"{c}/self_attention/linear_0/bias"]
            out[f"{h}.self_attn.q_proj.weight"] = qkv_w[:d]
            out[f"{h}.self_attn.k_proj.weight"] = qkv_w[d : 2 * d]
            out[f"{h}.self_attn.v_proj.weight"] = qkv_w[2 * d :]
            out[f"{h}.self_attn.q_proj.bias"] = qkv_b[:d]
            out[f"{h}.self_attn.v_proj.bias"] = qkv_b[2 * d :]
            out[f"{h}.self_attn.out_proj.weight"] = v[f"{c}/self_attention/linear_1/weight"]
            out[f"{h}.self_attn.out_proj.bias"] = v[f"{c}/self_attention/linear_1/bias"]
            out[f"{h}.self_attn_layer_norm.weight"] = v[f"{c}/self_attention/layer_norm/gamma"]
            out[f"{h}.self_attn_layer_norm.bias"] = v[f"{c}/self_attention/layer_norm/beta"]
            out[f"{h}.fc1.weight"], out[f"{h}.fc1.bias"] = (
                v[f"{c}/ffn/linear_0/weight"],
                v[f"{c}/ffn/linear_0/bias"],
            )
            out[f"{h}.fc2.weight"], out[f"{h}.fc2.bias"] = (
                v[f"{c}/ffn/linear_1/weight"],
                v[f"{c}/ffn/linear_1/bias"],
            )
            out[f"{h}.final_layer_norm.weight"] = v[f"{c}/ffn/layer_norm/gamma"]
            out[f"{h}.final_layer_norm.bias"] = v[f"{c}/ffn/layer_norm/beta"]
            if side == "decoder":
                kv_w, kv_b = v[f"{c}/attention/linear_1/weight"], v[f"{c}/attention/linear_1/bias"]
                out[f"{h}.encoder_attn.q_proj.weight"] = v[f"{c}/attention/linear_0/weight"]
                out[f"{h}.encoder_attn.q_proj.bias"] = v[f"{c}/attention/linear_0/bias"]
                out[f"{h}.encoder_attn.k_proj.weight"] = kv_w[:d]
                out[f"{h}.encoder_attn.v_proj.weight"] = kv_w[d:]
                out[f"{h}.encoder_attn.v_proj.bias"] = kv_b[d:]
                out[f"{h}.encoder_attn.out_proj.weight"] = v[f"{c}/attention/linear_2/weight"]
                out[f"{h}.encoder_attn.out_proj.bias"] = v[f"{c}/attention/linear_2/bias"]
                out[f"{h}.encoder_attn_layer_norm.weight"] = v[f"{c}/attention/layer_norm/gamma"]
                out[f"{h}.encoder_attn_layer_norm.bias"] = v[f"{c}/attention/layer_norm/beta"]
    return out


@pytest.fixture(scope="module")
def english(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeWhisper, Path, Path]:
    fake = FakeWhisper()
    build_variables(fake)
    root = tmp_path_factory.mktemp("english")
    ct2_dir = write_ct2_dir(fake, root / "ct2")
    hf_dir = convert_ct2_whisper(ct2_dir, root / "hf")
    return fake, ct2_dir, hf_dir


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory: pytest.TempPathFactory) -> tuple[FakeWhisper, Path]:
    fake = FakeWhisper(languages=("en", "fr", "de"), seed=1)
    build_variables(fake)
    root = tmp_path_factory.mktemp("multi")
    ct2_dir = write_ct2_dir(fake, root / "ct2", vocabulary_file="vocabulary.json")
    return fake, convert_ct2_whisper(ct2_dir, root / "hf", multilingual=True)


def test_every_hf_tensor_is_a_bit_exact_slice_of_the_source(english) -> None:
    fake, _, hf_dir = english
    saved = load_file(str(hf_dir / "model.safetensors"))
    expected = expected_hf_tensors(fake)
    assert set(saved) == set(expected)
    for name, want in expected.items():
        got = saved[name]
        assert got.dtype == np.float16, name
        assert got.shape == want.shape, name
        assert got.tobytes() == np.ascontiguousarray(want).tobytes(), name


def test_transformers_loads_the_folder_with_nothing_missing(english) -> None:
    import torch
    from transformers import WhisperForConditionalGeneration

    fake, _, hf_dir = english
    model, info = WhisperForConditionalGeneration.from_pretrained(
        hf_dir, dtype=torch.float32, output_loading_info=True
    )
    assert not info["missing_keys"] and not info["unexpected_keys"] and not info["mismatched_keys"]
    embeddings = fake.variables["decoder/embeddings/weight"].astype(np.float32)
    assert np.array_equal(model.proj_out.weight.detach().numpy(), embeddings)  # tied, upcast exactly
    k_bias = model.model.encoder.layers[0].self_attn.k_proj.bias
    assert k_bias is None


def test_config_sizes_come_from_the_tensor_shapes(english) -> None:
    fake, _, hf_dir = english
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "whisper"
    assert (config["d_model"], config["encoder_layers"], config["decoder_layers"]) == (64, 2, 2)
    assert (config["encoder_attention_heads"], config["decoder_attention_heads"]) == (4, 4)
    assert (config["encoder_ffn_dim"], config["num_mel_bins"], config["vocab_size"]) == (
        256,
        80,
        len(fake.vocabulary),
    )
    assert (config["max_source_positions"], config["max_target_positions"]) == (1500, 448)
    assert config["decoder_start_token_id"] == fake.token_id("<|startoftranscript|>")
    assert config["eos_token_id"] == config["pad_token_id"] == fake.token_id("<|endoftext|>")
    assert config["tie_word_embeddings"] is True


def test_english_generation_config_forces_no_timestamps_like_transformers(english) -> None:
    fake, _, hf_dir = english
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    no_timestamps = fake.token_id("<|notimestamps|>")
    assert generation["forced_decoder_ids"] == [[1, no_timestamps]]
    assert generation["no_timestamps_token_id"] == no_timestamps
    assert generation["prev_sot_token_id"] == fake.token_id("<|startofprev|>")
    assert generation["is_multilingual"] is False
    assert "lang_to_id" not in generation and "task_to_id" not in generation
    assert generation["alignment_heads"] == [[1, 0], [1, 2]]
    assert generation["begin_suppress_tokens"] == [220, fake.token_id("<|endoftext|>")]
    assert (generation["max_length"], generation["max_initial_timestamp_index"]) == (448, 50)


def test_multilingual_generation_config_has_languages_and_tasks(multilingual) -> None:
    fake, hf_dir = multilingual
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["is_multilingual"] is True
    assert generation["lang_to_id"] == {f"<|{c}|>": fake.token_id(f"<|{c}|>") for c in ("en", "fr", "de")}
    transcribe = fake.token_id("<|transcribe|>")
    assert generation["task_to_id"] == {"transcribe": transcribe, "translate": fake.token_id("<|translate|>")}
    assert generation["forced_decoder_ids"] == [[1, None], [2, transcribe]]


def test_tokenizer_covers_every_id_including_timestamps(english) -> None:
    from transformers import AutoTokenizer, WhisperProcessor

    fake, _, hf_dir = english
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    assert len(tokenizer) == len(fake.vocabulary)
    for token_id in (0, 255, 259, fake.token_id("<|notimestamps|>"), len(fake.vocabulary) - 1):
        assert tokenizer.convert_ids_to_tokens(token_id) == fake.vocabulary[token_id]
    assert tokenizer.encode(" then and", add_special_tokens=False) == [
        fake.token_id("Ġthen"),
        fake.token_id("Ġand"),
    ]
    first = fake.token_id("<|0.00|>")
    text_ids = [fake.token_id("Ġthen")]
    decoded = tokenizer.decode([first, *text_ids, first + 50], output_offsets=True)
    assert decoded["offsets"] == [{"text": " then", "timestamp": (0.0, 1.0)}]
    processor = WhisperProcessor.from_pretrained(hf_dir)
    assert (
        processor.feature_extractor.feature_size == 80 and processor.feature_extractor.sampling_rate == 16000
    )


def test_missing_rank_zero_merge_is_repaired(tmp_path: Path) -> None:
    """A tokenizer.json without the "Ġ t" merge would encode " then" as two tokens."""
    from transformers import AutoTokenizer

    fake = FakeWhisper()
    build_variables(fake)
    ct2_dir = write_ct2_dir(fake, tmp_path / "ct2", drop_merges=("Ġ t",), vocabulary_file=None)
    hf_dir = convert_ct2_whisper(ct2_dir, tmp_path / "hf")
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    assert tokenizer.encode(" then", add_special_tokens=False) == [fake.token_id("Ġthen")]
    assert tokenizer.convert_tokens_to_ids("<|30.00|>") == len(fake.vocabulary) - 1


def test_inverse_mapping_restores_every_original_variable(english) -> None:
    fake, ct2_dir, hf_dir = english
    original = read_ct2_model(ct2_dir / "model.bin").variables
    back = hf_to_ct2_variables(
        load_file(str(hf_dir / "model.safetensors")),
        encoder_attention_heads=fake.heads,
        decoder_attention_heads=fake.heads,
    )
    assert set(back) == set(original)
    for name, array in original.items():
        assert back[name].dtype == array.dtype and back[name].shape == array.shape, name
        assert back[name].tobytes() == array.tobytes(), name


def test_official_ctranslate2_converter_regenerates_every_variable(english, tmp_path: Path) -> None:
    converters = pytest.importorskip("ctranslate2.converters")
    _, ct2_dir, hf_dir = english
    converters.TransformersConverter(str(hf_dir)).convert(str(tmp_path / "back"), quantization="float16")
    original = read_ct2_model(ct2_dir / "model.bin")
    again = read_ct2_model(tmp_path / "back" / "model.bin")
    assert again.aliases == original.aliases
    for name, array in original.variables.items():
        assert name in again.variables, name
        assert again.variables[name].tobytes() == array.tobytes(), name
        assert again.variables[name].dtype == array.dtype, name
    # Newer converters add only flag scalars we drop anyway.
    assert {n for n in again.variables if n not in original.variables} <= {
        "decoder/alibi_use_positive_positions",
        "decoder/scale_alibi",
    }


@pytest.mark.parametrize(
    "fused", ["encoder/layer_1/self_attention/linear_0", "decoder/layer_0/attention/linear_1"]
)
def test_non_zero_k_bias_is_refused_and_leaves_no_folder(tmp_path: Path, fused: str) -> None:
    fake = FakeWhisper()
    variables = dict(build_variables(fake))
    bias = variables[f"{fused}/bias"].copy()
    k_rows = slice(fake.d_model, 2 * fake.d_model) if "self_attention" in fused else slice(0, fake.d_model)
    bias[k_rows][5] = np.float16(0.25)
    variables[f"{fused}/bias"] = bias
    ct2_dir = write_ct2_dir(fake, tmp_path / "ct2", variables=variables)
    with pytest.raises(ConversionError, match="K-projection"):
        convert_ct2_whisper(ct2_dir, tmp_path / "out" / "hf")
    assert not (tmp_path / "out" / "hf").exists()
    assert list((tmp_path / "out").iterdir()) == []  # the staging folder was removed too


def test_quantized_leftovers_are_refused(tmp_path: Path) -> None:
    fake = FakeWhisper()
    variables = dict(build_variables(fake))
    variables["encoder/layer_0/ffn/linear_0/weight_scale"] = np.ones(fake.ffn_dim, dtype=np.float32)
    write_ct2_model(
        tmp_path / "model.bin", variables, aliases={"decoder/projection/weight": "decoder/embeddings/weight"}
    )
    with pytest.raises(ConversionError, match="no HF counterpart"):
        ct2_to_hf_state_dict(read_ct2_model(tmp_path / "model.bin"))


def test_untied_projection_is_refused(tmp_path: Path) -> None:
    fake = FakeWhisper()
    variables = dict(build_variables(fake))
    variables["decoder/projection/weight"] = variables["decoder/embeddings/weight"] + np.float16(1)
    write_ct2_model(tmp_path / "model.bin", variables)
    with pytest.raises(ConversionError, match="ties them"):
        ct2_to_hf_state_dict(read_ct2_model(tmp_path / "model.bin"))


def test_vocabulary_disagreeing_with_the_tokenizer_is_refused(tmp_path: Path) -> None:
    fake = FakeWhisper()
    build_variables(fake)
    ct2_dir = write_ct2_dir(fake, tmp_path / "ct2")
    words = (ct2_dir / "vocabulary.txt").read_text().split("\n")
    words[100], words[101] = words[101], words[100]
    (ct2_dir / "vocabulary.txt").write_text("\n".join(words))
    with pytest.raises(ConversionError, match="disagree"):
        convert_ct2_whisper(ct2_dir, tmp_path / "hf")


def test_existing_output_is_not_overwritten_by_default(english, tmp_path: Path) -> None:
    _, ct2_dir, _ = english
    target = tmp_path / "hf"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert_ct2_whisper(ct2_dir, target)
    assert (target / "keep.txt").read_text() == "mine"
    convert_ct2_whisper(ct2_dir, target, overwrite=True, manifest={"name": "fake"})
    assert not (target / "keep.txt").exists()
    assert json.loads((target / "megaasr-source.json").read_text()) == {"name": "fake"}
