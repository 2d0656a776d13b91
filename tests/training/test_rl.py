"""DG-WGPO: one policy update moves probability toward the higher-reward rollouts."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import model_dir
from tests.training.helpers import spoken_rows, tiny_whisper
from training.config import RLConfig
from training.encoder_cache import lower_states
from training.lora import add_lora
from training.reward import group_advantages, group_rewards
from training.rl import Group, dapo_loss, kept_candidates, policy_update, response_batch, token_logprobs
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
            return token_logprobs(policy, hidden, 1, 2, inputs, targets, mask).sum(dim=1)

    before = sequence_logprobs()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    stats = policy_update(policy, [group], hidden, 1, 2, optimizer, cfg, tokens.eot)
    after = sequence_logprobs()
    assert after[0] > before[0] and after[1] < before[1], (before, after, stats)


def test_response_logprobs_equal_the_plain_forward_in_values_and_gradients(tmp_path):
    """Shared cross-attention keys and projecting only scored positions change nothing but the cost."""
    from training.encoder_cache import decoder_logits, upper_states
    from training.response_logprobs import response_logprobs, response_logprobs_and_entropy

    path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    rows = spoken_rows(tmp_path / "audio")[:2]
    model, processor, _ = load_model(str(path))
    policy = add_lora(model, "joint", 1, 8, 16, 0.0)
    for p in policy.parameters():  # LoRA B starts at zero: give the adapter an effect to differentiate
        if p.requires_grad:
            torch.nn.init.normal_(p, std=0.05)
    policy.eval()
    hidden = lower_states(policy, FeatureMaker(processor, model.config)([read_audio(r["audio"]) for r in rows]), 1)
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randint(0, 5000, (6, 9), generator=generator)  # 2 clips x 3 rollouts
    targets = torch.randint(0, 5000, (6, 9), generator=generator)
    mask = torch.zeros(6, 9)
    for row, (start, end) in enumerate([(2, 9), (2, 5), (0, 0), (2, 7), (3, 9), (2, 3)]):
        mask[row, start:end] = 1.0  # a row with nothing scored (a truncated rollout) included
    params = [p for p in policy.parameters() if p.requires_grad]

    def grads(values: torch.Tensor) -> list[torch.Tensor]:
        return torch.autograd.grad((values * torch.linspace(0.5, 1.5, values.numel()).view_as(values)).sum(), params)

    states = upper_states(policy, hidden, 1)
    plain = torch.log_softmax(decoder_logits(policy, states.repeat_interleave(3, dim=0), inputs).float(), dim=-1)
    plain = plain.gather(-1, targets[..., None])[..., 0] * mask
    fast = response_logprobs(policy, upper_states(policy, hidden, 1), 3, inputs, targets, mask)
    assert torch.allclose(fast, plain, atol=1e-4), (fast - plain).abs().max()
    assert bool((fast[mask == 0] == 0).all())
    for a, b in zip(grads(fast), grads(plain)):
        assert torch.allclose(a, b, atol=1e-4, rtol=1e-3), (a - b).abs().max()
    _, entropy = response_logprobs_and_entropy(policy, states, 3, inputs, targets, mask)
    full = torch.log_softmax(decoder_logits(policy, states.repeat_interleave(3, dim=0), inputs).float(), dim=-1)
    assert torch.allclose(entropy, -(full.exp() * full).sum(-1) * mask, atol=1e-4)
    with pytest.raises(ValueError, match="6 response rows for 2 clips x 4 rollouts"):
        response_logprobs(policy, states, 4, inputs, targets, mask)


def test_response_batch_cuts_the_width_to_the_longest_finished_rollout():
    group = Group({"text": "x"}, [1, 2], [[5, 6, 7], [5] * 20, [5, 9]], [True, False, True], ["", "", ""],
                  [1.0, 0.0, 0.5], [1.0, -1.0, 0.0])
    inputs, targets, mask, advantages = response_batch([group], 0)
    assert inputs.shape == (3, 4)  # prompt 2 + 3 tokens, minus the last
    assert inputs[0].tolist() == [1, 2, 5, 6] and targets[0].tolist() == [2, 5, 6, 7]
    assert mask.tolist() == [[0, 1, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]]
    assert targets[1].tolist() == [2, 5, 5, 5]  # the truncated rollout is cut, and scores nothing
    assert advantages.tolist() == [1.0, -1.0, 0.0]


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


def test_the_entropy_bonus_is_subtracted_per_scored_token():
    logp = torch.zeros(1, 3)
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    entropy = torch.tensor([[2.0, 1.0, 50.0]])  # the unscored position does not count
    loss, stats = dapo_loss(logp, logp, logp, torch.tensor([1.0]), mask, 0.2, 0.28, 0.04, entropy, 0.1)
    assert abs(float(loss) - (-1.0 - 0.1 * 1.5)) < 1e-6  # surrogate: ratio 1 x advantage 1
    assert stats["entropy"] == 1.5
    plain, _ = dapo_loss(logp, logp, logp, torch.tensor([1.0]), mask, 0.2, 0.28, 0.04, entropy, 0.0)
    assert abs(float(plain) - -1.0) < 1e-6


def test_an_entropy_bonus_alone_raises_the_policy_entropy(tmp_path):
    """With equal rewards (no advantage) the update is the KL and the entropy terms only: the bonus must
    make the policy less certain on the scored positions."""
    from training.rl import token_logprobs_and_entropy

    path = tiny_whisper(tmp_path / "model", model_dir("whisper-tiny.en"))
    row = spoken_rows(tmp_path / "audio")[2]
    model, processor, _ = load_model(str(path))
    tokens = TargetTokens.from_processor(processor, model.config)
    cfg = RLConfig(group_size=2, lr=1e-2, iterations_per_batch=2, kl_beta=0.0, entropy_coef=1.0,
                   upper_encoder_blocks=1)
    policy = add_lora(model, "joint", 1, 8, 16, 0.0)
    enc = lambda t: processor.tokenizer.encode(t, add_special_tokens=False)
    responses = [[tokens.timestamp_begin, *enc(" Thank you for calling."), tokens.eot]] * 2
    group = Group(row, tokens.prefix, responses, [True, True], ["", ""], [0.5, 0.5], [0.0, 0.0])
    hidden = lower_states(policy, FeatureMaker(processor, model.config)([read_audio(row["audio"])]), 1)
    inputs, targets, mask, _ = response_batch([group], tokens.eot)

    def mean_entropy() -> float:
        with torch.no_grad():
            return float(token_logprobs_and_entropy(policy, hidden, 1, 2, inputs, targets, mask)[1].sum() / mask.sum())

    before = mean_entropy()
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=cfg.lr)
    stats = policy_update(policy, [group], hidden, 1, 2, optimizer, cfg, tokens.eot)
    assert mean_entropy() > before + 1e-5, (before, stats)  # the random model is near-uniform: a small rise
    assert stats["entropy"] > 0


def test_top_p_keeps_the_smallest_set_reaching_p():
    logits = torch.log(torch.tensor([[0.15, 0.5, 0.05, 0.3]]))

    def kept(top_k, top_p):
        values, ids = kept_candidates(logits, top_k, top_p)
        return sorted(ids[torch.isfinite(values)].tolist())

    assert kept(0, 0.75) == [1, 3]  # 0.5 + 0.3 is the first sum to reach 0.75
    assert kept(0, 0.5) == [1]
    assert kept(1, 1.0) == [1]
    assert kept(2, 0.9) == [1, 3]  # top-k first: 0.5 and 0.3 only, then top-p among them


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


def _bundle_of(model_path, folder):
    """A served bundle: the tiny model's name plus a LoRA whose B is random (a real, non-zero adapter)."""
    import json

    model, _, _ = load_model(str(model_path))
    peft_model = add_lora(model, "joint", 1, 4, 8, 0.0)
    torch.manual_seed(3)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.normal_(0.0, 0.05)
    peft_model.save_pretrained(folder / "adapter")
    (folder / "bundle.json").write_text(json.dumps(
        {"format": "megaasr-bundle/1", "base_model": str(model_path), "adapter": "adapter", "merged": None,
         "router": None, "router_threshold": 0.5}))
    return folder


