"""Conversion paths, push's role in each conversion, and heuristic attribution credits.

Everything here is set-based DuckDB SQL. One implementation of the path transforms and of the
heuristic models (`credit_sql`) runs on a generic relation of path touches, so the pipeline
(`build_paths`, reading `core.touches` and `core.conversions`) and the paths-file interface
(`attribute_paths`, SPEC 4.3) give the very same numbers.

Decisions where SPEC.md is silent (each one is also said where it is implemented):

- Touches are ordered by time, then touch_id, so ties always resolve the same way.
- Path transforms work on the channel as written in the path, where push impressions and
  influenced opens carry a suffix (`Mobile Push Notifications (impression)`), so an impression
  never merges with a click. Credit rows carry the plain channel of the touch.
- `exposure` stands a run of repeats for one touch: its latest one (the touch_id on credit rows,
  and the time time_decay ages). The latest touch is the one the last-touch models credit, so
  both agree, and a run's influence is freshest at its end.
- `first` keeps each channel's first touch, with that touch's time.
- `frequency` gives each channel one position (ordered by first appearance, represented by its
  latest touch) whose weight is its frequency: linear, time_decay and position_based give the
  channel the sum of what its touches earn on the untransformed path. Credits still sum to 1.
  In the `path` text each channel is written as Snowplow's frequency path does: `Email(2)`.
- Snowplow's removing transforms drop touches before any model runs, and number the rest 1..n:
  `trim_long_path` keeps the last `path_lookback_steps` touches (None: all);
  `remove_if_not_all_direct` drops every Direct touch; `remove_if_last_and_not_all_direct`
  drops the final run of Direct touches (`a > Direct > a > Direct > Direct` becomes
  `a > Direct > a`). Both keep a path of Direct touches only whole, as Snowplow does.
- Single-touch models (first_click, last_click, last_non_direct) credit an actual touch: a
  transform never changes which touch was first or last, only the position reported for it
  (the removing transforms excepted: a dropped touch is credited by no model).
- `attribute_paths` also returns GA-style assists for every model: a channel assists a
  converting path once (times its count and conversions, and for its value) if it holds any
  position but the last of the transformed path, even when it also holds the last one, as
  Google Analytics' assisted conversions count (SPEC 4.2).
- A conversion with no creditable touch gets one row per model with touch_id null, channel
  Direct and credit 1 (Google Analytics' rule: no campaign data means Direct). The same
  fallback applies to the last-touch models when the window holds only impressions or
  influenced opens, which can never be the last touch.
- Direct is recognised case-insensitively, because paths files from other tools write `direct`.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import duckdb
from pydantic import ValidationError

from pipeline.models import DATA_DRIVEN_MODELS, PathTable, run_model
from pipeline.settings import AttributionSettings
from pipeline.tables import ATTRIBUTION_CREDITS, CONVERSION_PATHS, PUSH_CHANNEL

DIRECT_CHANNEL = "Direct"
UNASSIGNED_CHANNEL = "Unassigned"

HEURISTIC_MODELS = (
    "last_click",
    "last_non_direct",
    "first_click",
    "linear",
    "time_decay",
    "position_based",
)
# Names Snowplow's dbt package uses (in the reference cases). `last_touch` means "the credited
# last touch", so it maps to the model the last_touch_rule parameter names (None here).
MODEL_ALIASES = {"first_touch": "first_click", "last_touch": None}

PATHS_FILE_PARAMS = (
    "lookback_days",
    "path_transform",
    "half_life_days",
    "position_weights",
    "last_touch_rule",
    "markov_order",
    "path_lookback_steps",
)

_MICROS_PER_DAY = 86_400_000_000

# Per transform: how a touch's slot (its position in the transformed path) is numbered, which
# touch of a slot stands for it, and whether the multi-touch models weigh every touch (the
# slot then sums its touches' credit) or only the one standing for the slot.
_ONE_SLOT_PER_TOUCH = ("row_number() over by_seq", "slot_last_seq", True)
_TRANSFORMS = {
    "none": _ONE_SLOT_PER_TOUCH,
    "exposure": ("sum(case when starts_run then 1 else 0 end) over by_seq", "slot_last_seq", False),
    "first": (
        "dense_rank() over (partition by conversion_id order by channel_first_seq)",
        "slot_first_seq",
        False,
    ),
    "frequency": (
        "dense_rank() over (partition by conversion_id order by channel_first_seq)",
        "slot_last_seq",
        True,
    ),
    # Snowplow's removing transforms drop touches (_KEEP_TOUCH) and number the rest 1..n
    "trim_long_path": _ONE_SLOT_PER_TOUCH,
    "remove_if_not_all_direct": _ONE_SLOT_PER_TOUCH,
    "remove_if_last_and_not_all_direct": _ONE_SLOT_PER_TOUCH,
}

_IS_DIRECT = f"lower(channel) = lower('{DIRECT_CHANNEL}')"
# Per removing transform: the QUALIFY condition a touch must meet to stay in the path.
_KEEP_TOUCH = {
    # the last `path_lookback_steps` touches
    "trim_long_path": "row_number() over (partition by conversion_id order by seq desc) <= {steps}",
    # every non-Direct touch; a path of Direct touches only is kept whole
    "remove_if_not_all_direct": (
        f"not ({_IS_DIRECT}) or bool_and({_IS_DIRECT}) over (partition by conversion_id)"
    ),
    # everything up to the last non-Direct touch (so a final run of Direct goes); a path of
    # Direct touches only has no non-Direct touch and is kept whole
    "remove_if_last_and_not_all_direct": (
        f"seq <= coalesce(max(case when not ({_IS_DIRECT}) then seq end) "
        "over (partition by conversion_id), seq)"
    ),
}


def _transform_ctes(source: str, transform: str, lookback_steps: int | None = None) -> str:
    """CTEs numbering every touch of `source` by its slot in the transformed path.

    `source` needs conversion_id, seq (orders a conversion's touches, oldest first) and channel.
    The last CTE, `slot_reps`, adds slot, slot_first_seq, slot_last_seq, slot_size and
    is_slot_rep (the touch that stands for the slot) to every touch the transform keeps
    (the removing transforms leave some out). `lookback_steps` is trim_long_path's N (None: no
    limit).
    """
    slot_expr, rep_seq, _ = _TRANSFORMS[transform]
    keep = _KEEP_TOUCH.get(transform)
    if transform == "trim_long_path":
        keep = None if lookback_steps is None else keep.format(steps=int(lookback_steps))
    keep_clause = f"qualify {keep}" if keep else ""
    return f"""
    kept_touches as (
        -- the touches the transform keeps
        select *
        from {source}
        {keep_clause}
    ),
    run_marks as (
        -- where each run of one channel starts, and where each channel first appears
        select
            *,
            coalesce(
                channel <> lag(channel) over (partition by conversion_id order by seq),
                true
            ) as starts_run,
            min(seq) over (partition by conversion_id, channel) as channel_first_seq
        from kept_touches
    ),
    slotted as (
        -- the touch's position in the transformed path
        select
            *,
            {slot_expr} as slot
        from run_marks
        window by_seq as (partition by conversion_id order by seq)
    ),
    slot_bounds as (
        select
            *,
            min(seq) over by_slot as slot_first_seq,
            max(seq) over by_slot as slot_last_seq,
            count(*) over by_slot as slot_size
        from slotted
        window by_slot as (partition by conversion_id, slot)
    ),
    slot_reps as (
        select
            *,
            seq = {rep_seq} as is_slot_rep
        from slot_bounds
    )"""


def credit_sql(touches: str, conversions: str, settings: AttributionSettings) -> str:
    """SQL giving every heuristic model's credit rows for a set of conversions.

    `touches` is a relation of creditable path touches, one row per touch: conversion_id, seq
    (orders a conversion's touches, oldest first), touch_id, channel (as the path transform
    compares it), credit_channel (as written on credit rows), touch_time, is_click (may be the
    last touch), is_direct, is_push, campaign_id. `conversions` has conversion_id,
    conversion_time and value for every conversion, with or without touches.

    The result has conversion_id, model, seq, touch_id, position, channel, is_push,
    campaign_id, credit and value_credit; credits sum to 1 per conversion and model.
    """
    _, _, models_see_every_touch = _TRANSFORMS[settings.path_transform]
    first_weight, middle_weight, last_weight = settings.position_weights
    ends_weight = first_weight + last_weight
    # Two touches split in the ratio first:last; evenly when both end weights are zero.
    first_of_two = first_weight / ends_weight if ends_weight > 0 else 0.5
    model_list = ", ".join(f"'{m}'" for m in HEURISTIC_MODELS)
    model_touch_filter = "true" if models_see_every_touch else "is_slot_rep"
    return f"""
    with
    {_transform_ctes(touches, settings.path_transform, settings.path_lookback_steps)},
    model_params as (
        select
            {float(settings.half_life_days)!r}::double as half_life_days,
            {float(first_weight)!r}::double as first_weight,
            {float(middle_weight)!r}::double as middle_weight,
            {float(last_weight)!r}::double as last_weight,
            {float(first_of_two)!r}::double as first_of_two
    ),
    model_touches as (
        -- the touches the multi-touch models spread credit over, numbered 1..n
        select
            t.conversion_id,
            t.slot,
            row_number() over (partition by t.conversion_id order by t.seq) as model_position,
            count(*) over (partition by t.conversion_id) as model_touch_count,
            (epoch_us(c.conversion_time) - epoch_us(t.touch_time)) / {_MICROS_PER_DAY}
                as age_days
        from slot_reps as t
        join {conversions} as c
            using (conversion_id)
        where {model_touch_filter}
    ),
    touch_weights as (
        select
            conversion_id,
            slot,
            'linear' as model,
            1.0::double as weight
        from model_touches
        union all
        -- ages are taken relative to the youngest touch: the normalised shares are the same,
        -- and the weights cannot all underflow to zero on a long window with a short half life
        select
            conversion_id,
            slot,
            'time_decay' as model,
            pow(
                2.0,
                -(age_days - min(age_days) over (partition by conversion_id)) / p.half_life_days
            ) as weight
        from model_touches
        cross join model_params as p
        union all
        select
            conversion_id,
            slot,
            'position_based' as model,
            case
                when model_touch_count = 1 then 1.0
                when model_touch_count = 2 and model_position = 1 then p.first_of_two
                when model_touch_count = 2 then 1.0 - p.first_of_two
                when model_position = 1 then p.first_weight
                when model_position = model_touch_count then p.last_weight
                else p.middle_weight / (model_touch_count - 2)
            end as weight
        from model_touches
        cross join model_params as p
    ),
    slot_weights as (
        select
            conversion_id,
            model,
            slot,
            sum(weight) as weight
        from touch_weights
        group by conversion_id, model, slot
    ),
    multi_touch_credits as (
        select
            w.conversion_id,
            w.model,
            r.seq,
            w.weight / sum(w.weight) over (partition by w.conversion_id, w.model) as credit
        from slot_weights as w
        join slot_reps as r
            on r.conversion_id = w.conversion_id
            and r.slot = w.slot
            and r.is_slot_rep
    ),
    touch_order as (
        -- the first row of each ordering is the first touch, the last click, and the last
        -- non-Direct click (or the last Direct one when there is no other)
        select
            *,
            row_number() over (partition by conversion_id order by seq) as nth_first,
            row_number() over (partition by conversion_id order by is_click desc, seq desc)
                as nth_last_click,
            row_number() over (
                partition by conversion_id
                order by is_click desc, is_direct asc, seq desc
            ) as nth_last_non_direct
        from slot_reps
    ),
    single_touch_credits as (
        select
            conversion_id,
            'first_click' as model,
            seq,
            1.0::double as credit
        from touch_order
        where nth_first = 1
        union all
        select
            conversion_id,
            'last_click' as model,
            seq,
            1.0::double as credit
        from touch_order
        where nth_last_click = 1
            and is_click
        union all
        select
            conversion_id,
            'last_non_direct' as model,
            seq,
            1.0::double as credit
        from touch_order
        where nth_last_non_direct = 1
            and is_click
    ),
    model_credits as (
        select * from multi_touch_credits
        union all
        select * from single_touch_credits
    ),
    credited_touches as (
        select
            c.conversion_id,
            c.model,
            t.seq,
            t.touch_id,
            t.slot as position,
            t.credit_channel as channel,
            t.is_push,
            t.campaign_id,
            c.credit
        from model_credits as c
        join slot_reps as t
            using (conversion_id, seq)
    ),
    direct_fallback as (
        -- GA's rule: a conversion with no touch the model can credit goes to Direct
        select
            c.conversion_id,
            m.model,
            null::bigint as seq,
            null::varchar as touch_id,
            null::bigint as position,
            '{DIRECT_CHANNEL}' as channel,
            false as is_push,
            null::varchar as campaign_id,
            1.0::double as credit
        from {conversions} as c
        cross join (select unnest([{model_list}]) as model) as m
        where not exists (
            select 1
            from credited_touches as t
            where t.conversion_id = c.conversion_id
                and t.model = m.model
        )
    ),
    all_credits as (
        select * from credited_touches
        union all
        select * from direct_fallback
    )
    select
        a.conversion_id,
        a.model,
        a.seq,
        a.touch_id,
        a.position::integer as position,
        a.channel,
        a.is_push,
        a.campaign_id,
        a.credit,
        a.credit * c.value::double as value_credit
    from all_credits as a
    join {conversions} as c
        using (conversion_id)
    """


# ------------------------------------------------------------------------------------------
# The pipeline: core.touches + core.conversions -> core.conversion_paths, attribution_credits
# ------------------------------------------------------------------------------------------

_WINDOW_SQL = f"""
create or replace temp table _attribution_window as
with conversions_in_range as (
    select *
    from core.conversions
    where conversion_date between $start and $end
),
window_touches as (
    -- the person's touches in [conversion_time - lookback, conversion_time]; the lookback is
    -- subtracted in hours so a daylight-saving change in the session time zone cannot move it
    select
        c.conversion_id,
        c.conversion_time,
        t.touch_id,
        t.touch_time,
        t.touch_type,
        coalesce(t.channel, '{UNASSIGNED_CHANNEL}') as channel,
        t.is_push,
        t.push_kind,
        t.campaign_id,
        t.identity_rule
    from conversions_in_range as c
    join {{touches}} as t
        on t.person_id = c.person_id
        and t.touch_time <= c.conversion_time
        and t.touch_time >= c.conversion_time - to_hours(24 * c.lookback_days)
),
classified as (
    select
        *,
        row_number() over (
            partition by conversion_id
            order by touch_time, touch_id
        ) as seq,
        touch_type in ('session', 'push_click') as is_click,
        -- a session recorded under the push channel is a push click that lost its open event
        coalesce(is_push, false)
            or channel = '{PUSH_CHANNEL}'
            or touch_type in ('push_click', 'push_influenced', 'push_impression')
            as is_push_touch
    from window_touches
)
select
    *,
    case touch_type
        when 'push_impression' then channel || ' (impression)'
        when 'push_influenced' then channel || ' (influenced)'
        else channel
    end as path_channel,
    case
        when is_push_touch and is_click then 3
        when is_push_touch and touch_type = 'push_influenced' then 2
        when is_push_touch and touch_type = 'push_impression' then 1
    end as push_strength,
    lower(channel) = lower('{DIRECT_CHANNEL}') as is_direct
