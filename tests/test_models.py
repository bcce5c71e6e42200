"""The data-driven models (Markov, Shapley, fractribution) on examples solved by hand.

Each test writes the paths, then the figures worked out on paper from SPEC 4.3's definitions;
the last test holds our exact Markov removal effects against ChannelAttribution's simulation.
"""

from __future__ import annotations

from fractions import Fraction as F

import numpy as np
import pytest

from benchmarks.attribution import channelattribution_effects, generate_paths
from pipeline.attribution import attribute_paths
from pipeline.models import (
    MAX_SHAPLEY_CHANNELS,
    PathTable,
    fractribution,
    markov,
    markov_chain,
    markov_removal_effects,
    shapley,
    shapley_values,
)


def path(*channels: str, converted: bool = True, value: float = 0.0, count: float = 1) -> dict:
    """A paths-file row whose touches need no time."""
    row = {"touches": [{"channel": c, "ts": None} for c in channels], "count": count}
    if converted:
        row["value"] = value
    else:
        row["converted"] = False
    return row


# A > B converts (100), A does not, B converts (20), B does not. Start: A 1/2, B 1/2.
# A: to B 1/2, to null 1/2. B: to conversion 2/3, to null 1/3.
# P(conv) = 1/2 * (1/2 * 2/3) + 1/2 * 2/3 = 1/2 (the observed rate, 2 of 4).
# Without A: 1/2 * 2/3 = 1/3, removal effect 1 - (1/3)/(1/2) = 1/3. Without B: 0, effect 1.
# Shares 1/4 and 3/4 of 2 conversions and of 120 in value.
MARKOV_PATHS = [
    path("A", "B", value=100.0),
    path("A", converted=False),
    path("B", value=20.0),
    path("B", converted=False),
]


def test_markov_chain_and_removal_effects_by_hand():
    table = PathTable.build(
        [("A", "B"), ("A",), ("B",), ("B",)], [1, 0, 1, 0], [0, 1, 0, 1], [0] * 4
    )
    chain = markov_chain(table)
    index = {state[0]: i for i, state in enumerate(chain.states)}
    a, b = index["A"], index["B"]
    assert chain.start[[a, b]] == pytest.approx([0.5, 0.5])
    assert chain.transitions[a, b] == pytest.approx(0.5)
    assert chain.transitions[b].sum() == 0.0
    assert chain.to_conversion[[a, b]] == pytest.approx([0.0, 2 / 3])
    probability, effects = markov_removal_effects(chain)
    assert probability == pytest.approx(0.5)
    assert effects == pytest.approx({"A": 1 / 3, "B": 1.0})


def test_markov_through_the_paths_interface():
    result = attribute_paths({"model": "markov", "paths": MARKOV_PATHS})
    assert result["removal_effects"] == pytest.approx({"A": 1 / 3, "B": 1.0})
    assert result["conversions"] == pytest.approx({"A": 0.5, "B": 1.5})
    assert result["credits"] == pytest.approx({"A": 30.0, "B": 90.0})


def test_markov_self_loops_add_no_transition():
    looped = [path("A", "A", "B", value=100.0), *MARKOV_PATHS[1:]]
    result = attribute_paths(
        {"model": "markov", "params": {"path_transform": "none"}, "paths": looped}
    )
    assert result["removal_effects"] == pytest.approx({"A": 1 / 3, "B": 1.0})


def test_markov_total_credit_is_total_conversions_at_every_order():
    paths = [
        path("A", "B", "C", value=10.0, count=3),
        path("B", "A", "C", value=5.0),
        path("C", "A", converted=False, count=4),
        path("A", "C", converted=False),
        path("B", value=7.0, count=2),
    ]
    for order in (1, 2, 3):
        document = {"model": "markov", "params": {"markov_order": order}, "paths": paths}
        result = attribute_paths(document)
        assert sum(result["conversions"].values()) == pytest.approx(6.0), order
        assert sum(result["credits"].values()) == pytest.approx(49.0), order


