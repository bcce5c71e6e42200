"""Identity resolution: which person each identifier and each staged event belongs to.

Every user_id, anonymous_id and device_id seen in `staging.events` becomes a node of a graph.
Events link the identifiers they carry (a login links the user to the cookie and the device; an
anonymous event links its cookie to its device; an `identity_merge` event links two user ids),
and a person is a connected component of that graph. The whole computation is set-based SQL in
DuckDB; the only Python loop is over label-propagation rounds, each one statement over all edges.

Guards against over-merging:

- Junk values (settings `identity.junk_values`, compared trimmed and lower-case, plus anything
  made only of zeros and dashes, including the empty string) never link. An event whose
  identifiers are all junk gets a person of its own.
- A cookie or device seen with more than one user id is a shared device: it links nothing, and
  each of its anonymous events goes to the user who logged in on it most recently at or before
  the event. Above `identity.max_users_per_device` users it is a public device (a kiosk): its
  anonymous events stay with the device itself.
- Components larger than `identity.max_component_size` are kept whole but counted, so an asset
  check can flag them for a human.

Person ids are stable. A person is named after its anchor: the identifier of the component seen
first (ties broken by identifier type, then value), as `'p_' || left(md5(type:value), 16)`. A
number handed out per run would renumber everyone whenever one component appeared earlier in
the ordering; the anchor instead only changes when the component itself changes in a way that
moves its earliest identifier. Appending a later day cannot do that, because every identifier it
adds is first seen after the anchor, so people whose component did not change keep their id and
people who only gained new identifiers keep theirs too. A person's id does change when two
existing people merge (the later one takes the earlier's id), when late data arrives for an
identifier seen earlier than the anchor, or when a device that held a component together becomes
shared and the component splits.

Known shortcoming: shared-device detection counts distinct user ids, so a device used by two
user ids that an `identity_merge` later declares the same person is still treated as shared. Its
events still reach that one person through the login time rule, but under the rule
`shared_device`, and its events before the first login stay on the device's own person.
"""

from __future__ import annotations

import time

import duckdb
from dagster import get_dagster_logger

from pipeline.settings import IdentitySettings
from pipeline.tables import EVENT_PERSONS, IDENTITY_MAP, STAGING_EVENTS

# Whitespace removed around every identifier value; `trim()` alone strips only spaces.
_WHITESPACE = "' ' || chr(9) || chr(10) || chr(13)"

_TEMP_TABLES = (
    "_identity_junk",
    "_identity_events",
    "_identity_identifiers",
    "_identity_edges",
    "_identity_labels",
    "_identity_labels_next",
    "_identity_persons",
)


def resolve_identity(con: duckdb.DuckDBPyConnection, settings: IdentitySettings) -> dict:
    """Rebuild `core.identity_map` and `core.event_persons` from all of `staging.events`.

    Both tables are replaced entirely, in one transaction. Returns counts for materialization
    metadata: events, identifiers, persons, shared_devices, public_devices, junk_identifiers,
    largest_component, oversized_components and anonymous_event_share (the share of events
    that could not be tied to any known user, rule `unlinked`).
    """
    log = get_dagster_logger()
    started = time.monotonic()
    con.execute("create schema if not exists staging")
    con.execute("create schema if not exists core")

    _stage_events(con, settings)
    _stage_identifiers(con, settings)
    _stage_edges(con)
    rounds = _label_components(con)
    _stage_persons(con)

    con.execute("begin transaction")
    try:
        _write_identity_map(con)
        _write_event_persons(con)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise

    counts = _counts(con, settings)
    for table in _TEMP_TABLES:
        con.execute(f"drop table if exists {table}")
    log.info(
        f"identity resolved in {time.monotonic() - started:.1f}s "
        f"({rounds} labelling rounds): {counts}"
    )
    return counts


def _trimmed(column: str) -> str:
    return f"trim({column}, {_WHITESPACE})"


def _stage_events(con: duckdb.DuckDBPyConnection, settings: IdentitySettings) -> None:
    """One row per staged event with its identifiers trimmed and junk set aside.

    The `*_value` columns keep every trimmed value (junk included, so junk can be listed in the
    identity map); the plain columns hold only values that may link.
    """
    junk = sorted({value.strip().lower() for value in settings.junk_values})
    con.execute("create or replace temp table _identity_junk (value varchar)")
    if junk:
        con.executemany("insert into _identity_junk values (?)", [[v] for v in junk])

    con.execute(f"""
        create or replace temp table _identity_events as
        with trimmed as (
            select
                source,
                event_id,
                event_date,
                event_time,
                event_name,
                {_trimmed("user_id")} as user_value,
                {_trimmed("anonymous_id")} as anonymous_value,
                {_trimmed("device_id")} as device_value,
                -- Only a merge names a second user id; guard json_valid because a source's
                -- properties are not promised to parse.
                case
                    when event_name = 'identity_merge' and json_valid(properties)
                        then {_trimmed("json_extract_string(properties, '$.merged_user_id')")}
                end as merged_value
            from {STAGING_EVENTS.qualified_name}
        ),
        flagged as (
            select
                *,
                {_is_junk("user_value")} as user_junk,
                {_is_junk("anonymous_value")} as anonymous_junk,
                {_is_junk("device_value")} as device_junk,
                {_is_junk("merged_value")} as merged_junk
            from trimmed
        )
        select
            *,
            case when not user_junk then user_value end as user_id,
            case when not anonymous_junk then anonymous_value end as anonymous_id,
            case when not device_junk then device_value end as device_id,
            case when not merged_junk and merged_value <> user_value then merged_value end
                as merged_user_id
        from flagged
    """)