from classified
"""


def _paths_select_sql(settings: AttributionSettings) -> str:
    """SELECT of core.conversion_paths rows, from the window and credit temp tables."""
    suffix = "'(' || slot_size || ')'" if settings.path_transform == "frequency" else "''"
    impression_counts = "true" if settings.count_impression_assists else "false"
    return f"""
    with
    path_source as (
        select
            conversion_id,
            seq,
            path_channel as channel
        from _attribution_window
    ),
    {_transform_ctes("path_source", settings.path_transform, settings.path_lookback_steps)},
    path_slots as (
        select
            conversion_id,
            slot,
            any_value(channel) as channel,
            count(*) as slot_size
        from slot_reps
        group by conversion_id, slot
    ),
    path_texts as (
        select
            conversion_id,
            string_agg(channel || {suffix}, ' > ' order by slot) as path
        from path_slots
        group by conversion_id
    ),
    window_summaries as (
        select
            conversion_id,
            count(*) as touch_count,
            list(touch_id order by seq) as touch_event_ids
        from _attribution_window
        group by conversion_id
    ),
    push_summaries as (
        select
            conversion_id,
            count(*) as push_touch_count,
            list_sort(list(distinct push_kind) filter (where push_kind is not null))
                as push_kinds,
            list_sort(list(distinct campaign_id) filter (where campaign_id is not null))
                as campaign_ids,
            max(push_strength) as strongest_push,
            min(touch_time) as first_push_time,
            max(touch_time) as last_push_time,
            list(distinct identity_rule) filter (where identity_rule is not null)
                as push_identity_rules
        from _attribution_window
        where is_push_touch
        group by conversion_id
    ),
    last_clicks as (
        select
            conversion_id,
            seq as last_click_seq
        from _attribution_credits
        where model = 'last_click'
    ),
    ga_assists as (
        -- GA counts push anywhere but the last click, even when push is also the last click
        select
            w.conversion_id,
            bool_or(w.seq is distinct from l.last_click_seq) as ga_assist
        from _attribution_window as w
        left join last_clicks as l
            using (conversion_id)
        where w.is_push_touch
            and w.is_click
        group by w.conversion_id
    ),
    credited_last_touches as (
        select
            conversion_id,
            touch_id as last_touch_id,
            channel as last_touch_channel,
            is_push as last_touch_is_push
        from _attribution_credits
        where model = '{settings.last_touch_rule}'
    ),
    roles as (
        select
            c.conversion_id,
            case
                when l.last_touch_is_push then 'last_touch'
                when p.push_touch_count > 0 then 'assist'
                else 'none'
            end as push_role
        from _attribution_conversions as c
        left join credited_last_touches as l
            using (conversion_id)
        left join push_summaries as p
            using (conversion_id)
    )
    select
        c.conversion_id,
        c.conversion_event_id,
        c.order_id,
        c.person_id,
        c.conversion_type,
        c.conversion_time,
        c.conversion_date,
        c.value,
        c.currency,
        c.platform,
        coalesce(pt.path, '') as path,
        coalesce(w.touch_event_ids, []::varchar[]) as touch_event_ids,
        coalesce(w.touch_count, 0)::integer as touch_count,
        l.last_touch_channel,
        l.last_touch_id,
        r.push_role,
        case
            when r.push_role <> 'assist' then null
            when p.strongest_push = 3 then 'click'
            when p.strongest_push = 2 then 'influenced'
            when p.strongest_push = 1 then 'impression'
        end as assist_kind,
        r.push_role = 'assist'
            and (p.strongest_push >= 2 or (p.strongest_push = 1 and {impression_counts}))
            as is_push_assisted,
        coalesce(g.ga_assist, false) as ga_assist,
        coalesce(p.push_touch_count, 0)::integer as push_touch_count,
        coalesce(p.push_kinds, []::varchar[]) as push_kinds,
        case
            when list_contains(p.push_kinds, 'app') and list_contains(p.push_kinds, 'web')
                then 'both'
            when list_contains(p.push_kinds, 'app') then 'app'
            when list_contains(p.push_kinds, 'web') then 'web'
            else 'none'
        end as push_kind,
        coalesce(p.campaign_ids, []::varchar[]) as campaign_ids,
        (epoch_us(c.conversion_time) - epoch_us(p.first_push_time)) / 3600e6
            as hours_from_first_push,
        (epoch_us(c.conversion_time) - epoch_us(p.last_push_time)) / 3600e6
            as hours_from_last_push,
        list_sort(list_distinct(list_filter(
            list_append(coalesce(p.push_identity_rules, []::varchar[]), c.identity_rule),
            lambda rule: rule not in ('known_user', 'unlinked')
        ))) as stitch_rules
    from _attribution_conversions as c
    join roles as r
        using (conversion_id)
    join credited_last_touches as l
        using (conversion_id)
    left join path_texts as pt
        using (conversion_id)
    left join window_summaries as w
        using (conversion_id)
    left join push_summaries as p
        using (conversion_id)
    left join ga_assists as g
        using (conversion_id)
    """


_CREDIT_TOUCHES_SQL = """
create or replace temp view _attribution_credit_touches as
select
    conversion_id,
    seq,
    touch_id,
    path_channel as channel,
    channel as credit_channel,
    touch_time,
    is_click,
    is_direct,
    is_push_touch as is_push,
    campaign_id
