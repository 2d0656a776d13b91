"""DG-WGPO: one policy update moves probability toward the higher-reward rollouts."""

from __future__ import annotations

import torch

from tests.conftest import model_dir
from tests.training.helpers import spoken_rows, tiny_whisper
from training.config import RLConfig
from training.encoder_cache import lower_states
from training.lora import add_lora
from training.reward import group_advantages, group_rewards
from training.rl import Group, dapo_loss, filter_top_k_top_p, policy_update, response_batch, token_logprobs
from training.sources import read_audio
from training.whisper import FeatureMaker, TargetTokens, load_model


def test_one_step_moves_the_policy_toward_higher_reward(tmp_path):
    path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    row = spoken_rows(tmp_path / "audio")[2]  # "Thank you for calling."
    model, processor, _ = load_model(str(path))
    tokens = TargetTokens.from_processor(processor, model.config)
    cfg = RLConfig(group_size=2, lr=1e-2, iterations_per_batch=2, kl_beta=0.04, upper_encoder_blocks=1)
    policy = add_lora(model, "joint", 1, 8, 16, 0.0)
    enc = lambda t: processor.tokenizer.encode(t, add_special_tokens=False)
    good = [tokens.timestamp_begin, *enc(" Thank you for calling."), tokens.timestamp(1.0), tokens.eot]
    bad = [tokens.timestamp_begin, *enc(" Banks you for falling over."), tokens.timestamp(1.0), tokens.eot]
    texts = ["Thank you for calling.", "Banks you for falling over."]
    rewards = group_rewards(texts, row["text"])
    assert rewards[0] > rewards[1]
    group = Group(row, tokens.prefix, [good, bad], [True, True], texts, rewards, group_advantages(rewards))
    hidden = lower_states(policy, FeatureMaker(processor, model.config)([read_audio(row["audio"])]), 1)
    inputs, targets, mask, _ = response_batch([group], tokens.eot)

    def sequence_logprobs() -> torch.Tensor:
        with torch.no_grad():
            return (token_logprobs(policy, hidden, 1, 2, inputs, targets) * mask).sum(dim=1)

    before = sequence_logprobs()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    stats = policy_update(policy, [group], hidden, 1, 2, optimizer, cfg, tokens.eot)
    after = sequence_logprobs()
    assert after[0] > before[0] and after[1] < before[1], (before, after, stats)


def test_dapo_clip_is_asymmetric_and_kl_is_zero_at_the_reference():
    logp = torch.log(torch.tensor([[1.5, 0.5]]))
    zeros = torch.zeros(1, 2)
    mask = torch.ones(1, 2)
    # Positive advantage: the ratio 1.5 is clipped at 1 + 0.28 (clip-high), 0.5 is not clipped (min).
    loss, stats = dapo_loss(logp, zeros, logp, torch.tensor([1.0]), mask, 0.2, 0.28, 0.04)
    assert abs(float(loss) - (-(1.28 + 0.5) / 2)) < 1e-6
    assert stats["kl"] == 0.0 and stats["clip_frac"] == 1.0
    # Negative advantage: min picks the unclipped 1.5 * -1 and the clipped 0.8 * -1.
    loss, _ = dapo_loss(logp, zeros, logp, torch.tensor([-1.0]), mask, 0.2, 0.28, 0.0)
    assert abs(float(loss) - ((1.5 + 0.8) / 2)) < 1e-6


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = torch.isfinite(filter_top_k_top_p(logits, 0, 0.75))
    assert kept.tolist() == [[True, True, False, False]]
    kept = torch.isfinite(filter_top_k_top_p(logits, 1, 1.0))
    assert kept.tolist() == [[True, False, False, False]]


def test_rollouts_are_k_per_clip_and_reproducible(tmp_path):
    from service.engines.decoding import TokenDecoder
    from service.engines.vocabulary import load_vocabulary
    from service.engines.whisper_runner import WhisperRunner
    from training.encoder_cache import upper_states
    from training.rl import sample_rollouts
    from training.whisper import unwrap

    path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    rows = spoken_rows(tmp_path / "audio")[:2]
    model, processor, _ = load_model(str(path))
    policy = add_lora(model, "joint", 1, 8, 16, 0.0).eval()
    vocab = load_vocabulary(processor.tokenizer, model.generation_config, model.config.vocab_size)
    rules = TokenDecoder(WhisperRunner(unwrap(policy)), vocab)
    cfg = RLConfig(group_size=3, max_new_tokens=12)
    hidden = lower_states(policy, FeatureMaker(processor, model.config)([read_audio(r["audio"]) for r in rows]), 1)
    with torch.no_grad():
        states = upper_states(policy, hidden, 1)
    runs = [sample_rollouts(policy, rules, states, vocab.prompt("en", "transcribe"), 3, cfg,
                            torch.Generator().manual_seed(7)) for _ in range(2)]
    responses, finished = runs[0]
    assert len(responses) == 6 and len(finished) == 6
    assert runs[0] == runs[1]
    for resp, done in zip(responses, finished):
        assert 1 <= len(resp) <= 12 and (resp[-1] == vocab.eot) == done
        assert resp[0] >= vocab.timestamp_begin  # the served timestamp rules apply: a timestamp first
