"""DG-WGPO reward (paper §4): static WER reward behind a repetition gate, plus a WER-gated dynamic part.

    R_wer    = clip(1 − WER, 0, 1)
    R_rep    = 0 if the hypothesis repeats an n-gram beyond threshold else 1
    R_static = R_rep · R_wer
    R_fine   = n_C / (n_C + w_h·n_hard + α_s·n_soft + ε)           token level, on the WER alignment
    R_struc  = ½·LCS(H,R)/|R| + ½·max(0, 1 − ||H|−|R||/|R|)          sentence level, words
    R_dyn    = 0.75·R_fine + 0.25·R_struc   if WER < τ   (this rollout's own WER)
               0.25·R_fine + 0.75·R_struc   otherwise
    R        = (1 − α_dyn)·R_static + α_dyn·R_dyn                  α_dyn = 0.6, α_s = 0.4, w_h = 1

A substitution h→r is *soft* when 1 − edit_char(h,r)/max(|h|,|r|) >= 0.5, else hard; insertions and
deletions are always hard. Alignment comes from ``jiwer.process_words``; character similarity and the word
LCS from ``rapidfuzz``. See docs/reward.md for the worked arithmetic.

Choices where the paper is silent or contradicts itself:

* τ defaults to 0.3 (main text, README, and the best point of the paper's own sweep); the appendix's 0.5
  is one config field away. The gate is strict: WER == τ takes the "otherwise" branch.
* Repetition: a word 3-gram occurring 3 or more times (``service.scoring.repeated_ngram``), checked on the
  normalised hypothesis. As the paper writes it, R_rep gates only R_static: a looping hypothesis keeps its
  R_dyn share, so a loop that exactly matches a (genuinely repetitive) reference still earns 0.6.
* Empty texts (after normalisation): both empty → every component is 1 and R = 1 (silence transcribed as
  silence). Empty hypothesis against words → the formulas give 0 everywhere, so R = 0. Words against an
  empty reference → WER = number of words (``scoring.error_rate``), R_fine = 0 (only insertions), and
  R_struc, undefined for |R| = 0, is taken as 0, so R = 0: any text over silence is a pure hallucination.
* Group advantages use the unbiased standard deviation, as ``torch.std`` does in common GRPO trainers;
  groups with fewer than two rollouts or (near-)zero spread get all-zero advantages and are reported by
  :func:`zero_variance_group` so the trainer can resample them (DAPO dynamic sampling) or drop them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import jiwer
from rapidfuzz.distance import LCSseq, Levenshtein

from service.scoring import error_rate, normalise_text, repeated_ngram


@dataclass(frozen=True)
class RewardConfig:
    """Every weight and threshold of the reward; defaults are the paper's stated choices."""

    tau: float = 0.3  # WER gate; the appendix says 0.5
    alpha_dyn: float = 0.6  # share of R_dyn in the final reward
    alpha_soft: float = 0.4  # weight of a soft substitution in R_fine
    weight_hard: float = 1.0  # weight of a hard error in R_fine (the figure's w_h)
    soft_similarity: float = 0.5  # char similarity at or above which a substitution is soft
    gate_major: float = 0.75  # weight of the favoured term in the mirrored fusion
    repeat_n: int = 3
    repeat_threshold: int = 3
    normalise: bool = True  # Whisper normaliser before anything is compared
    language: str = "en"  # "en" → English normaliser, anything else → basic normaliser
    unit: Literal["word", "char"] = "word"  # "char" for scripts without spaces (CER-style reward)
    eps: float = 1e-8

    def __post_init__(self) -> None:
        for name in ("alpha_dyn", "alpha_soft", "weight_hard", "soft_similarity", "gate_major"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must lie in [0, 1], got {value}")
        if self.tau <= 0.0:
            raise ValueError(f"tau must be positive, got {self.tau}")
        if self.repeat_n < 1 or self.repeat_threshold < 2:
            raise ValueError("repeat_n must be >= 1 and repeat_threshold >= 2")
        if self.unit not in ("word", "char"):
            raise ValueError(f"unit must be 'word' or 'char', got {self.unit!r}")


DEFAULT_CONFIG = RewardConfig()


@dataclass(frozen=True)
class RewardBreakdown:
    """Every component of one rollout's reward, for logging and debugging the trainer."""

    total: float
    r_static: float
    r_dyn: float
    r_wer: float
    r_rep: float
    r_fine: float
    r_struc: float
    wer: float
    below_tau: bool
    n_correct: int
    n_soft: int
    n_hard: int
    lcs: int
    reference_length: int
    hypothesis_length: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class TokenCounts:
    """Correct tokens and soft/hard errors of one alignment."""

    n_correct: int
    n_soft: int
    n_hard: int
    edits: int


def tokens(text: str, cfg: RewardConfig = DEFAULT_CONFIG) -> list[str]:
    """Normalise (if configured) and split into words, or into non-space characters for ``unit='char'``."""
    if cfg.normalise:
        text = normalise_text(text, cfg.language)
    if cfg.unit == "char":
        return [c for c in text if not c.isspace()]
    return text.split()


def char_similarity(hyp_word: str, ref_word: str) -> float:
    """1 − edit_char(h, r) / max(|h|, |r|): the paper's soft-substitution similarity."""
    return Levenshtein.normalized_similarity(hyp_word, ref_word)


def count_tokens(
    hyp_tokens: Sequence[str], ref_tokens: Sequence[str], cfg: RewardConfig = DEFAULT_CONFIG
) -> TokenCounts:
    """Classify the WER alignment: hits are correct, similar substitutions soft, all other edits hard."""
    output = jiwer.process_words(" ".join(ref_tokens), " ".join(hyp_tokens))
    soft = 0
    for chunk in output.alignments[0]:
        if chunk.type != "substitute":
            continue
        ref_span = ref_tokens[chunk.ref_start_idx : chunk.ref_end_idx]
        hyp_span = hyp_tokens[chunk.hyp_start_idx : chunk.hyp_end_idx]
        soft += sum(char_similarity(h, r) >= cfg.soft_similarity for h, r in zip(hyp_span, ref_span))
    edits = output.substitutions + output.deletions + output.insertions
    return TokenCounts(n_correct=output.hits, n_soft=soft, n_hard=edits - soft, edits=edits)


def fine_reward(counts: TokenCounts, cfg: RewardConfig = DEFAULT_CONFIG) -> float:
    """R_fine = n_C / (n_C + w_h·n_hard + α_s·n_soft + ε)."""
    denominator = counts.n_correct + cfg.weight_hard * counts.n_hard + cfg.alpha_soft * counts.n_soft
    return counts.n_correct / (denominator + cfg.eps)


def structure_reward(hyp_tokens: Sequence[str], ref_tokens: Sequence[str]) -> float:
    """R_struc = ½·LCS/|R| + ½·max(0, 1 − ||H|−|R||/|R|); 0 for an empty reference (see module doc)."""
    ref_len = len(ref_tokens)
    if ref_len == 0:
        return 0.0
    lcs = LCSseq.similarity(list(hyp_tokens), list(ref_tokens))
    length_match = max(0.0, 1.0 - abs(len(hyp_tokens) - ref_len) / ref_len)
    return 0.5 * lcs / ref_len + 0.5 * length_match


def dynamic_reward(r_fine: float, r_struc: float, wer: float, cfg: RewardConfig = DEFAULT_CONFIG) -> float:
    """Mirrored fusion: favour R_fine when this rollout is already good (WER < τ), R_struc otherwise."""
    major, minor = cfg.gate_major, 1.0 - cfg.gate_major
    if wer < cfg.tau:
        return major * r_fine + minor * r_struc
    return minor * r_fine + major * r_struc


def _perfect_silence() -> RewardBreakdown:
    return RewardBreakdown(
        total=1.0,
        r_static=1.0,
        r_dyn=1.0,
        r_wer=1.0,
        r_rep=1.0,
        r_fine=1.0,
        r_struc=1.0,
        wer=0.0,
        below_tau=True,
        n_correct=0,
        n_soft=0,
        n_hard=0,
        lcs=0,
        reference_length=0,
        hypothesis_length=0,
    )


def reward(hypothesis: str, reference: str, cfg: RewardConfig = DEFAULT_CONFIG) -> RewardBreakdown:
    """The DG-WGPO reward of one rollout, with every component."""
    return reward_from_tokens(tokens(hypothesis, cfg), tokens(reference, cfg), cfg)


def reward_from_tokens(
    hyp_tokens: Sequence[str], ref_tokens: Sequence[str], cfg: RewardConfig = DEFAULT_CONFIG
) -> RewardBreakdown:
    """The reward on already normalised and tokenised text (lets a group share one reference)."""
    if not hyp_tokens and not ref_tokens:
        return _perfect_silence()
    counts = count_tokens(hyp_tokens, ref_tokens, cfg)
    wer = error_rate(counts.edits, len(ref_tokens))
    r_wer = min(1.0, max(0.0, 1.0 - wer))
    r_rep = 0.0 if repeated_ngram(" ".join(hyp_tokens), cfg.repeat_n, cfg.repeat_threshold) else 1.0
    r_static = r_rep * r_wer
    r_fine = fine_reward(counts, cfg)
    r_struc = structure_reward(hyp_tokens, ref_tokens)
    r_dyn = dynamic_reward(r_fine, r_struc, wer, cfg)
    return RewardBreakdown(
        total=(1.0 - cfg.alpha_dyn) * r_static + cfg.alpha_dyn * r_dyn,
        r_static=r_static,
        r_dyn=r_dyn,
        r_wer=r_wer,
        r_rep=r_rep,
        r_fine=r_fine,
        r_struc=r_struc,
        wer=wer,
        below_tau=wer < cfg.tau,
        n_correct=counts.n_correct,
        n_soft=counts.n_soft,
        n_hard=counts.n_hard,
        lcs=LCSseq.similarity(list(hyp_tokens), list(ref_tokens)),
        reference_length=len(ref_tokens),
        hypothesis_length=len(hyp_tokens),
    )


def group_rewards(
    hypotheses: Sequence[str], reference: str, cfg: RewardConfig = DEFAULT_CONFIG
) -> list[float]:
    """Total reward of each rollout in one prompt's group (the reference is normalised once)."""
    ref_tokens = tokens(reference, cfg)
    return [reward_from_tokens(tokens(h, cfg), ref_tokens, cfg).total for h in hypotheses]


def _mean_and_std(rewards: Sequence[float]) -> tuple[float, float]:
    n = len(rewards)
    mean = math.fsum(rewards) / n
    if n < 2:
        return mean, 0.0
    variance = math.fsum((r - mean) ** 2 for r in rewards) / (n - 1)
    return mean, math.sqrt(variance)


def zero_variance_group(rewards: Sequence[float], tol: float = 1e-6) -> bool:
    """True when the group carries no learning signal: fewer than two rollouts or std <= ``tol``."""
    return len(rewards) < 2 or _mean_and_std(rewards)[1] <= tol


def group_advantages(rewards: Sequence[float], eps: float = 1e-6, tol: float = 1e-6) -> list[float]:
    """GRPO group-relative advantages (r − mean) / (std + eps); all zeros for a zero-variance group."""
    if not rewards:
        return []
    if zero_variance_group(rewards, tol):
        return [0.0] * len(rewards)
    mean, std = _mean_and_std(rewards)
    return [(r - mean) / (std + eps) for r in rewards]
