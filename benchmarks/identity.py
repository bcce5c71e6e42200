"""Times identity resolution on a synthetic graph of about N identifiers.

    python -m benchmarks.identity [--identifiers 1000000] [--seed 7]

Each synthetic person has a user id, a cookie and a device: anonymous visits that later log in,
logged-in app use, and one device in a hundred shared by two users. The events are written
straight into an in-memory `staging.events` with SQL, then `resolve_identity` runs on them.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time

import duckdb

from pipeline.identity import resolve_identity
from pipeline.settings import IdentitySettings
from pipeline.tables import STAGING_EVENTS


def synthetic_events(con: duckdb.DuckDBPyConnection, identifiers: int, seed: int) -> int:
    """Fill staging.events with about `identifiers` distinct identifiers; return the event count."""
    # Three identifiers a person, less the devices that one person in a hundred shares.
    people = max(-(-identifiers * 100 // 299), 1)
    con.execute("create schema if not exists staging")
    con.execute(STAGING_EVENTS.create_sql())
    con.execute(f"select setseed({(seed % 1000) / 1000})")
    columns = ", ".join(STAGING_EVENTS.column_names)
    con.execute(
        f"""
        insert into staging.events ({columns})
        with people as (
            select
                i,
                'u' || i as user_id,
                'a' || i as anonymous_id,
                -- One device in a hundred is also used by the next person: a shared device.
                'd' || case when i % 100 = 1 then i - 1 else i end as device_id,
                timestamptz '2024-01-01' + to_seconds((random() * 86400 * 28)::bigint) as t0
            from range({people}) as r(i)
        ),
        events as (
            select i, 'visit' as kind, null as user_id, anonymous_id, null as device_id, t0 as t
            from people
            union all
            select i, 'login', user_id, anonymous_id, null, t0 + interval 10 minute
            from people
            union all
            select i, 'app', user_id, null, device_id, t0 + interval 1 day
            from people
            union all
            select i, 'push', null, null, device_id, t0 + interval 2 day
            from people
        )
        select
            kind || '-' || i as event_id,
            'canonical' as source,
            t as event_time,
            case kind when 'login' then 'identify' when 'push' then 'push_opened'
                else 'page_view' end as event_name,
            user_id,
            anonymous_id,
            device_id,
            {", ".join("null" for _ in STAGING_EVENTS.column_names[7:-3])},
            'bench' as source_file,
            i as source_row,
            t::date as event_date
        from events
        """
    )
    return con.execute("select count(*) from staging.events").fetchall()[0][0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Time identity resolution.")
    parser.add_argument("--identifiers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    con = duckdb.connect()
    con.execute("set TimeZone = 'UTC'")
    started = time.perf_counter()
    events = synthetic_events(con, args.identifiers, args.seed)
    generated = time.perf_counter()
    counts = resolve_identity(con, IdentitySettings())
    resolved = time.perf_counter()
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    sys.stdout.write(
        f"identity benchmark: {counts['identifiers']:,} identifiers, {events:,} events\n"
        f"  persons {counts['persons']:,}, shared devices {counts['shared_devices']:,}, "
        f"largest person {counts['largest_component']} identifiers\n"
        f"  synthetic data {generated - started:.1f} s; resolve_identity "
        f"{resolved - generated:.1f} s; peak memory {peak_mb:,.0f} MB\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