def _is_junk(column: str) -> str:
    # Zeros and dashes only (the nil UUID, '0', '0000-0000') and the empty string are junk
    # whatever the settings say: no real system issues them as ids.
    return (
        f"coalesce(lower({column}) in (select value from _identity_junk)"
        f" or regexp_full_match({column}, '[0-]*'), false)"
    )


def _stage_identifiers(con: duckdb.DuckDBPyConnection, settings: IdentitySettings) -> None:
    """Every distinct (type, value) with its first and last sighting and how many users used it.

    Non-junk identifiers get a node number in anchor order (first seen, then type, then value),
    so the smallest node of a component is its anchor.
    """
    con.execute(
        """
        create or replace temp table _identity_identifiers as
        with sightings as (
            select 'user_id' as identifier_type, user_value as identifier, user_junk as is_junk,
                event_time, user_id as seen_with_user
            from _identity_events
            where user_value is not null
            union all
            -- The orphaned user of a merge is a user id too, first seen at the merge at latest.
            select 'user_id', merged_value, merged_junk, event_time, user_id
            from _identity_events
            where merged_value is not null
            union all
            select 'anonymous_id', anonymous_value, anonymous_junk, event_time, user_id
            from _identity_events
            where anonymous_value is not null
            union all
            select 'device_id', device_value, device_junk, event_time, user_id
            from _identity_events
            where device_value is not null
        ),
        summarised as (
            select
                identifier_type,
                identifier,
                bool_or(is_junk) as is_junk,
                min(event_time) as first_seen,
                max(event_time) as last_seen,
                count(distinct seen_with_user) as users_seen_with
            from sightings
            group by identifier_type, identifier
        ),
        counted as (
            select
                *,
                -- A user id's own count is itself; for cookies and devices it is the number of
                -- distinct real user ids on the events that carry them.
                case
                    when identifier_type <> 'user_id' then users_seen_with
                    when is_junk then 0
                    else 1
                end as user_count
            from summarised
        ),
        classified as (
            select
                *,
                not is_junk and identifier_type <> 'user_id' and user_count > 1 as is_shared,
                not is_junk and identifier_type <> 'user_id' and user_count > $max_users
                    as is_public
            from counted
        )
        select
            *,
            case
                when not is_junk
                    then row_number() over (
                        partition by is_junk
                        order by first_seen, identifier_type, identifier
                    )
            end as node
        from classified
        """,
        {"max_users": settings.max_users_per_device},
    )


def _stage_edges(con: duckdb.DuckDBPyConnection) -> None:
    """Links between node numbers, both directions, without shared or public devices.

    A user with a cookie or a device, a cookie with a device, and a merged user with the user it
    was merged into. Two user ids never link otherwise. A cookie and device on a login event are
    linked through the user anyway, so linking them directly changes no component.
    """
    con.execute("""
        create or replace temp table _identity_edges as
        with pairs as (
            select 'user_id' as left_type, user_id as left_value,
                'anonymous_id' as right_type, anonymous_id as right_value
            from _identity_events
            where user_id is not null and anonymous_id is not null
            union all
            select 'user_id', user_id, 'device_id', device_id
            from _identity_events
            where user_id is not null and device_id is not null
            union all
            select 'anonymous_id', anonymous_id, 'device_id', device_id
            from _identity_events
            where anonymous_id is not null and device_id is not null
            union all
            select 'user_id', user_id, 'user_id', merged_user_id
            from _identity_events
            where user_id is not null and merged_user_id is not null
        ),
        distinct_pairs as (
            select distinct left_type, left_value, right_type, right_value
            from pairs
        ),
        linking as (
            select l.node as left_node, r.node as right_node
            from distinct_pairs p
            join _identity_identifiers l
                on l.identifier_type = p.left_type
                and l.identifier = p.left_value
            join _identity_identifiers r
                on r.identifier_type = p.right_type
                and r.identifier = p.right_value
            where not l.is_shared
                and not r.is_shared
                and l.node <> r.node
        )
        select distinct left_node as node, right_node as neighbour
        from linking
        union
        select right_node, left_node
        from linking
    """)


