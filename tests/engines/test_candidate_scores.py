"""Teacher-forced candidate scores: the mean log-probability per token, batch-independent, computed by hand."""

from __future__ import annotations

import pytest
import torch
from transformers import AutoTokenizer, GenerationConfig, WhisperForConditionalGeneration

from service.engines.candidate_scores import candidate_tokens, mean_token_logprobs
from service.engines.vocabulary import load_vocabulary
from tests.conftest import model_dir
from tests.training.helpers import tiny_whisper


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tiny_whisper(tmp_path_factory.mktemp("tiny") / "model", model_dir("whisper-tiny.en"))
    model = WhisperForConditionalGeneration.from_pretrained(folder).eval()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    vocab = load_vocabulary(tokenizer, GenerationConfig.from_pretrained(model_dir("whisper-tiny.en")),
                            model.config.vocab_size)
    torch.manual_seed(0)
    with torch.inference_mode():
        states = model.model.encoder(torch.randn(1, 80, 100)).last_hidden_state
    return model, tokenizer, vocab, states


def _by_hand(model, vocab, tokens: list[int], states) -> float:
    """One unpadded sequence: sum of log p(token | prefix) over the tokens, divided by their number."""
    prefix = [vocab.sot, vocab.no_timestamps]
    with torch.inference_mode():
        logits = model(encoder_outputs=(states,), decoder_input_ids=torch.tensor([prefix + tokens[:-1]])).logits
    logp = torch.log_softmax(logits[0].float(), dim=-1)
    return sum(float(logp[len(prefix) - 1 + i, t]) for i, t in enumerate(tokens)) / len(tokens)


def test_scores_equal_the_hand_computed_mean_whatever_the_batch(tiny) -> None:
    model, tokenizer, vocab, states = tiny
    texts = ["Thank you for calling.", "", "please hold", " Goodbye. "]
    batch = mean_token_logprobs(model, vocab, tokenizer, states, texts)
    tokens = candidate_tokens(tokenizer, vocab, texts)
    assert tokens[1] == [vocab.eot] and tokens[3] == tokens[3][:-1] + [vocab.eot]
    assert tokens[3] == candidate_tokens(tokenizer, vocab, ["Goodbye."])[0]  # surrounding spaces do not count
    for text, got, toks in zip(texts, batch, tokens):
        assert got == pytest.approx(_by_hand(model, vocab, toks, states), abs=1e-5)
        assert got == pytest.approx(mean_token_logprobs(model, vocab, tokenizer, states, [text])[0], abs=1e-5)
    assert all(s < 0 for s in batch)
    assert mean_token_logprobs(model, vocab, tokenizer, states, []) == []


def test_more_than_one_window_is_refused(tiny) -> None:
    model, tokenizer, vocab, states = tiny
    with pytest.raises(ValueError, match=r"one window \[1, T, d\]"):
        mean_token_logprobs(model, vocab, tokenizer, states.expand(2, -1, -1), ["hello"])