from _attribution_window
where is_click
    or ({include_views} and touch_type in ('push_influenced', 'push_impression'))
"""

_COUNTS_SQL = """
select
    count(*) as conversions,
    count(*) filter (where push_role = 'last_touch') as push_last_touch_conversions,
    count(*) filter (where push_role = 'assist') as push_assist_conversions,
    count(*) filter (where is_push_assisted) as push_assisted_conversions,
    count(*) filter (where assist_kind = 'impression') as impression_assist_conversions,
    count(*) filter (where ga_assist) as ga_assisted_conversions,
    count(*) filter (where touch_count = 0) as conversions_without_touches,
    coalesce(sum(touch_count), 0) as touches_in_windows
from _attribution_paths
"""

_TEMP_OBJECTS = (
    ("view", "_attribution_credit_touches"),
    ("table", "_attribution_paths"),
    ("table", "_attribution_credits"),
    ("table", "_attribution_window"),
    ("table", "_attribution_conversions"),
)


def ensure_attribution_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Create core.conversion_paths and core.attribution_credits if they do not exist."""
    con.execute("create schema if not exists core")
    con.execute(CONVERSION_PATHS.create_sql())
    con.execute(ATTRIBUTION_CREDITS.create_sql())


def _compute_paths(
    con: duckdb.DuckDBPyConnection, settings: AttributionSettings, dates: dict, touches: str
) -> None:
    """Temp tables _attribution_paths and _attribution_credits for the dates' conversions."""
    include_views = "true" if settings.include_views_in_models else "false"
    con.execute(
        """
        create or replace temp table _attribution_conversions as
        select *
        from core.conversions
        where conversion_date between $start and $end
        """,
        dates,
    )
    con.execute(_WINDOW_SQL.format(touches=touches), dates)
    con.execute(_CREDIT_TOUCHES_SQL.format(include_views=include_views))
    con.execute(
        "create or replace temp table _attribution_credits as "
        + credit_sql("_attribution_credit_touches", "_attribution_conversions", settings)
    )
    con.execute("create or replace temp table _attribution_paths as " + _paths_select_sql(settings))