def _real_model_workspace(root):
    """The spoken clips as train and val splits, with real tiny.en: RL validates with the served decoder,
    which needs Whisper's 30-s window (the tiny random model has a 1-s one)."""
    from tests.training.helpers import write_jsonl

    rows = spoken_rows(root / "audio")
    (root / "data").mkdir()
    write_jsonl(rows, root / "data" / "train.jsonl")
    write_jsonl(rows, root / "data" / "val.jsonl")
    return root, model_dir("whisper-tiny.en"), rows


@pytest.mark.slow
def test_rl_starts_from_a_served_bundle_and_its_export_equals_the_rl_model(tmp_path):
    """init = a bundle: RL starts from base + its adapter, and export's combined adapter reproduces rl/final."""
    import json

    from training.export import apply_adapter, combine_adapters
    from training.rl import start_checkpoint, train_rl

    root, model_path, rows = _real_model_workspace(tmp_path)
    bundle = _bundle_of(model_path, tmp_path / "bundle")
    start = start_checkpoint(str(bundle), tmp_path / "rl")
    base, processor, _ = load_model(str(model_path))
    features = FeatureMaker(processor, base.config)([read_audio(r["audio"]) for r in rows])
    ids = torch.tensor([[50257, 50363, 1000, 2000]] * len(rows))

    def logits(model):
        with torch.no_grad():
            return model.eval()(input_features=features, decoder_input_ids=ids).logits

    torch.testing.assert_close(logits(load_model(start)[0]), logits(apply_adapter(base, bundle / "adapter")),
                               atol=1e-4, rtol=1e-4)
    assert not torch.allclose(logits(load_model(start)[0]), logits(load_model(str(model_path))[0]), atol=1e-3)
    assert start_checkpoint(str(model_path), tmp_path / "other") == str(model_path)  # a plain checkpoint: as is

    cfg = RLConfig(init=str(bundle), out_dir=str(tmp_path / "rl"), upper_encoder_blocks=1, steps=3,
                   prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=0, eval_samples=2,
                   temperature=1.0, threads=2)
    final = train_rl(cfg, root / "data")
    record = json.loads((final / "megaasr_training.json").read_text())
    assert record["stage"] == "rl" and len(record["adapters"]) == 2
    assert record["adapters"][0] == str((bundle / "adapter").resolve())
    assert (tmp_path / "rl" / "rl-curves.png").stat().st_size > 0
    combined = combine_adapters(record["adapters"], tmp_path / "combined")
    torch.testing.assert_close(logits(apply_adapter(load_model(str(model_path))[0], combined)),
                               logits(load_model(str(final))[0]), atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_the_time_limit_ends_rl_early_and_says_so(tmp_path):
    import json

    from training.rl import train_rl

    root, model_path, _ = _real_model_workspace(tmp_path)
    cfg = RLConfig(init=str(model_path), out_dir=str(tmp_path / "rl"), upper_encoder_blocks=1, steps=5,
                   prompts_per_step=2, group_size=2, max_new_tokens=8, eval_every=0, eval_samples=2,
                   threads=2, max_minutes=1e-6)
    train_rl(cfg, root / "data")
    records = [json.loads(line) for line in (tmp_path / "rl" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [0, 1]
    assert records[-1]["stopped"].startswith("time limit") and "val_wer" in records[-1]


def test_sampling_draws_only_kept_candidates_with_their_probabilities():
    from training.rl import sample_tokens

    logits = torch.log(torch.tensor([[0.05, 0.5, 0.15, 0.3]])).repeat(4000, 1)
    tokens = sample_tokens(logits, 0, 0.75, torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {1, 3}  # the kept set of top-p 0.75 (the test above)
    share = float((tokens == 1).float().mean())
    assert abs(share - 0.5 / 0.8) < 0.03, share  # renormalised over the kept set: 0.625
    tokens = sample_tokens(logits, 1, 1.0, torch.Generator().manual_seed(0))
    assert set(tokens.tolist()) == {1}


def test_rl_curves_report_the_zero_variance_share_and_draw_a_run(tmp_path):
    from tests.training.helpers import write_jsonl
    from training.rl_curves import main, zero_variance_share

    assert zero_variance_share({"step": 0, "val_wer": 0.9}) is None
    assert zero_variance_share({"sampled": 20, "zero_variance": 19, "groups": 1}) == 0.95
    records = [{"step": 0, "val_wer": 0.9},
               {"step": 1, "sampled": 16, "zero_variance": 4, "groups": 12, "kl": 0.01, "reward_mean": 0.7,
                "rollout_wer": 0.3, "entropy": 1.2},
               {"step": 2, "sampled": 20, "zero_variance": 20, "groups": 0, "val_wer": 0.95}]
    metrics = write_jsonl(records, tmp_path / "metrics.jsonl")
    assert main([str(metrics), str(tmp_path / "curves.png")]) == 0
    assert (tmp_path / "curves.png").stat().st_size > 0
    assert main([str(tmp_path / "missing.jsonl"), str(tmp_path / "none.png")]) == 1


def test_a_bundle_without_an_adapter_is_refused_as_an_rl_start(tmp_path):
    import json

    from training.rl import start_checkpoint

    (tmp_path / "bundle.json").write_text(json.dumps(
        {"format": "megaasr-bundle/1", "base_model": "whisper-tiny.en", "adapter": None, "merged": None,
         "router": None, "router_threshold": 0.5}))
    with pytest.raises(ValueError, match="has no adapter.*'whisper-tiny.en'"):
        start_checkpoint(str(tmp_path), tmp_path / "rl")


def test_eval_refuses_a_bundle_without_a_robust_model_clearly(tmp_path):
    import json

    from training.eval import robust_model

    (tmp_path / "bundle.json").write_text(json.dumps(
        {"format": "megaasr-bundle/1", "base_model": "whisper-tiny.en", "adapter": None, "merged": None,
         "router": None, "router_threshold": 0.5}))
    with pytest.raises(ValueError, match="neither a merged model nor an adapter.*'whisper-tiny.en'"):
        robust_model(str(tmp_path))
