"""Our heuristic models against the `marketing-attribution-models` package (mam).

mam's heuristics credit every position of the path as given (no path transform, no Direct
rule), split two-touch paths evenly under position-based and weigh touches by
0.5 ** (hours / half_life) under time decay: our last_click, first_click, linear,
position_based (40/20/40) and time_decay with path_transform none use the same definitions,
so on the same generated journeys both must give the same credit per channel.
"""

import datetime as dt
import random

import polars as pl
import pytest
from mam import FirstClickModel, LastClickModel, LinearModel, PositionBasedModel, TimeDecayModel

from pipeline.attribution import attribute_paths

CHANNELS = ["Email", "Direct", "Organic Search", "Paid Search", "Mobile Push Notifications"]
CONVERTED_AT = dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC)


def journeys(count: int, seed: int = 3) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        length = rng.randint(1, 6)
        hours_before = sorted((rng.uniform(0, 600) for _ in range(length)), reverse=True)
        out.append(
            {
                "channels": [rng.choice(CHANNELS) for _ in range(length)],
                "hours": hours_before,
                "value": round(rng.uniform(5, 200), 2),
            }
        )
    return out


def ours(model: str, data: list[dict], **params) -> dict[str, float]:
    document = {
        "model": model,
        "params": {"path_transform": "none", "last_touch_rule": "last_click", **params},
        "paths": [
            {
                "touches": [
                    {
                        "channel": channel,
                        "ts": (CONVERTED_AT - dt.timedelta(hours=h)).isoformat(),
                    }
                    for channel, h in zip(j["channels"], j["hours"], strict=True)
                ],
                "conversion_ts": CONVERTED_AT.isoformat(),
                "value": j["value"],
            }
            for j in data
        ],
    }
    return attribute_paths(document)["credits"]


def theirs(model, data: list[dict]) -> dict[str, float]:
    frame = pl.DataFrame(
        {
            "journey_id": list(range(len(data))),
            "channels": [j["channels"] for j in data],
            "time_till_conv": [j["hours"] for j in data],
            "conversion_value": [j["value"] for j in data],
            "weight": [1.0] * len(data),
        }
    )
    result = model.get_aggregated_results(frame)
    return dict(zip(result["channels"].to_list(), result["attribution"].to_list(), strict=True))


@pytest.mark.parametrize(
    ("name", "peer", "params"),
    [
        ("last_click", LastClickModel(), {}),
        ("first_click", FirstClickModel(), {}),
        ("linear", LinearModel(), {}),
        ("position_based", PositionBasedModel(), {"position_weights": [0.4, 0.2, 0.4]}),
        ("time_decay", TimeDecayModel(half_life_hours=7 * 24), {"half_life_days": 7}),
    ],
)
def test_heuristics_agree_with_mam(name, peer, params):
    data = journeys(400)
    expected = theirs(peer, data)
    got = {channel: credit for channel, credit in ours(name, data, **params).items() if credit}
    assert got.keys() == expected.keys()
    for channel, credit in expected.items():
        assert got[channel] == pytest.approx(credit, rel=1e-9, abs=1e-6), channel