def path_roles(
    con: duckdb.DuckDBPyConnection,
    settings: AttributionSettings,
    start: dt.date,
    end: dt.date,
    touches: str,
    into: str,
) -> None:
    """Temp table `into`: the conversion_paths rows of start..end computed on `touches`.

    Nothing in core is written: this is how another view of the touches (e.g. the recorded
    channels, pipeline.misclassification) is compared with the published one.
    """
    _compute_paths(con, settings, {"start": start, "end": end}, touches)
    con.execute(f"create or replace temp table {into} as select * from _attribution_paths")
    for kind, name in _TEMP_OBJECTS:
        con.execute(f"drop {kind} if exists {name}")


def build_paths(
    con: duckdb.DuckDBPyConnection,
    settings: AttributionSettings,
    start: dt.date,
    end: dt.date,
    touches: str = "core.touches",
) -> dict[str, int]:
    """Rebuild conversion paths and attribution credits for conversions dated start..end.

    Replaces that date range of core.conversion_paths and core.attribution_credits (so a
    re-run changes nothing) and returns counts for the materialization's metadata. `touches`
    is the relation of touches to read, with core.touches' columns.
    """
    ensure_attribution_tables(con)
    dates = {"start": start, "end": end}
    path_columns = ", ".join(CONVERSION_PATHS.column_names)
    credit_columns = ", ".join(ATTRIBUTION_CREDITS.column_names)
    con.execute("begin transaction")
    try:
        _compute_paths(con, settings, dates, touches)
        add_data_driven_credits(con, settings, dates, touches)
        for table in ("core.conversion_paths", "core.attribution_credits"):
            con.execute(f"delete from {table} where conversion_date between $start and $end", dates)
        con.execute(
            f"""
            insert into core.conversion_paths ({path_columns})
            select {path_columns}
            from _attribution_paths
            """
        )
        con.execute(
            f"""
            insert into core.attribution_credits ({credit_columns})
            select {credit_columns}
            from (
                select
                    a.*,
                    c.conversion_date
                from _attribution_credits as a
                join _attribution_conversions as c
                    using (conversion_id)
            )
            """
        )
        counts_row = con.execute(_COUNTS_SQL).fetchone()
        names = [d[0] for d in con.description]
        credit_rows = con.execute("select count(*) from _attribution_credits").fetchone()[0]
        for kind, name in _TEMP_OBJECTS:
            con.execute(f"drop {kind} if exists {name}")
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
    counts = {name: int(value) for name, value in zip(names, counts_row, strict=True)}
    counts["credit_rows"] = int(credit_rows)
    return counts


