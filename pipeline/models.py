"""Data-driven attribution models (SPEC 4.3): Markov chain, Shapley value and fractribution.

Pure numpy over aggregated paths: every distinct transformed path appears once in a
`PathTable`, with the conversions, non-conversions (nulls) and value it stands for, so a million
journeys cost what their few thousand distinct paths cost. `pipeline.attribution` builds the
tables (from a paths file or from core.touches) and turns the figures here into credits.

Each model gives, for every distinct path, a weight per position that sums to 1
(`PathCredits.position_weights`); a conversion's credit on that path follows those weights.
Decisions where SPEC.md is silent:

- Markov: states are channels (order 1) or the last `order` channels (higher orders, as
  ChannelAttribution does). Consecutive repeats are collapsed first, so a self-loop adds no
  transition. Removing a channel sends every state that contains it to null. Channel-level
  credit is removal-effect share x total conversions (and x total value); per conversion, a
  conversion's credit is split over its own channels in proportion to their removal effects.
- Shapley: the worth of a set is the conversion rate of journeys whose distinct channels are
  exactly that set (0 when no journey has it). Per conversion, credit is split over its own
  channels in proportion to their Shapley values floored at 0 (a negative value would take
  credit away from the conversion's other channels), evenly when all are 0. Exact over at
  most MAX_SHAPLEY_CHANNELS channels.
- Fractribution (Google's leave-one-out variant): a path's conversion probability is
  conversions / (conversions + nulls) of that exact path. Each position's contribution is the
  drop in probability when it is left out (floored at 0; a one-touch path keeps its own
  probability); contributions are normalised per path, and a path where all are 0 goes to its
  last touch.
- A channel that appears more than once in a path shares its channel credit evenly between
  its positions (Markov, Shapley).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np

# 2^20 subsets x 20 channels is about 2e7 operations: still well under a second.
MAX_SHAPLEY_CHANNELS = 20


@dataclass(frozen=True)
class PathTable:
    """Distinct transformed paths with what each stands for.

    `paths[i]` is a tuple of steps, oldest first; a step is a channel name, or any hashable
    label (fractribution's frequency transform uses (channel, count)); `channels[i]` gives each
    step's channel. `conversions`, `nulls` and `values` are arrays aligned with `paths`.
    """

    paths: list[tuple[Hashable, ...]]
    channels: list[tuple[str, ...]]
    conversions: np.ndarray
    nulls: np.ndarray
    values: np.ndarray

    @classmethod
    def build(
        cls,
        paths: Sequence[Sequence[Hashable]],
        conversions: Sequence[float],
        nulls: Sequence[float],
        values: Sequence[float],
        channels: Sequence[Sequence[str]] | None = None,
    ) -> PathTable:
        """Aggregate rows with identical paths; rows with no conversion and no null are dropped."""
        index: dict[tuple, int] = {}
        kept_paths: list[tuple] = []
        kept_channels: list[tuple[str, ...]] = []
        sums: list[list[float]] = []
        for i, path in enumerate(paths):
            key = tuple(path)
            if not key:
                raise ValueError("a path needs at least one touch")
            if key not in index:
                index[key] = len(kept_paths)
                kept_paths.append(key)
                kept_channels.append(tuple(channels[i]) if channels is not None else key)
                sums.append([0.0, 0.0, 0.0])
            row = sums[index[key]]
            row[0] += float(conversions[i])
            row[1] += float(nulls[i])
            row[2] += float(values[i])
        totals = np.array(sums, dtype=float).reshape(-1, 3)
        keep = totals[:, 0] + totals[:, 1] > 0
        return cls(
            paths=[p for p, k in zip(kept_paths, keep, strict=True) if k],
            channels=[c for c, k in zip(kept_channels, keep, strict=True) if k],
            conversions=totals[keep, 0],
            nulls=totals[keep, 1],
            values=totals[keep, 2],
        )

    @property
    def channel_names(self) -> list[str]:
        return sorted({c for path in self.channels for c in path})


@dataclass(frozen=True)
class PathCredits:
    """Per distinct path of a table, each position's share of the path's conversions."""

    position_weights: list[np.ndarray]
    # channel-level figures of the model (removal effects, Shapley values)
    figures: dict[str, dict[str, float]]
    # channel-level credit shares when the model defines them globally (Markov), else None
    channel_shares: dict[str, float] | None = None

    def channel_totals(self, table: PathTable) -> tuple[dict[str, float], dict[str, float]]:
        """(conversion credit, value credit) per channel, summed over the table."""
        channels = table.channel_names
        if self.channel_shares is not None:
            total_conversions = float(table.conversions.sum())
            total_value = float(table.values.sum())
            return (
                {c: self.channel_shares.get(c, 0.0) * total_conversions for c in channels},
                {c: self.channel_shares.get(c, 0.0) * total_value for c in channels},
            )
        conversions = dict.fromkeys(channels, 0.0)
        values = dict.fromkeys(channels, 0.0)
        for i, weights in enumerate(self.position_weights):
            for channel, weight in zip(table.channels[i], weights, strict=True):
                conversions[channel] += float(weight * table.conversions[i])
                values[channel] += float(weight * table.values[i])
        return conversions, values


def _split_by_channel(path: Sequence[str], weight_of: dict[str, float]) -> np.ndarray:
    """Position weights from channel weights: normalised over the path's own channels."""
    own = sorted(set(path))
    weights = np.array([max(weight_of.get(c, 0.0), 0.0) for c in own])
    total = weights.sum()
    shares = weights / total if total > 0 else np.full(len(own), 1.0 / len(own))
    share_of = dict(zip(own, shares, strict=True))
    positions = {c: path.count(c) for c in own}
    return np.array([share_of[c] / positions[c] for c in path])


# ------------------------------------------------------------------------------------------
# Markov chain
# ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MarkovChain:
    """The absorbing chain's transient part, as probabilities."""

    states: list[tuple[str, ...]]
    start: np.ndarray  # probability of entering each state first
    transitions: np.ndarray  # state -> state
    to_conversion: np.ndarray  # state -> conversion

    def conversion_probability(self, keep: np.ndarray | None = None) -> float:
        """Probability of absorption in conversion, with only the `keep` states (mask) open.

        A closed state absorbs in null, so it drops out of the linear system: its row and
        column go, and the probability of entering it is lost.
        """
        if keep is None:
            keep = np.ones(len(self.states), dtype=bool)
        if not keep.any():
            return 0.0
        q = self.transitions[np.ix_(keep, keep)]
        absorbed = np.linalg.solve(np.eye(len(q)) - q, self.to_conversion[keep])
        return float(self.start[keep] @ absorbed)


def _collapse_repeats(path: Sequence[str]) -> tuple[str, ...]:
    return tuple(c for i, c in enumerate(path) if i == 0 or c != path[i - 1])


def markov_chain(table: PathTable, order: int = 1) -> MarkovChain:
    """Transition probabilities estimated from every path, converting or not."""
    if order < 1:
        raise ValueError(f"markov_order must be at least 1, not {order}")
    state_ids: dict[tuple[str, ...], int] = {}
    sequences: list[list[int]] = []
    for channels in table.channels:
        path = _collapse_repeats(channels)
        sequence = []
        for i in range(len(path)):
            state = path[max(0, i - order + 1) : i + 1]
            sequence.append(state_ids.setdefault(state, len(state_ids)))
        sequences.append(sequence)
    n = len(state_ids)
    weights = table.conversions + table.nulls
    lengths = np.array([len(s) for s in sequences])
    flat = np.fromiter((s for seq in sequences for s in seq), dtype=np.int64, count=lengths.sum())
    ends = np.cumsum(lengths) - 1
    starts = ends - lengths + 1
    flat_weights = np.repeat(weights, lengths)
    # a step's successor is the next step of the same path, so every step but the last
    inner = np.ones(len(flat), dtype=bool)
    inner[ends] = False
    from_ids = flat[inner]
    to_ids = flat[np.flatnonzero(inner) + 1]
    counts = np.bincount(
        from_ids * n + to_ids, weights=flat_weights[inner], minlength=n * n
    ).reshape(n, n)
    conversions = np.bincount(flat[ends], weights=table.conversions, minlength=n)
    nulls = np.bincount(flat[ends], weights=table.nulls, minlength=n)
    out = counts.sum(axis=1) + conversions + nulls
    start = np.bincount(flat[starts], weights=weights, minlength=n)
    states = [None] * n
    for state, i in state_ids.items():
        states[i] = state
    return MarkovChain(
        states=states,
        start=start / start.sum(),
        transitions=counts / out[:, None],
        to_conversion=conversions / out,
    )


def markov_removal_effects(chain: MarkovChain) -> tuple[float, dict[str, float]]:
    """The chain's conversion probability and each channel's removal effect.

    The removal effect of a channel is 1 - P(conversion without it) / P(conversion).
    """
    channels = sorted({c for state in chain.states for c in state})
    base = chain.conversion_probability()
    effects = {}
    for channel in channels:
        keep = np.array([channel not in state for state in chain.states])
        without = chain.conversion_probability(keep)
        effects[channel] = 1.0 - without / base if base > 0 else 0.0
    return base, effects


def markov(table: PathTable, order: int = 1) -> PathCredits:
    """Markov credits: removal-effect shares, globally and split per conversion."""
    base, effects = markov_removal_effects(markov_chain(table, order))
    total = sum(effects.values())
    shares = {c: e / total if total > 0 else 0.0 for c, e in effects.items()}
    return PathCredits(
        position_weights=[_split_by_channel(path, effects) for path in table.channels],
        figures={"removal_effects": effects},
        channel_shares=shares,
    )


# ------------------------------------------------------------------------------------------
# Shapley value over channel sets
# ------------------------------------------------------------------------------------------


def shapley_values(table: PathTable) -> dict[str, float]:
    """Each channel's Shapley value in the game whose worth of a set is its conversion rate.

    Values are in conversion-rate units and sum to the worth of the set of all channels.
    """
    channels = table.channel_names
    n = len(channels)
    if n > MAX_SHAPLEY_CHANNELS:
        raise ValueError(
            f"shapley is computed exactly over at most {MAX_SHAPLEY_CHANNELS} channels; "
            f"these paths have {n}"
        )
    bit = {c: 1 << i for i, c in enumerate(channels)}
    masks = np.array([sum(bit[c] for c in set(path)) for path in table.channels], dtype=np.int64)
    conversions = np.bincount(masks, weights=table.conversions, minlength=1 << n)
    journeys = conversions + np.bincount(masks, weights=table.nulls, minlength=1 << n)
    conversions, journeys = conversions.astype(float), journeys.astype(float)
    worth = np.divide(conversions, journeys, out=np.zeros_like(journeys), where=journeys > 0)
    subsets = np.arange(1 << n, dtype=np.int64)
    sizes = np.bitwise_count(subsets)
    # |S|! (n - |S| - 1)! / n! for a coalition S of each size that leaves the player out
    coefficient = np.array(
        [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
    )
    values = {}
    for channel in channels:
        without = subsets[(subsets & bit[channel]) == 0]
        gains = worth[without | bit[channel]] - worth[without]
        values[channel] = float(coefficient[sizes[without]] @ gains)
    return values


def shapley(table: PathTable) -> PathCredits:
    """Shapley credits: each conversion split over its own channels by their values."""
    values = shapley_values(table)
    return PathCredits(
        position_weights=[_split_by_channel(path, values) for path in table.channels],
        figures={"shapley_values": values},
    )


# ------------------------------------------------------------------------------------------
# Fractribution (Google's leave-one-out variant)
# ------------------------------------------------------------------------------------------


def fractribution(table: PathTable) -> PathCredits:
    """Google fractribution's leave-one-out credits, per position of each path."""
    journeys = table.conversions + table.nulls
    probability = dict(zip(table.paths, table.conversions / journeys, strict=True))
    weights = []
    for path in table.paths:
        own = probability[path]
        if len(path) == 1:
            contributions = np.array([own])
        else:
            contributions = np.array(
                [
                    max(own - probability.get(path[:i] + path[i + 1 :], 0.0), 0.0)
                    for i in range(len(path))
                ]
            )
        total = contributions.sum()
        if total > 0:
            weights.append(contributions / total)
        else:
            # Google's rule: no position makes a difference, so the last touch takes it all
            last = np.zeros(len(path))
            last[-1] = 1.0
            weights.append(last)
    return PathCredits(position_weights=weights, figures={})


DATA_DRIVEN_MODELS = ("markov", "shapley", "fractribution")


def run_model(model: str, table: PathTable, markov_order: int = 1) -> PathCredits:
    """The named data-driven model's credits over `table`."""
    if markov_order < 1:
        raise ValueError(f"markov_order must be at least 1, not {markov_order}")
    if not table.paths:
        # no journey at all: nothing to credit, and no chain or game to describe
        figures = {"markov": {"removal_effects": {}}, "shapley": {"shapley_values": {}}}
        return PathCredits([], figures.get(model, {}), {} if model == "markov" else None)
    if model == "markov":
        return markov(table, markov_order)
    if model == "shapley":
        return shapley(table)
    if model == "fractribution":
        return fractribution(table)
    raise ValueError(f"{model!r} is not a data-driven model ({', '.join(DATA_DRIVEN_MODELS)})")
