"""A2S-SFT: loss falls, resume is exact, and the exported adapter reproduces the merged model."""

from __future__ import annotations

import shutil

import pytest
import torch

from tests.training.helpers import sft_workspace
from training.config import PhaseConfig, SFTConfig
from training.encoder_cache import LowerStateCache
from training.export import apply_adapter, combine_adapters
from training.sft import Pieces, step_loss, train_phase, train_sft
from training.sources import read_audio
from training.whisper import FeatureMaker, TargetTokens, load_model


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    return sft_workspace(tmp_path_factory.mktemp("sft"))


def _cfg(model_path, out, steps=6, phases=None, lr=3e-3, save_every=2) -> SFTConfig:
    phases = phases or [PhaseConfig(name="joint", scope="joint", steps_per_stage=steps, lr_encoder=lr,
                                    lr_decoder=lr, warmup_fraction=0.2)]
    return SFTConfig(base_model=str(model_path), out_dir=str(out), upper_encoder_blocks=1, phases=phases,
                     batch_size=4, eval_every=0, save_every=save_every, threads=2)


def _pieces(model, processor, n_frozen=1) -> Pieces:
    features = FeatureMaker(processor, model.config)
    return Pieces(processor, TargetTokens.from_processor(processor, model.config), features,
                  LowerStateCache(model, n_frozen, features, read_audio), n_frozen)


def test_loss_falls_in_a_few_steps(setup, tmp_path):
    _, model_path, rows = setup
    model, processor, _ = load_model(str(model_path))
    cfg = _cfg(model_path, tmp_path, steps=8, lr=3e-3)
    pieces = _pieces(model, processor)
    with torch.no_grad():
        before = float(step_loss(model.eval(), rows, pieces, False))
    peft_model = train_phase(model, 0, cfg.phases[0], cfg, rows, rows, pieces, None, tmp_path, 0.0)
    with torch.no_grad():
        after = float(step_loss(peft_model.eval(), rows, pieces, False))
    assert after < before - 0.2, (before, after)  # measured: 10.87 -> 10.45


def _trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


def test_checkpoint_and_resume_give_the_same_state(setup, tmp_path):
    _, model_path, rows = setup
    cfg = _cfg(model_path, tmp_path / "straight", steps=4)
    cfg.phases[0].curriculum = [0.7]
    cfg.lora.dropout = 0.3  # randomness that only a restored RNG reproduces

    def run(out, max_steps):
        model, processor, _ = load_model(str(model_path))
        (out).mkdir(parents=True, exist_ok=True)
        c = cfg.model_copy(update={"out_dir": str(out)})
        return train_phase(model, 0, c.phases[0], c, rows, rows, _pieces(model, processor), None, out, 0.0,
                           max_steps=max_steps)

    straight = _trainable(run(tmp_path / "straight", 4))
    run(tmp_path / "resumed", 2)  # stops after the step-2 checkpoint
    resumed = _trainable(run(tmp_path / "resumed", 4))  # a fresh model resumes from it
    assert straight.keys() == resumed.keys()
    for name in straight:
        assert torch.equal(straight[name], resumed[name]), name
    interrupted = _trainable(run(tmp_path / "short", 3))
    assert any(not torch.equal(straight[n], interrupted[n]) for n in straight)  # the check can fail


def test_three_phases_merge_and_the_combined_adapter_equals_the_merged_model(setup, tmp_path):
    root, model_path, rows = setup
    phases = [PhaseConfig(name="I", scope="upper_encoder", curriculum=[0.3, 0.7], steps_per_stage=2,
                          lr_encoder=3e-3, lr_decoder=0.0),
              PhaseConfig(name="II", scope="decoder", steps_per_stage=2, lr_encoder=0.0, lr_decoder=3e-3),
              PhaseConfig(name="III", scope="joint", steps_per_stage=2, lr_encoder=3e-3, lr_decoder=3e-3)]
    final = train_sft(_cfg(model_path, tmp_path / "run", phases=phases), root / "data", clean_fraction=0.0)
    adapters = [tmp_path / "run" / f"phase{i}" / "adapter" for i in range(3)]
    combined = combine_adapters(adapters, tmp_path / "combined")
    merged, processor, _ = load_model(str(final))
    base, _, _ = load_model(str(model_path))
    assert not torch.equal(merged.model.decoder.layers[0].fc1.weight, base.model.decoder.layers[0].fc1.weight)
    served = apply_adapter(base, combined).eval()
    features = FeatureMaker(processor, merged.config)([read_audio(r["audio"]) for r in rows])
    ids = torch.tensor([[50257, 50363, 1000, 2000]] * len(rows))
    with torch.no_grad():
        want = merged.eval()(input_features=features, decoder_input_ids=ids).logits
        got = served(input_features=features, decoder_input_ids=ids).logits
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    shutil.rmtree(tmp_path / "run")


@pytest.mark.parametrize("name", ["whisper-tiny.en", "whisper-base"])
def test_no_speech_head_labels_the_start_of_transcript(name):
    """[sft].no_speech_head: <|nospeech|> after <|startoftranscript|> on silence, the prompt's next token on speech."""
    from transformers import GenerationConfig, WhisperConfig, WhisperProcessor

    from service.engines.vocabulary import load_vocabulary
    from tests.conftest import model_dir
    from training.whisper import IGNORE_INDEX, decoder_targets

    processor = WhisperProcessor.from_pretrained(model_dir(name))
    config = WhisperConfig.from_pretrained(model_dir(name))
    tok = processor.tokenizer
    plain = TargetTokens.from_processor(processor, config)
    trained = TargetTokens.from_processor(processor, config, no_speech_head=True)
    named = "<|nospeech|>" if "<|nospeech|>" in tok.get_vocab() else "<|nocaptions|>"  # tiny.en: the older name
    assert plain.no_speech is None and trained.no_speech == tok.convert_tokens_to_ids(named)
    assert trained.no_speech == load_vocabulary(tok, GenerationConfig.from_pretrained(model_dir(name)),
                                                config.vocab_size).no_speech  # the id the served gate reads
    texts, ends = ["Please hold.", ""], [1.0, 0.0]
    inputs, before = decoder_targets(texts, ends, processor, plain)
    same_inputs, after = decoder_targets(texts, ends, processor, trained)
    assert torch.equal(inputs, same_inputs) and torch.equal(before[:, 1:], after[:, 1:])  # only position 0 changes
    after_sot = trained.prefix[1] if len(trained.prefix) > 1 else trained.timestamp_begin  # <|en|> or <|0.00|>
    assert after[0, 0] == after_sot and after[1, 0] == trained.no_speech
    multilingual = len(trained.prefix) > 1
    assert before[0, 0] == (IGNORE_INDEX if multilingual else trained.timestamp_begin)