# ------------------------------------------------------------------------------------------
# Data-driven models in the pipeline: Markov, Shapley and fractribution credit rows
# ------------------------------------------------------------------------------------------

_NON_CONVERTING_TOUCHES_SQL = f"""
create or replace temp table _non_converting_touches as
with
day_touches as (
    select
        t.*,
        coalesce(t.channel, '{UNASSIGNED_CHANNEL}') as plain_channel
    from {{touches}} as t
    where t.touch_date between $start and $end
        and (
            t.touch_type in ('session', 'push_click')
            or ({{include_views}} and t.touch_type in ('push_influenced', 'push_impression'))
        )
),
unconverted as (
    -- a touch no conversion of the person follows within that conversion's lookback
    select *
    from day_touches as t
    where not exists (
        select 1
        from core.conversions as c
        where c.person_id = t.person_id
            and c.conversion_time >= t.touch_time
            and c.conversion_time <= t.touch_time + to_hours(24 * c.lookback_days)
    )
)
select
    -- one journey per person and day
    'null:' || person_id || ':' || touch_date as conversion_id,
    row_number() over (
        partition by person_id, touch_date
        order by touch_time, touch_id
    ) as seq,
    touch_id,
    case touch_type
        when 'push_impression' then plain_channel || ' (impression)'
        when 'push_influenced' then plain_channel || ' (influenced)'
        else plain_channel
    end as channel,
    plain_channel as credit_channel,
    touch_time,
    touch_date as journey_date,
    touch_type in ('session', 'push_click') as is_click,
    lower(plain_channel) = lower('{DIRECT_CHANNEL}') as is_direct,
    coalesce(is_push, false) or plain_channel = '{PUSH_CHANNEL}' as is_push,
    campaign_id
from unconverted
"""

_MODEL_JOURNEYS_SQL = """
create or replace temp table _model_touches as
select * from _attribution_credit_touches
union all by name
select * from _non_converting_touches;

create or replace temp table _model_weights as
select
    conversion_id,
    conversion_date as journey_date,
    1.0::double as conversions,
    0.0::double as nulls,
    coalesce(value, 0)::double as value
from _attribution_conversions
union all
select distinct
    conversion_id,
    journey_date,
    0.0::double as conversions,
    1.0::double as nulls,
    0.0::double as value
from _non_converting_touches
"""

_DATA_DRIVEN_CREDITS_SQL = """
insert into _attribution_credits
select
    r.conversion_id,
    r.model,
    r.seq,
    t.touch_id,
    r.position::integer as position,
    coalesce(t.credit_channel, r.channel) as channel,
    coalesce(t.is_push, false) as is_push,
    t.campaign_id,
    r.credit,
    r.credit * coalesce(c.value, 0)::double as value_credit
from _model_credit_rows as r
join _attribution_conversions as c
    using (conversion_id)
left join _model_touches as t
    on t.conversion_id = r.conversion_id
    and t.seq = r.seq
"""


def _path_steps_sql(touches: str, transform: str, lookback_steps: int | None = None) -> str:
    """Per path of `touches`: its transformed steps, oldest first, and the touch of each."""
    return f"""
    with
    {_transform_ctes(touches, transform, lookback_steps)}
    select
        conversion_id,
        list(channel order by slot) as channels,
        list(credit_channel order by slot) as credit_channels,
        list(slot_size order by slot) as slot_sizes,
        list(seq order by slot) as seqs
    from slot_reps
    where is_slot_rep
    group by conversion_id
    """