def test_markov_second_order_remembers_where_a_journey_came_from():
    # A > C always converts and B > C never does: to first order C is a coin toss whatever
    # came before, to second order the states (A, C) and (B, C) differ.
    table = PathTable.build([("A", "C"), ("B", "C")], [2, 0], [0, 2], [0, 0])
    first, _ = markov_removal_effects(markov_chain(table, order=1))
    second, effects = markov_removal_effects(markov_chain(table, order=2))
    assert first == pytest.approx(0.5)
    assert second == pytest.approx(0.5)
    # removing A loses every conversion; removing B loses none
    assert effects == pytest.approx({"A": 1.0, "B": 0.0, "C": 1.0})


# Worths (conversion rate of journeys whose distinct channels are exactly the set):
# {A} 1/10, {B} 1/5, {C} 0, {A,B} 1/2 (A > B converts, B > A does not), {A,C} 3/10,
# {B,C} 0 (no journey), {A,B,C} 3/5.
# phi_A = 1/3*(1/10) + 1/6*(1/2-1/5) + 1/6*(3/10-0) + 1/3*(3/5-0) = 1/3
# phi_B = 1/3*(1/5) + 1/6*(1/2-1/10) + 1/6*(0-0) + 1/3*(3/5-3/10) = 7/30
# phi_C = 1/3*0 + 1/6*(3/10-1/10) + 1/6*(0-1/5) + 1/3*(3/5-1/2) = 1/30; the sum is 3/5 = v(N).
SHAPLEY_ROWS = [
    (("A",), 1, 9),
    (("B",), 1, 4),
    (("C",), 0, 2),
    (("A", "B"), 1, 0),
    (("B", "A"), 0, 1),
    (("A", "C"), 3, 7),
    (("A", "B", "C"), 3, 2),
]


def test_shapley_values_by_hand():
    paths, conversions, nulls = zip(*SHAPLEY_ROWS, strict=True)
    values = shapley_values(PathTable.build(paths, conversions, nulls, [0] * len(paths)))
    assert values == pytest.approx({"A": 1 / 3, "B": 7 / 30, "C": 1 / 30})
    assert sum(values.values()) == pytest.approx(3 / 5)


def test_shapley_credits_are_normalised_over_each_conversions_channels():
    document = {
        "model": "shapley",
        "paths": [path(*p, count=c, converted=c > 0) for p, c, _ in SHAPLEY_ROWS if c]
        + [path(*p, count=n, converted=False) for p, _, n in SHAPLEY_ROWS if n],
    }
    result = attribute_paths(document)
    assert result["shapley_values"] == pytest.approx({"A": 1 / 3, "B": 7 / 30, "C": 1 / 30})
    # {A}: A all; {B}: B all; {A,B}: 10/17 and 7/17; {A,C}: 10/11, 1/11 (x3);
    # {A,B,C}: 10/18, 7/18, 1/18 (x3)
    expected = {
        "A": 1 + F(10, 17) + 3 * F(10, 11) + 3 * F(10, 18),
        "B": 1 + F(7, 17) + 3 * F(7, 18),
        "C": 3 * F(1, 11) + 3 * F(1, 18),
    }
    assert result["conversions"] == pytest.approx({k: float(v) for k, v in expected.items()})
    assert sum(result["conversions"].values()) == pytest.approx(9.0)


def test_shapley_floors_negative_values_inside_a_conversion():
    # {A} 1/2, {B} 0, {A,B} 0: phi_A = 1/4, phi_B = -1/4; A > B's conversion... has rate 0, so
    # add one: {A,B} 1/3 -> phi_A = 1/2*1/2 + 1/2*(1/3 - 0) = 5/12, phi_B = 1/2*0 +
    # 1/2*(1/3 - 1/2) = -1/12. The A > B conversion goes all to A, never above 1.
    table = PathTable.build([("A",), ("B",), ("A", "B")], [1, 0, 1], [1, 1, 2], [0, 0, 0])
    credits = shapley(table)
    assert credits.figures["shapley_values"] == pytest.approx({"A": 5 / 12, "B": -1 / 12})
    assert credits.position_weights[2] == pytest.approx([1.0, 0.0])


def test_shapley_refuses_more_channels_than_it_can_enumerate():
    channels = [(f"c{i}",) for i in range(MAX_SHAPLEY_CHANNELS + 1)]
    table = PathTable.build(channels, [1] * len(channels), [0] * len(channels), [0] * 21)
    with pytest.raises(ValueError, match="at most"):
        shapley(table)


