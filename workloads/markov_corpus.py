"""An offline corpus: a seeded sparse Markov chain over token ids with a known entropy rate.

A model can at best predict the next token's distribution, so the chain's entropy rate (nats
per token) is a floor under the achievable cross-entropy: every run can report how far above
the floor its loss is, which makes tiny CPU runs comparable in a meaningful way.
"""

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class MarkovChain:
    successors: torch.Tensor
    """(states, branching) token ids each state can go to."""
    probabilities: torch.Tensor
    """(states, branching) transition probabilities, rows sum to 1."""
    stationary: torch.Tensor
    """(states,) long-run probability of each state."""
    first_token: int
    """Token ids are state + first_token (ids below it are reserved, e.g. padding)."""


def make_chain(vocab_size: int, branching: int = 8, seed: int = 1234, first_token: int = 1) -> MarkovChain:
    """A chain whose every state has `branching` successors with skewed random weights."""
    states = vocab_size - first_token
    generator = torch.Generator().manual_seed(seed)
    successors = torch.stack([torch.randperm(states, generator=generator)[:branching] for _ in range(states)])
    # Exponentiated Gaussians give a mix of likely and rare successors, like real text.
    weights = torch.exp(1.5 * torch.randn(states, branching, generator=generator, dtype=torch.float64))
    probabilities = weights / weights.sum(1, keepdim=True)
    stationary = stationary_distribution(successors, probabilities)
    return MarkovChain(successors, probabilities, stationary, first_token)


def stationary_distribution(successors: torch.Tensor, probabilities: torch.Tensor, iterations: int = 500):
    """Power iteration on the sparse transitions (random sparse chains mix in a few dozen steps)."""
    states = successors.shape[0]
    distribution = torch.full((states,), 1.0 / states, dtype=torch.float64)
    for _ in range(iterations):
        flow = (distribution[:, None] * probabilities).flatten()
        distribution = torch.zeros_like(distribution).scatter_add_(0, successors.flatten(), flow)
    return distribution / distribution.sum()


def entropy_rate_nats(chain: MarkovChain) -> float:
    """H = sum_i pi_i * H(P_i): the best achievable mean next-token loss in the long run."""
    row_entropy = -(chain.probabilities * chain.probabilities.log()).sum(1)
    return float((chain.stationary * row_entropy).sum())


def sample_sequences(chain: MarkovChain, count: int, length: int, generator: torch.Generator) -> torch.Tensor:
    """(count, length) token ids; each sequence starts from the stationary distribution."""
    states = torch.multinomial(
        chain.stationary.float().expand(count, -1), 1, generator=generator
    ).squeeze(1)
    columns = [states]
    for _ in range(length - 1):
        choice = torch.multinomial(chain.probabilities[states].float(), 1, generator=generator).squeeze(1)
        states = chain.successors[states, choice]
        columns.append(states)
    return torch.stack(columns, 1) + chain.first_token