def add_data_driven_credits(
    con: duckdb.DuckDBPyConnection,
    settings: AttributionSettings,
    dates: dict,
    touches: str = "core.touches",
) -> None:
    """Add Markov, Shapley and fractribution rows to the temp table _attribution_credits.

    The models are fitted on each day of the run on its own: the day's conversions' paths,
    and its non-converting journeys, which are each person's creditable touches of the day
    that no conversion of the person follows within its lookback (one journey per person and
    day). Each conversion's
    credit is spread over the touches standing for its transformed path's positions, by the
    model's position weights (pipeline.models), so it sums to 1.
    """
    include_views = "true" if settings.include_views_in_models else "false"
    con.execute(
        _NON_CONVERTING_TOUCHES_SQL.format(touches=touches, include_views=include_views), dates
    )
    con.execute(_MODEL_JOURNEYS_SQL)
    path_steps = _path_steps_sql(
        "_model_touches", settings.path_transform, settings.path_lookback_steps
    )
    steps = con.execute(
        f"""
        select
            w.conversion_id,
            coalesce(s.channels, ['{DIRECT_CHANNEL}']) as channels,
            coalesce(s.slot_sizes, [1]) as slot_sizes,
            s.seqs,
            w.conversions,
            w.nulls,
            w.value,
            w.journey_date
        from _model_weights as w
        left join ({path_steps}) as s
            using (conversion_id)
        where s.conversion_id is not null
            or w.conversions > 0
        """
    ).fetchall()
    credit_rows: dict[str, list] = {
        k: [] for k in ("conversion_id", "model", "seq", "position", "channel", "credit")
    }
    # One fit per day, so a day's credits are the same whichever range a run covers (and a
    # re-run of one day changes nothing).
    for day in sorted({s[7] for s in steps}):
        day_steps = [s for s in steps if s[7] == day]
        rows = [(s[1], s[2], s[4], s[5], s[6]) for s in day_steps]
        table = path_table(rows, settings.path_transform)
        index = {path: i for i, path in enumerate(table.paths)}
        keys = path_table_keys(rows, settings.path_transform)
        for model in DATA_DRIVEN_MODELS:
            credits = run_model(model, table, settings.markov_order)
            for step, key in zip(day_steps, keys, strict=True):
                if step[4] <= 0:
                    continue  # a non-converting journey gets no credit rows
                weights = credits.position_weights[index[key]]
                seqs = step[3] or [None]
                for position, (seq, channel, weight) in enumerate(
                    zip(seqs, step[1], weights, strict=True), start=1
                ):
                    row = (step[0], model, seq, position if seq is not None else None, channel)
                    for name, item in zip(credit_rows, (*row, float(weight)), strict=True):
                        credit_rows[name].append(item)
    con.execute(
        """
        create or replace temp table _model_credit_rows as
        select
            unnest($conversion_id::varchar[]) as conversion_id,
            unnest($model::varchar[]) as model,
            unnest($seq::bigint[]) as seq,
            unnest($position::bigint[]) as position,
            unnest($channel::varchar[]) as channel,
            unnest($credit::double[]) as credit
        """,
        credit_rows,
    )
    con.execute(_DATA_DRIVEN_CREDITS_SQL)
    for name in ("_model_credit_rows", "_model_touches", "_model_weights"):
        con.execute(f"drop table if exists {name}")
    con.execute("drop table if exists _non_converting_touches")


# ------------------------------------------------------------------------------------------
# The paths file (SPEC 4.3)
# ------------------------------------------------------------------------------------------


def resolve_model(name: Any, settings: AttributionSettings) -> str:
    """The model a paths file asks for, or a ValueError naming the known ones."""
    known = ", ".join(HEURISTIC_MODELS + DATA_DRIVEN_MODELS)
    if not isinstance(name, str):
        raise ValueError(f"'model' must be a model name, one of: {known}")
    if name in HEURISTIC_MODELS or name in DATA_DRIVEN_MODELS:
        return name
    if name in MODEL_ALIASES:
        return MODEL_ALIASES[name] or settings.last_touch_rule
    aliases = ", ".join(MODEL_ALIASES)
    raise ValueError(f"unknown model {name!r}; known models: {known} (aliases: {aliases})")