# Path probabilities: A > B 2/4, A 1/4, B 1/10, C > B 1/2, B > A 1/10 (C alone: none, so 0).
# A > B: leave A out -> B: 1/2 - 1/10 = 2/5; leave B out -> A: 1/2 - 1/4 = 1/4; A 8/13, B 5/13.
# C > B: leave C out -> B: 2/5; leave B out -> C: 1/2; C 4/9, B 5/9.
# B > A: both drops are negative or 0 (1/10 - 1/4, 1/10 - 1/10), so last touch A takes it.
FRACTRIBUTION_PATHS = [
    path("A", "B", count=2, value=10.0),
    path("A", "B", count=2, converted=False),
    path("A", value=4.0),
    path("A", count=3, converted=False),
    path("B", value=1.0),
    path("B", count=9, converted=False),
    path("C", "B", value=9.0),
    path("C", "B", converted=False),
    path("B", "A", value=3.0),
    path("B", "A", count=9, converted=False),
]


def test_fractribution_leave_one_out_by_hand():
    result = attribute_paths({"model": "fractribution", "paths": FRACTRIBUTION_PATHS})
    expected = {
        "A": 2 * F(8, 13) + 1 + 1,
        "B": 2 * F(5, 13) + 1 + F(5, 9),
        "C": F(4, 9),
    }
    assert result["conversions"] == pytest.approx({k: float(v) for k, v in expected.items()})
    value = {
        "A": 20 * F(8, 13) + 4 + 3,
        "B": 20 * F(5, 13) + 1 + 9 * F(5, 9),
        "C": 9 * F(4, 9),
    }
    assert result["credits"] == pytest.approx({k: float(v) for k, v in value.items()})


def test_fractribution_frequency_paths_tell_repeat_counts_apart():
    # Email(2) > Push(1) converts 1 in 2; Push(1) alone 1 in 4; Email(1) > Push(1) converts
    # always, but it is another path: leaving Push out of Email(2) > Push(1) gives Email(2),
    # never seen (0), leaving Email(2) out gives Push(1) (1/4): Email 1/4, Push 1/2 -> 1/3, 2/3
    paths = [
        path("Email", "Email", "Push"),
        path("Email", "Email", "Push", converted=False),
        path("Push"),
        path("Push", count=3, converted=False),
        path("Email", "Push"),
    ]
    document = {"model": "fractribution", "params": {"path_transform": "frequency"}}
    result = attribute_paths({**document, "paths": paths[:4]})
    assert result["conversions"] == pytest.approx({"Email": 1 / 3, "Push": 1 + 2 / 3})
    result = attribute_paths({**document, "paths": paths})
    # Email(1) > Push(1) always converts: leaving Email out gives Push(1), 1 - 1/4 = 3/4;
    # leaving Push out gives Email(1), never seen, 1: Email 3/4 / (3/4 + 1) = 3/7 of it
    assert result["conversions"]["Email"] == pytest.approx(1 / 3 + 3 / 7)


@pytest.mark.parametrize("model", [markov, shapley, fractribution])
def test_every_paths_position_weights_sum_to_one(model):
    table = generate_paths(2_000, 5, seed=3)
    for weights in model(table).position_weights:
        assert weights.sum() == pytest.approx(1.0)
        assert (weights >= 0).all()


def test_a_conversion_without_touches_is_credited_to_direct():
    for model in ("markov", "shapley", "fractribution"):
        result = attribute_paths({"model": model, "paths": [path(value=5.0)]})
        assert result["credits"] == pytest.approx({"Direct": 5.0}), model


def test_markov_agrees_with_channelattribution_within_its_simulation_noise():
    pytest.importorskip("ChannelAttribution")
    table = generate_paths(50_000, 6, seed=11)
    ours = markov(table).figures["removal_effects"]
    theirs = channelattribution_effects(table)
    assert set(ours) == set(theirs)
    differences = np.array([abs(ours[c] - theirs[c]) for c in ours])
    # ChannelAttribution simulates journeys through the chain; its removal effects are
    # within about a percentage point of the exact ones
    assert differences.max() < 0.02, dict(zip(ours, differences, strict=True))
