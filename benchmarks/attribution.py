"""Benchmark: our exact Markov model against ChannelAttribution's simulated one.

    python -m benchmarks.attribution [--paths N] [--channels K] [--seed S]

Generates N journeys over K channels (default 1,000,000 over 15), aggregates identical paths,
times `pipeline.models.markov` (exact, first order) and ChannelAttribution's `markov_model`
(first order, by simulation) on the same aggregated paths, and reports both timings and the
largest absolute difference between their removal effects. ChannelAttribution is a dev
dependency; without it, only our timing is reported.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np

from pipeline.models import PathTable, markov

log = logging.getLogger("benchmarks.attribution")

MAX_PATH_LENGTH = 8


def generate_paths(n_paths: int, n_channels: int, seed: int = 0) -> PathTable:
    """N random journeys over K channels, aggregated into distinct paths.

    Lengths are geometric (mean about 2, at most MAX_PATH_LENGTH); channels are drawn with
    skewed popularity, and each channel adds its own lift to the conversion probability, so
    removal effects differ between channels. A path is encoded as a base-(K+1) integer, so
    identical paths aggregate with numpy rather than in Python.
    """
    if not 1 <= n_channels <= 40:
        raise ValueError("--channels must be between 1 and 40")
    rng = np.random.default_rng(seed)
    lengths = np.minimum(rng.geometric(0.5, n_paths), MAX_PATH_LENGTH)
    popularity = 1.0 / np.arange(1, n_channels + 1)
    steps = rng.choice(n_channels, size=lengths.sum(), p=popularity / popularity.sum())
    lift = rng.uniform(0.01, 0.15, n_channels)
    path_of_step = np.repeat(np.arange(n_paths), lengths)
    position = np.arange(len(steps)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    base = n_channels + 1
    codes = np.zeros(n_paths, dtype=np.int64)
    np.add.at(codes, path_of_step, (steps + 1) * base ** position.astype(np.int64))
    chance = 1.0 - np.exp(-np.bincount(path_of_step, weights=lift[steps], minlength=n_paths))
    converted = rng.random(n_paths) < chance
    unique, inverse = np.unique(codes, return_inverse=True)
    conversions = np.bincount(inverse, weights=converted, minlength=len(unique))
    nulls = np.bincount(inverse, weights=~converted, minlength=len(unique))
    names = [f"ch{i:02d}" for i in range(n_channels)]
    paths = []
    for code in unique.tolist():
        path = []
        while code:
            code, digit = divmod(code, base)
            path.append(names[digit - 1])
        paths.append(tuple(path))
    return PathTable.build(paths, conversions, nulls, np.zeros(len(paths)))


def channelattribution_effects(table: PathTable) -> dict[str, float]:
    """ChannelAttribution's first-order removal effects on the same aggregated paths."""
    import pandas as pd
    from ChannelAttribution import markov_model

    frame = pd.DataFrame(
        {
            "path": [" > ".join(p) for p in table.channels],
            "conversions": table.conversions,
            "nulls": table.nulls,
        }
    )
    result = markov_model(
        frame,
        "path",
        "conversions",
        var_null="nulls",
        order=1,
        out_more=True,
        verbose=False,
        flg_pro=False,
    )
    effects = result["removal_effects"]
    # the column is `removal_effect`, or `removal_effects_conversion` when values are given
    column = next(c for c in effects.columns if c.startswith("removal_effect"))
    return dict(zip(effects["channel_name"], effects[column].astype(float), strict=True))


def run(n_paths: int, n_channels: int, seed: int = 0) -> dict:
    """Generate, time both models and compare their removal effects."""
    started = time.perf_counter()
    table = generate_paths(n_paths, n_channels, seed)
    generated = time.perf_counter() - started
    log.info(
        "generated %d journeys over %d channels: %d distinct paths in %.2f s",
        n_paths,
        n_channels,
        len(table.paths),
        generated,
    )
    started = time.perf_counter()
    ours = markov(table).figures["removal_effects"]
    report: dict = {
        "paths": n_paths,
        "channels": n_channels,
        "distinct_paths": len(table.paths),
        "ours_seconds": time.perf_counter() - started,
    }
    log.info("exact Markov in %.2f s", report["ours_seconds"])
    try:
        started = time.perf_counter()
        theirs = channelattribution_effects(table)
        report["channelattribution_seconds"] = time.perf_counter() - started
        report["max_abs_removal_effect_difference"] = max(
            abs(ours[c] - theirs.get(c, 0.0)) for c in ours
        )
        log.info("ChannelAttribution in %.2f s", report["channelattribution_seconds"])
    except ImportError:
        log.warning("ChannelAttribution is not installed: only our timing is reported")
    return report


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments, run the benchmark and write its report to stdout."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.attribution")
    parser.add_argument("--paths", type=int, default=1_000_000, help="journeys to generate")
    parser.add_argument("--channels", type=int, default=15, help="channels to draw from")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run(args.paths, args.channels, args.seed)
    lines = [
        f"{key}: {value:.4g}" if isinstance(value, float) else f"{key}: {value}"
        for key, value in report.items()
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