def _label_components(con: duckdb.DuckDBPyConnection) -> int:
    """Label each linked node with the smallest node of its component; return the rounds run.

    Each node keeps a label, a node of its component no larger than itself, so labels form trees
    pointing down to smaller nodes. Each round, in one statement (the FastSV scheme of Zhang,
    Azad and Hu, 2020), a node's grandparent label is offered to the node itself (shortcutting),
    the smallest grandparent among a node's neighbours is offered to the node and to its parent
    (hooking whole trees onto each other, not just one node), and every label takes the smallest
    offer. Plain neighbour-to-neighbour propagation would need one round per link of the longest
    path; hooking parents and shortcutting cut that to a few dozen rounds on a chain of a million
    identifiers. Labels only ever decrease, so the loop ends, and when nothing changes every
    tree is a star rooted on the component's smallest node. Nodes without edges are components
    of one and are left out.
    """
    con.execute("""
        create or replace temp table _identity_labels as
        select distinct node, node as label
        from _identity_edges
    """)
    rounds = 0
    while True:
        rounds += 1
        con.execute("""
            create or replace temp table _identity_labels_next as
            with grandparents as (
                select l.node, l.label, parent.label as grandparent
                from _identity_labels l
                join _identity_labels parent
                    on parent.node = l.label
            ),
            neighbour_grandparents as (
                select e.node, min(g.grandparent) as grandparent
                from _identity_edges e
                join grandparents g
                    on g.node = e.neighbour
                group by e.node
            ),
            parent_hooks as (
                select g.label as node, min(n.grandparent) as grandparent
                from grandparents g
                join neighbour_grandparents n
                    using (node)
                group by g.label
            )
            select
                g.node,
                least(g.grandparent, n.grandparent, coalesce(h.grandparent, g.grandparent))
                    as label
            from grandparents g
            join neighbour_grandparents n
                using (node)
            left join parent_hooks h
                using (node)
        """)
        changed = con.execute("""
            select count(*)
            from _identity_labels_next n
            join _identity_labels l
                using (node)
            where n.label <> l.label
        """).fetchone()[0]
        con.execute("drop table _identity_labels")
        con.execute("alter table _identity_labels_next rename to _identity_labels")
        if changed == 0:
            return rounds


def _stage_persons(con: duckdb.DuckDBPyConnection) -> None:
    """The person of every non-junk identifier, with its component's size and user presence."""
    con.execute("""
        create or replace temp table _identity_persons as
        with labelled as (
            select i.identifier_type, i.identifier, i.node, coalesce(l.label, i.node) as label
            from _identity_identifiers i
            left join _identity_labels l
                using (node)
            where not i.is_junk
        ),
        components as (
            select
                label,
                count(*) as component_size,
                bool_or(identifier_type = 'user_id') as has_user
            from labelled
            group by label
        ),
        anchors as (
            -- The label is the smallest node, which is the anchor by construction of node.
            select c.*, 'p_' || left(md5(a.identifier_type || ':' || a.identifier), 16)
                as person_id
            from components c
            join labelled a
                on a.node = c.label
        )
        select l.identifier_type, l.identifier, a.person_id, a.component_size, a.has_user
        from labelled l
        join anchors a
            using (label)
    """)


def _write_identity_map(con: duckdb.DuckDBPyConnection) -> None:
    """Replace `core.identity_map`: every identifier with its person and deciding rule."""
    columns = ", ".join(IDENTITY_MAP.column_names)
    con.execute(f"drop table if exists {IDENTITY_MAP.qualified_name}")
    con.execute(IDENTITY_MAP.create_sql())
    con.execute(f"""
        insert into {IDENTITY_MAP.qualified_name} ({columns})
        select
            i.identifier_type,
            i.identifier,
            p.person_id,
            case
                when i.is_junk then 'junk'
                when i.is_public then 'public_device'
                when i.is_shared then 'shared_device'
                when i.identifier_type = 'user_id' then 'known_user'
                when not p.has_user then 'unlinked'
                when i.identifier_type = 'anonymous_id' then 'anonymous_stitch'
                else 'cross_device'
            end as rule,
            i.user_count,
            i.first_seen,
            i.last_seen
        from _identity_identifiers i
        left join _identity_persons p
            using (identifier_type, identifier)
        order by i.identifier_type, i.identifier
    """)


