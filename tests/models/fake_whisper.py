"""Small random Whisper models in CTranslate2 layout, for converter and registry tests.

Built from first principles (names, shapes, a byte-level BPE tokenizer with Whisper's control
tokens) rather than from service.models code, so the tests can disagree with the converter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from service.models.ct2 import write_ct2_model

TIMESTAMPS = ["<|%.2f|>" % (i * 0.02) for i in range(1501)]
MERGES = ["Ġ t", "h e", "Ġt he", "Ġthe n", "Ġ a", "n d", "Ġa nd"]
CONTROL_TOKENS = [
    "<|translate|>",
    "<|transcribe|>",
    "<|startoflm|>",
    "<|startofprev|>",
    "<|nocaptions|>",
    "<|notimestamps|>",
]


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible byte -> printable character table (printable bytes first)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, chars)))


@dataclass
class FakeWhisper:
    """Shapes and token layout of a fake model; ``variables`` is filled by :func:`build_variables`."""

    d_model: int = 64
    heads: int = 4
    encoder_layers: int = 2
    decoder_layers: int = 2
    ffn_dim: int = 256
    mels: int = 80
    source_positions: int = 1500
    target_positions: int = 448
    languages: tuple[str, ...] = ()
    seed: int = 0
    variables: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def base_vocab(self) -> list[str]:
        return list(bytes_to_unicode().values()) + [m.replace(" ", "") for m in MERGES]

    @property
    def specials(self) -> list[str]:
        langs = [f"<|{code}|>" for code in self.languages]
        return ["<|endoftext|>", "<|startoftranscript|>", *langs, *CONTROL_TOKENS]

    @property
    def vocabulary(self) -> list[str]:
        return self.base_vocab + self.specials + TIMESTAMPS

    def token_id(self, token: str) -> int:
        return self.vocabulary.index(token)


def build_variables(fake: FakeWhisper) -> dict[str, np.ndarray]:
    """Random fp16 tensors with CT2 Whisper names and shapes; fused K biases are zero."""
    rng = np.random.default_rng(fake.seed)
    d, vocab = fake.d_model, len(fake.vocabulary)

    def rand(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    def linear(prefix: str, rows: int, cols: int, zero_rows: slice | None = None) -> None:
        out[f"{prefix}/weight"] = rand(rows, cols)
        bias = rand(rows)
        if zero_rows is not None:
            bias[zero_rows] = 0
        out[f"{prefix}/bias"] = bias

    def norm(prefix: str) -> None:
        out[f"{prefix}/gamma"], out[f"{prefix}/beta"] = rand(d), rand(d)

    out: dict[str, np.ndarray] = {
        "encoder/conv1/weight": rand(d, fake.mels, 3),
        "encoder/conv1/bias": rand(d),
        "encoder/conv2/weight": rand(d, d, 3),
        "encoder/conv2/bias": rand(d),
        "encoder/position_encodings/encodings": rand(fake.source_positions, d),
        "decoder/embeddings/weight": rand(vocab, d),
        "decoder/position_encodings/encodings": rand(fake.target_positions, d),
        "encoder/num_heads": np.array(fake.heads, np.int16),
        "decoder/num_heads": np.array(fake.heads, np.int16),
        "decoder/activation": np.array(3, np.int8),
        "decoder/alibi": np.array(0, np.int8),
        "decoder/alignment_heads": np.array(1, np.int16),
        "decoder/alignment_layer": np.array(-1, np.int16),
        "decoder/pre_norm": np.array(1, np.int8),
        "decoder/scale_embeddings": np.array(0, np.int8),
        "decoder/start_from_zero_embedding": np.array(0, np.int8),
    }
    norm("encoder/layer_norm")
    norm("decoder/layer_norm")
    for side, count in (("encoder", fake.encoder_layers), ("decoder", fake.decoder_layers)):
        for i in range(count):
            p = f"{side}/layer_{i}"
            linear(f"{p}/self_attention/linear_0", 3 * d, d, zero_rows=slice(d, 2 * d))
            linear(f"{p}/self_attention/linear_1", d, d)
            norm(f"{p}/self_attention/layer_norm")
            linear(f"{p}/ffn/linear_0", fake.ffn_dim, d)
            linear(f"{p}/ffn/linear_1", d, fake.ffn_dim)
            norm(f"{p}/ffn/layer_norm")
            if side == "decoder":
                linear(f"{p}/attention/linear_0", d, d)
                linear(f"{p}/attention/linear_1", 2 * d, d, zero_rows=slice(0, d))
                linear(f"{p}/attention/linear_2", d, d)
                norm(f"{p}/attention/layer_norm")
    fake.variables = out
    return out


def tokenizer_json(fake: FakeWhisper, *, drop_merges: tuple[str, ...] = ()) -> str:
    """A byte-level BPE tokenizer.json holding the control tokens but, like tiny.en's, no timestamps."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    vocab = {token: i for i, token in enumerate(fake.base_vocab)}
    merges = [tuple(m.split(" ")) for m in MERGES if m not in drop_merges]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in fake.specials])
    return tokenizer.to_str()


def write_ct2_dir(
    fake: FakeWhisper,
    directory: Path,
    *,
    vocabulary_file: str | None = "vocabulary.txt",
    drop_merges: tuple[str, ...] = (),
    variables: dict[str, np.ndarray] | None = None,
) -> Path:
    """model.bin + config.json + tokenizer.json (+ vocabulary file) as a CT2 Whisper folder."""
    directory.mkdir(parents=True, exist_ok=True)
    variables = variables if variables is not None else (fake.variables or build_variables(fake))
    write_ct2_model(
        directory / "model.bin", variables, aliases={"decoder/projection/weight": "decoder/embeddings/weight"}
    )
    eot = fake.token_id("<|endoftext|>")
    config = {
        "alignment_heads": [[1, 0], [1, 2]],
        "lang_ids": [fake.token_id(f"<|{code}|>") for code in fake.languages],
        "suppress_ids": [1, 2, 7, fake.token_id("<|startoftranscript|>"), fake.token_id("<|translate|>")],
        "suppress_ids_begin": [220, eot],
    }
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "tokenizer.json").write_text(tokenizer_json(fake, drop_merges=drop_merges))
    if vocabulary_file == "vocabulary.txt":
        (directory / vocabulary_file).write_text("\n".join(fake.vocabulary) + "\n")
    elif vocabulary_file == "vocabulary.json":
        (directory / vocabulary_file).write_text(json.dumps(fake.vocabulary))
    return directory