def _settings_from_params(params: Any) -> tuple[AttributionSettings, float | None]:
    """Validated model settings and lookback (days, or None: no window) from `params`."""
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise ValueError("'params' must be an object")
    unknown = sorted(set(params) - set(PATHS_FILE_PARAMS))
    if unknown:
        raise ValueError(f"unknown params {unknown}; known params: {', '.join(PATHS_FILE_PARAMS)}")
    lookback = params.get("lookback_days")
    if lookback is not None and (
        isinstance(lookback, bool)
        or not isinstance(lookback, int | float)
        or not math.isfinite(lookback)
        or lookback <= 0
    ):
        raise ValueError(
            f"params.lookback_days must be a positive number of days, not {lookback!r}"
        )
    model_params = {k: v for k, v in params.items() if k != "lookback_days"}
    if isinstance(model_params.get("position_weights"), list):
        model_params["position_weights"] = tuple(model_params["position_weights"])
    try:
        settings = AttributionSettings(**model_params)
    except ValidationError as exc:
        problems = "; ".join(
            f"params.{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(problems) from None
    return settings, lookback


def _timestamp(value: Any, where: str) -> str | None:
    """An ISO 8601 time as UTC text DuckDB reads exactly; naive times are taken as UTC."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{where} must be an ISO 8601 time or null, not {value!r}")
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{where} is not an ISO 8601 time: {value!r}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed.astimezone(dt.UTC).isoformat()


def _number(value: Any, where: str, default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{where} must be a number, not {value!r}")
    if value < 0:
        raise ValueError(f"{where} must not be negative, not {value!r}")
    return float(value)


def _paths_columns(
    paths: Any, needs_time: bool, lookback: float | None, keep_non_converting: bool = False
) -> tuple[dict, dict]:
    """Validate the `paths` list and lay it out as columns (paths, touches) for DuckDB.

    Non-converting paths are kept only when `keep_non_converting` (the data-driven models use
    them; the heuristic models give them no credit).
    """
    if not isinstance(paths, list):
        raise ValueError("'paths' must be a list")
    path_cols: dict[str, list] = {
        k: []
        for k in ("path_id", "path_count", "conversions", "value", "conversion_ts", "converted")
    }
    touch_cols: dict[str, list] = {k: [] for k in ("path_id", "seq", "channel", "ts")}
    for i, path in enumerate(paths):
        where = f"paths[{i}]"
        if not isinstance(path, dict):
            raise ValueError(f"{where} must be an object")
        converted = path.get("converted", True)
        if not isinstance(converted, bool):
            raise ValueError(f"{where}.converted must be true or false")
        touches = path.get("touches")
        if not isinstance(touches, list):
            raise ValueError(f"{where}.touches must be a list")
        count = _number(path.get("count"), f"{where}.count", 1.0)
        conversions = _number(path.get("conversions"), f"{where}.conversions", 1.0)
        value = _number(path.get("value"), f"{where}.value", 0.0)
        conversion_ts = _timestamp(path.get("conversion_ts"), f"{where}.conversion_ts")
        if not converted and not keep_non_converting:
            continue
        # a non-converting path's window ends at its last touch, so it needs no conversion_ts
        if converted and (needs_time or lookback is not None) and conversion_ts is None:
            raise ValueError(f"{where}.conversion_ts is needed by this model or lookback_days")
        previous = None
        for j, touch in enumerate(touches):
            here = f"{where}.touches[{j}]"
            if not isinstance(touch, dict):
                raise ValueError(f"{here} must be an object")
            channel = touch.get("channel")
            if not isinstance(channel, str) or not channel:
                raise ValueError(f"{here}.channel must be a non-empty string")
            ts = _timestamp(touch.get("ts"), f"{here}.ts")
            if ts is None and (needs_time or lookback is not None):
                raise ValueError(f"{here}.ts is needed by this model or lookback_days")
            # touches are taken in the order listed, which must be oldest first
            if ts is not None and previous is not None and ts < previous:
                raise ValueError(f"{where}.touches must be listed oldest first ({here})")
            previous = ts if ts is not None else previous
            for key, item in zip(touch_cols, (i, j + 1, channel, ts), strict=True):
                touch_cols[key].append(item)
        row = (i, count, conversions if converted else 0.0, value, conversion_ts, converted)
        for key, item in zip(path_cols, row, strict=True):
            path_cols[key].append(item)
    return path_cols, touch_cols


_PATHS_FILE_TOUCHES_SQL = f"""
create temp table path_touches as
with
windowed as (
    -- a converting path's window ends at its conversion, a non-converting one's at its last
    -- touch (the moment the journey was last seen)
    select
        t.*,
        coalesce(p.conversion_time, max(t.ts) over (partition by t.path_id)) as window_end
    from file_touches as t
    join path_conversions as p
        on p.conversion_id = t.path_id
)
select
    path_id as conversion_id,
    seq,
    path_id || ':' || seq as touch_id,
    channel,
    channel as credit_channel,
    ts as touch_time,
    true as is_click,
    lower(channel) = lower('{DIRECT_CHANNEL}') as is_direct,
    channel = '{PUSH_CHANNEL}' as is_push,
    null::varchar as campaign_id
from windowed
-- the same window as the pipeline's: nothing after the conversion, nothing before the lookback
where (ts is null or window_end is null or ts <= window_end)
    and (
        $lookback_us is null
        or epoch_us(window_end) - epoch_us(ts) <= $lookback_us
    )
"""

_PATHS_FILE_CONVERTED_SQL = """
create temp view converted_paths as
select *
from path_conversions
where converted;

create temp view converted_touches as
select t.*
from path_touches as t
semi join converted_paths as p
    using (conversion_id)
"""

_PATHS_FILE_TOTALS_SQL = """
with
credits as ({credits}),
weighted as (
    -- `count` repeats a whole path row; `value` is the row's value, `conversions` its count
    select
        c.channel,
        c.value_credit * p.path_count as value_credit,
        c.credit * p.conversions * p.path_count as conversion_credit
    from credits as c
    join converted_paths as p
        using (conversion_id)
    where c.model = $model
),
channels as (
    -- every channel of a converting path is listed, with 0 when the model gave it nothing
    select channel from converted_touches
    union
    select channel from weighted
)
select
    ch.channel,
    coalesce(sum(w.value_credit), 0.0) as value_credit,
    coalesce(sum(w.conversion_credit), 0.0) as conversion_credit
from channels as ch
left join weighted as w
    using (channel)
group by ch.channel
order by ch.channel
"""


def _paths_file_assists_sql(settings: AttributionSettings) -> str:
    """GA-style assists per channel of the converting paths, after the path transform.

    A channel assists a converting path once if it holds any position but the last of the
    transformed path, even when it also holds the last one (Google Analytics' assisted
    conversions). Every channel of a converting path is listed, with 0 when it assisted none.
    """
    return f"""
    with
    {_transform_ctes("converted_touches", settings.path_transform, settings.path_lookback_steps)},
    assisting as (
        select distinct
            conversion_id,
            channel
        from slot_reps
        qualify slot < max(slot) over (partition by conversion_id)
    ),
    weighted as (
        select
            a.channel,
            p.conversions * p.path_count as conversions,
            p.value * p.path_count as value
        from assisting as a
        join converted_paths as p
            using (conversion_id)
    ),
    channels as (
        select distinct channel from converted_touches
    )
    select
        ch.channel,
        coalesce(sum(w.conversions), 0.0) as conversions,
        coalesce(sum(w.value), 0.0) as value
    from channels as ch
    left join weighted as w
        using (channel)
    group by ch.channel
    order by ch.channel
    """


_PATHS_FILE_WEIGHTS_SQL = """
create temp view path_weights as
select
    conversion_id,
    case when converted then path_count * conversions else 0.0 end as conversions,
    case when converted then 0.0 else path_count end as nulls,
    case when converted then path_count * value else 0.0 end as value
from path_conversions
"""


def model_paths_sql(
    touches: str, weights: str, transform: str, lookback_steps: int | None = None
) -> str:
    """SQL of the distinct transformed paths the data-driven models read, aggregated.

    `touches` is a relation like credit_sql's; `weights` has conversion_id, conversions, nulls
    and value for every path, converting or not. Each result row is one distinct path:
    channels (the model's labels, oldest first), slot_sizes (touches each position stands
    for), conversions, nulls and value. A conversion without touches is the path [Direct], as
    the heuristic models' fallback; a non-converting path without touches is no journey and
    is left out.
    """
    return f"""
    select
        coalesce(s.channels, ['{DIRECT_CHANNEL}']) as channels,
        coalesce(s.slot_sizes, [1]) as slot_sizes,
        sum(w.conversions) as conversions,
        sum(w.nulls) as nulls,
        sum(w.value) as value
    from {weights} as w
    left join ({_path_steps_sql(touches, transform, lookback_steps)}) as s
        using (conversion_id)
    where s.conversion_id is not null
        or w.conversions > 0
    group by all
    """


def path_table(rows: list[tuple], transform: str) -> PathTable:
    """A PathTable from model_paths_sql rows.

    Under the frequency transform a step is (channel, touches), so fractribution tells
    `Email(2)` from `Email(1)` as Google's frequency paths do.
    """
    return PathTable.build(
        paths=path_table_keys(rows, transform),
        channels=[tuple(r[0]) for r in rows],
        conversions=[r[-3] for r in rows],
        nulls=[r[-2] for r in rows],
        values=[r[-1] for r in rows],
    )


def path_table_keys(rows: list[tuple], transform: str) -> list[tuple]:
    """Each row's path as the models tell paths apart: (channels, slot_sizes, ...) rows."""
    if transform == "frequency":
        return [tuple(zip(r[0], r[1], strict=True)) for r in rows]
    return [tuple(r[0]) for r in rows]


def attribute_paths(document: dict) -> dict[str, Any]:
    """Credit per channel for a SPEC 4.3 paths document.

    Returns {"credits": {channel: value credit}, "conversions": {channel: conversion credit}},
    plus "removal_effects" (markov) or "shapley_values" (shapley), {channel: figure}, and for
    every model "assists": {"conversions": {channel: n}, "value": {channel: v}}, GA-style
    assisted conversions on the transformed converting paths. The
    heuristic models run the pipeline's model SQL; the data-driven ones pipeline.models, on
    the paths aggregated by the same path transforms. Raises ValueError, with a message naming
    the bad key, for a document it cannot run.
    """
    if not isinstance(document, dict):
        raise ValueError("the paths document must be a JSON object")
    settings, lookback = _settings_from_params(document.get("params"))
    model = resolve_model(document.get("model"), settings)
    data_driven = model in DATA_DRIVEN_MODELS
    path_cols, touch_cols = _paths_columns(
        document.get("paths"),
        needs_time=model == "time_decay",
        lookback=lookback,
        keep_non_converting=data_driven,
    )
    lookback_us = None if lookback is None else round(lookback * _MICROS_PER_DAY)
    con = duckdb.connect()
    try:
        con.execute("set TimeZone = 'UTC'")
        con.execute(
            """
            create temp table path_conversions as
            select
                unnest($path_id::bigint[]) as conversion_id,
                unnest($path_count::double[]) as path_count,
                unnest($conversions::double[]) as conversions,
                unnest($value::double[]) as value,
                unnest($conversion_ts::varchar[])::timestamptz as conversion_time,
                unnest($converted::boolean[]) as converted
            """,
            path_cols,
        )
        con.execute(
            """
            create temp table file_touches as
            select
                unnest($path_id::bigint[]) as path_id,
                unnest($seq::bigint[]) as seq,
                unnest($channel::varchar[]) as channel,
                unnest($ts::varchar[])::timestamptz as ts
            """,
            touch_cols,
        )
        con.execute(_PATHS_FILE_TOUCHES_SQL, {"lookback_us": lookback_us})
        con.execute(_PATHS_FILE_CONVERTED_SQL)
        if data_driven:
            con.execute(_PATHS_FILE_WEIGHTS_SQL)
            rows = con.execute(
                model_paths_sql(
                    "path_touches",
                    "path_weights",
                    settings.path_transform,
                    settings.path_lookback_steps,
                )
            ).fetchall()
        else:
            rows = con.execute(
                _PATHS_FILE_TOTALS_SQL.format(
                    credits=credit_sql("converted_touches", "converted_paths", settings)
                ),
                {"model": model},
            ).fetchall()
        assist_rows = con.execute(_paths_file_assists_sql(settings)).fetchall()
    finally:
        con.close()
    assists = {
        "conversions": {channel: conversions for channel, conversions, _ in assist_rows},
        "value": {channel: value for channel, _, value in assist_rows},
    }
    if not data_driven:
        return {
            "credits": {channel: value for channel, value, _ in rows},
            "conversions": {channel: conversions for channel, _, conversions in rows},
            "assists": assists,
        }
    table = path_table(rows, settings.path_transform)
    result = run_model(model, table, settings.markov_order)
    conversions, values = result.channel_totals(table)
    return {"credits": values, "conversions": conversions, **result.figures, "assists": assists}