def _write_event_persons(con: duckdb.DuckDBPyConnection) -> None:
    """Replace `core.event_persons`: the person and rule of every staged event."""
    columns = ", ".join(EVENT_PERSONS.column_names)
    con.execute(f"drop table if exists {EVENT_PERSONS.qualified_name}")
    con.execute(EVENT_PERSONS.create_sql())
    con.execute(f"""
        insert into {EVENT_PERSONS.qualified_name} ({columns})
        with keyed as (
            -- An event without a user is decided by its cookie when it has one, else its device.
            select
                source,
                event_id,
                event_date,
                event_time,
                user_id,
                case
                    when anonymous_id is not null then 'anonymous_id'
                    when device_id is not null then 'device_id'
                end as key_type,
                coalesce(anonymous_id, device_id) as key_value
            from _identity_events
        ),
        login_sightings as (
            select 'anonymous_id' as key_type, anonymous_id as key_value, event_time, user_id
            from _identity_events
            where user_id is not null and anonymous_id is not null
            union all
            select 'device_id', device_id, event_time, user_id
            from _identity_events
            where user_id is not null and device_id is not null
        ),
        logins as (
            -- Every time a user logged in on a shared (not public) cookie or device; of two
            -- logins at the same instant the lower user id wins, only so that re-runs agree.
            select s.key_type, s.key_value, s.event_time as login_time, min(s.user_id) as user_id
            from login_sightings s
            join _identity_identifiers i
                on i.identifier_type = s.key_type
                and i.identifier = s.key_value
            where i.is_shared
                and not i.is_public
            group by s.key_type, s.key_value, s.event_time
        ),
        anonymous_events as (
            select k.*, i.is_shared, i.is_public
            from keyed k
            left join _identity_identifiers i
                on i.identifier_type = k.key_type
                and i.identifier = k.key_value
            where k.user_id is null
        ),
        shared_events as (
            -- An inner asof join: events before any login find no row and fall through to
            -- the device's own person below.
            select a.source, a.event_id, l.user_id as login_user
            from anonymous_events a
            asof join logins l
                on l.key_type = a.key_type
                and l.key_value = a.key_value
                and a.event_time >= l.login_time
            where a.is_shared
                and not a.is_public
        ),
        user_persons as (
            select identifier, person_id
            from _identity_persons
            where identifier_type = 'user_id'
        ),
        identifier_rules as (
            select identifier_type, identifier, person_id, rule
            from {IDENTITY_MAP.qualified_name}
        ),
        assigned as (
            select
                k.source,
                k.event_id,
                k.event_date,
                case
                    when k.user_id is not null then up.person_id
                    when k.key_value is null
                        then 'p_' || left(md5('event:' || k.source || ':' || k.event_id), 16)
                    when s.login_user is not null then lp.person_id
                    else r.person_id
                end as person_id,
                case
                    when k.user_id is not null then 'known_user'
                    when k.key_value is null then 'unlinked'
                    when s.login_user is not null then 'shared_device'
                    -- The device's own person holds no user, whatever rule named the device.
                    when r.rule in ('shared_device', 'public_device') then 'unlinked'
                    else r.rule
                end as identity_rule
            from keyed k
            left join user_persons up
                on up.identifier = k.user_id
            left join shared_events s
                on s.source = k.source
                and s.event_id = k.event_id
            left join user_persons lp
                on lp.identifier = s.login_user
            left join identifier_rules r
                on r.identifier_type = k.key_type
                and r.identifier = k.key_value
        )
        select event_id, source, event_date, person_id, identity_rule
        from assigned
    """)


def _counts(con: duckdb.DuckDBPyConnection, settings: IdentitySettings) -> dict:
    """Figures for materialization metadata and the identity asset checks."""
    row = con.execute(
        f"""
        with map_counts as (
            select
                count(*) as identifiers,
                count(*) filter (where rule = 'shared_device') as shared_devices,
                count(*) filter (where rule = 'public_device') as public_devices,
                count(*) filter (where rule = 'junk') as junk_identifiers
            from {IDENTITY_MAP.qualified_name}
        ),
        component_counts as (
            select
                coalesce(max(component_size), 0) as largest_component,
                count(*) filter (where component_size > $max_size) as oversized_components
            from (select distinct person_id, component_size from _identity_persons)
        ),
        event_counts as (
            select
                count(*) as events,
                coalesce(avg(case when identity_rule = 'unlinked' then 1.0 else 0.0 end), 0.0)
                    as anonymous_event_share
            from {EVENT_PERSONS.qualified_name}
        ),
        person_counts as (
            select count(distinct person_id) as persons
            from (
                select person_id from {IDENTITY_MAP.qualified_name}
                union all
                select person_id from {EVENT_PERSONS.qualified_name}
            )
        )
        select *
        from event_counts, map_counts, person_counts, component_counts
        """,
        {"max_size": settings.max_component_size},
    )
    names = [d[0] for d in row.description]
    values = row.fetchone()
    counts = dict(zip(names, values, strict=True))
    counts["anonymous_event_share"] = float(counts["anonymous_event_share"])
    return {k: (v if isinstance(v, float) else int(v)) for k, v in counts.items()}
