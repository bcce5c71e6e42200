"""Snowplow adapter: atomic events exported from the warehouse as CSV, to canonical events.

An events file is the atomic `events` table with a header (`.csv`, or `.tsv` with a header).
Self-describing contexts and unstructured events come in either of the two warehouse layouts,
and both are read:
- inline JSON columns on the event row (BigQuery, Snowflake, Databricks), e.g.
  `contexts_com_snowplowanalytics_snowplow_ecommerce_transaction_1_0_0` holding a JSON array, or
  `unstruct_event_..._snowplow_ecommerce_action_1_0_0` holding an object (or a one-item array);
- split context tables beside the events file (Redshift, Postgres), e.g.
  `com_snowplowanalytics_snowplow_ecommerce_transaction_1.csv`, joined on `root_id = event_id`
  and read through `open_sibling`. Where both hold a value the context table wins.
A context table read as a file of its own (a header with `root_id` and no `event_id`) holds no
events: it returns two empty tables, and its rows count only through the events they describe.

Mapping:

    event_id               `event_id`; duplicate ids are kept (ingest drops and counts them)
    event_time             `derived_tstamp` (Snowplow's skew-corrected time), else
                           `collector_tstamp` (noted in properties as event_time_source)
    user_id                `user_id`
    anonymous_id           `domain_userid`, else the client_session context's `userId` (the app
                           install id of mobile trackers)
    device_id              null: `network_userid` is the collector's third-party cookie, shared
                           across the sites and apps of one collector; linking on it would merge
                           people, so it stays in properties
    platform               `platform` web -> web; mob, app and others -> android or ios from the
                           tracker version (`andr-`, `ios-`), OS and user agent, else unknown
    session_id             `domain_sessionid`, else the client_session context's `sessionId`
    utm_*                  `mkt_source`, `mkt_medium`, `mkt_campaign`, `mkt_content`, `mkt_term`
    click_id               `mkt_clickid` prefixed by its `mkt_network`'s parameter (Google ->
                           `gclid:<id>`, Microsoft -> `msclkid:`, ...)
    referrer, landing_url  `page_referrer` (else rebuilt from `refr_*`), `page_url`
    revenue, currency,     purchases, see below
    order_id
    properties             app and event names, `network_userid`, `refr_medium`/`refr_source`,
                           `se_*`, `tr_*`, `ti_*`, the ecommerce action, transaction, checkout
                           step and user fields, when present

Event names come from `event_name` (else `event`): page_view -> page_view, screen_view ->
screen_view, the legacy `transaction` -> purchase, and `snowplow_ecommerce_action` by the type of
its action: product_view -> product_view, add_to_cart -> add_to_cart, checkout_step at step 1 ->
checkout_start, transaction -> purchase. Everything else (page_ping, link_click, struct events,
transaction_item, the other ecommerce actions and actions with no type) is `other`, with the
original name (and the action type) in properties.

Revenue excludes shipping and tax, as Segment's and GA4's do, so that sources add up: the legacy
`tr_total - tr_tax - tr_shipping` in `tr_currency`, and the transaction context's
`revenue - tax - shipping` in its `currency` (its revenue includes shipping: in the public
samples a 12 EUR product with 1 EUR shipping has revenue 13). The gross figures stay in
properties. No currency is assumed when the export has none.

Rejects: rows with no event_id, or with neither timestamp readable; rows with the wrong number of
fields. A headerless enriched TSV cannot be mapped by column name: its lines are rejected with
that reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import duckdb
import pyarrow as pa

from pipeline.adapters import rejects_table
from pipeline.ingest import csv_header, read_delimited

SOURCE = "snowplow"


@dataclass(frozen=True)
class Context:
    """A context (or unstructured event) read from a split table or an inline JSON column.

    `fields` maps each output name to (column of the split table, key of the inline JSON).
    """

    tables: tuple[str, ...]
    inline: str
    fields: dict[str, tuple[str, str]]


CONTEXTS = (
    Context(
        (
            "com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action_1.csv",
            "com_snowplowanalytics_snowplow_ecommerce_action_1.csv",
        ),
        "unstruct_event_com_snowplowanalytics_snowplow_ecommerce_snowplow_ecommerce_action_1",
        {"action_type": ("type", "type"), "action_name": ("name", "name")},
    ),
    Context(
        ("com_snowplowanalytics_snowplow_ecommerce_transaction_1.csv",),
        "contexts_com_snowplowanalytics_snowplow_ecommerce_transaction_1",
        {
            "transaction_id": ("transaction_id", "transaction_id"),
            "transaction_revenue": ("revenue", "revenue"),
            "transaction_shipping": ("shipping", "shipping"),
            "transaction_tax": ("tax", "tax"),
            "transaction_currency": ("currency", "currency"),
            "payment_method": ("payment_method", "payment_method"),
        },
    ),
    Context(
        ("com_snowplowanalytics_snowplow_ecommerce_checkout_step_1.csv",),
        "contexts_com_snowplowanalytics_snowplow_ecommerce_checkout_step_1",
        {"checkout_step": ("step", "step")},
    ),
    Context(
        ("com_snowplowanalytics_snowplow_client_session_1.csv",),
        "contexts_com_snowplowanalytics_snowplow_client_session_1",
        {"client_session_id": ("session_id", "sessionId"), "client_user_id": ("user_id", "userId")},
    ),
    Context(
        ("com_snowplowanalytics_snowplow_ecommerce_user_1.csv",),
        "contexts_com_snowplowanalytics_snowplow_ecommerce_user_1",
        {"ecommerce_user_id": ("id", "id"), "ecommerce_user_is_guest": ("is_guest", "is_guest")},
    ),
)

# Atomic columns the mapping reads; a column the export lacks reads as null.
ATOMIC_COLUMNS = (
    "app_id",
    "platform",
    "event",
    "event_name",
    "event_vendor",
    "event_id",
    "collector_tstamp",
    "derived_tstamp",
    "dvce_created_tstamp",
    "user_id",
    "domain_userid",
    "domain_sessionid",
    "domain_sessionidx",
    "network_userid",
    "v_tracker",
    "os_family",
    "os_name",
    "useragent",
    "page_url",
    "page_title",
    "page_referrer",
    "refr_urlscheme",
    "refr_urlhost",
    "refr_urlpath",
    "refr_medium",
    "refr_source",
    "refr_term",
    "mkt_source",
    "mkt_medium",
    "mkt_campaign",
    "mkt_content",
    "mkt_term",
    "mkt_clickid",
    "mkt_network",
    "se_category",
    "se_action",
    "se_label",
    "se_property",
    "se_value",
    "tr_orderid",
    "tr_affiliation",
    "tr_total",
    "tr_tax",
    "tr_shipping",
    "tr_currency",
    "ti_orderid",
    "ti_sku",
    "ti_name",
    "ti_category",
    "ti_price",
    "ti_quantity",
)

# Values copied to properties when present (besides the original event name).
PROPERTY_COLUMNS = (
    "app_id",
    "event",
    "event_vendor",
    "network_userid",
    "domain_sessionidx",
    "page_title",
    "refr_medium",
    "refr_source",
    "refr_term",
    "mkt_network",
    "se_category",
    "se_action",
    "se_label",
    "se_property",
    "se_value",
    "tr_orderid",
    "tr_affiliation",
    "tr_total",
    "tr_tax",
    "tr_shipping",
    "tr_currency",
    "ti_orderid",
    "ti_sku",
    "ti_name",
    "ti_category",
    "ti_price",
    "ti_quantity",
    "action_type",
    "action_name",
    "transaction_id",
    "transaction_revenue",
    "transaction_shipping",
    "transaction_tax",
    "transaction_currency",
    "payment_method",
    "checkout_step",
    "ecommerce_user_id",
    "ecommerce_user_is_guest",
    "collector_tstamp",
    "dvce_created_tstamp",
)

# The URL parameter behind each click-id network the campaign attribution enrichment names.
CLICK_NETWORKS = {
    "google": "gclid",
    "microsoft": "msclkid",
    "doubleclick": "dclid",
    "facebook": "fbclid",
    "tiktok": "ttclid",
}


def read(
    data: bytes,
    path: str,
    open_sibling: Callable[[str], bytes | None],
    options: Mapping[str, object] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Map one Snowplow events file (and its split context tables) to canonical rows and rejects.

    A context table returns two empty tables: it holds no events of its own.
    """
    delimiter = "\t" if path.lower().endswith(".tsv") else ","
    header = csv_header(data, delimiter)
    if "event_id" not in header and "root_id" in header:
        return _empty_rows(), rejects_table()
    if "event_id" not in header:
        lines = data.decode("utf-8", errors="replace").splitlines()
        numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
        reason = (
            "not a Snowplow events table: the header has no event_id column (a headerless "
            "enriched TSV must be exported from the warehouse with a header)"
        )
        return _empty_rows(), rejects_table(
            [n for n, _ in numbered], [line for _, line in numbered], [reason] * len(numbered)
        )
    events, parse_rejects = read_delimited(data, path, delimiter, "a Snowplow table")
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        con.register("events", events)
        present = set(events.column_names)
        for index, context in enumerate(CONTEXTS):
            _stage_context(con, index, context, open_sibling)
        con.execute(f"create temp table mapped as {_map_sql(events.column_names, present)}")
        rows = con.sql(
            "select * exclude (reason) from mapped where reason is null order by source_row"
        ).to_arrow_table()
        rejects = con.sql(
            "select source_row, raw, reason from mapped where reason is not null"
        ).to_arrow_table()
    rejects = pa.concat_tables([parse_rejects, rejects.cast(parse_rejects.schema)])
    return rows, rejects.sort_by("source_row")


def _empty_rows() -> pa.Table:
    return pa.table(
        {
            "source_row": pa.array([], pa.int64()),
            "raw": pa.array([], pa.string()),
            "source": pa.array([], pa.string()),
        }
    )


def _stage_context(
    con: duckdb.DuckDBPyConnection,
    index: int,
    context: Context,
    open_sibling: Callable[[str], bytes | None],
) -> None:
    """Load a split context table as `context_<index>`: one row per root_id (the first one)."""
    outputs = list(context.fields)
    table = None
    for name in context.tables:
        data = open_sibling(name)
        if data is not None:
            table, _ = read_delimited(data, name, ",", "a Snowplow table")
            break
    if table is None or "root_id" not in table.column_names:
        columns = ", ".join(f"null::varchar as {c}" for c in ["root_id", *outputs])
        con.execute(f"create temp table context_{index} as select {columns} where false")
        return
    present = set(table.column_names)
    columns = ", ".join(
        f"{_quote(source) if source in present else 'null::varchar'} as {output}"
        for output, (source, _) in context.fields.items()
    )
    con.register(f"context_file_{index}", table)
    # Empty strings are how CSV exports write nulls; they must not hide the inline value.
    con.execute(
        f"""
        create temp table context_{index} as
        select
            root_id,
            {", ".join(f"nullif(trim({c}), '') as {c}" for c in outputs)}
        from (
            select root_id, source_row, {columns}
            from context_file_{index}
        )
        where root_id is not null
        qualify row_number() over (partition by root_id order by source_row) = 1
        """
    )


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _inline(columns: list[str], context: Context, key: str) -> str:
    """SQL for a field of an inline context: the first item of its JSON, in any version column."""
    matches = [c for c in columns if c == context.inline or c.startswith(context.inline + "_")]
    values = []
    for column in matches:
        col = _quote(column)
        first = (
            f"case when json_valid({col}) then case when json_type({col}) = 'ARRAY' "
            f"then json_extract({col}, '$[0]') else {col}::json end end"
        )
        values.append(f"nullif(trim(({first}) ->> {_literal('$.' + key)}), '')")
    return f"coalesce({', '.join(values)})" if values else "null"


def _number(name: str) -> str:
    return f"try_cast({name} as decimal(18, 2))"


def _net_revenue(total: str, tax: str, shipping: str) -> str:
    """SQL for total - tax - shipping; a part that is no number is passed on as it is, so that
    ingest quarantines the row naming the value."""
    bad = [
        f"case when {c} is not null and {_number(c)} is null then {c} end"
        for c in (total, tax, shipping)
    ]
    net = f"({_number(total)} - coalesce({_number(tax)}, 0) - coalesce({_number(shipping)}, 0))"
    return f"case when {total} is not null then coalesce({', '.join(bad)}, {net}::varchar) end"


def _map_sql(columns: list[str], present: set[str]) -> str:
    """One set-based pass over `events` and the staged contexts: canonical columns and `reason`."""
    atomic = ",\n                ".join(
        f"nullif(trim(e.{_quote(c)}), '') as {c}" if c in present else f"null::varchar as {c}"
        for c in ATOMIC_COLUMNS
    )
    context_fields = []
    joins = []
    for index, context in enumerate(CONTEXTS):
        joins.append(f"left join context_{index} as c{index} on c{index}.root_id = e.event_id")
        for output, (_, key) in context.fields.items():
            context_fields.append(
                f"coalesce(c{index}.{output}, {_inline(columns, context, key)}) as {output}"
            )
    raw_columns = [c for c in columns if c != "source_row"]
    raw = "to_json({" + ", ".join(f"{_literal(c)}: e.{_quote(c)}" for c in raw_columns) + "})"
    networks = " ".join(f"when {_literal(k)} then {_literal(v)}" for k, v in CLICK_NETWORKS.items())
    properties = ", ".join(f"{_literal(c)}, {c}" for c in PROPERTY_COLUMNS)
    return f"""
        with base as (
            select
                e.source_row,
                {raw}::varchar as raw,
                {atomic},
                {", ".join(context_fields)}
            from events as e
            {" ".join(joins)}
        ),
        timed as (
            select
                *,
                try_cast(derived_tstamp as timestamptz) as derived_value,
                try_cast(collector_tstamp as timestamptz) as collector_value,
                coalesce(event_name, event) as original_name,
                lower(
                    concat_ws(' ', v_tracker, os_family, os_name, useragent)
                ) as device_text
            from base
        ),
        named as (
            select
                *,
                coalesce(derived_value, collector_value) as ts_value,
                case
                    when original_name = 'page_view' then 'page_view'
                    when original_name = 'screen_view' then 'screen_view'
                    when original_name = 'transaction' then 'purchase'
                    when original_name = 'snowplow_ecommerce_action' then case
                        when action_type = 'product_view' then 'product_view'
                        when action_type = 'add_to_cart' then 'add_to_cart'
                        when action_type = 'checkout_step' and checkout_step = '1'
                            then 'checkout_start'
                        when action_type = 'transaction' then 'purchase'
                        else 'other'
                    end
                    else 'other'
                end as canonical_name
            from timed
        )
        select
            source_row,
            raw,
            case
                when event_id is null then 'event_id is missing'
                when ts_value is null then
                    'no usable timestamp: derived_tstamp '
                    || coalesce('''' || derived_tstamp || '''', 'missing')
                    || ', collector_tstamp '
                    || coalesce('''' || collector_tstamp || '''', 'missing')
            end as reason,
            event_id,
            '{SOURCE}' as source,
            strftime(ts_value at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') as event_time,
            canonical_name as event_name,
            user_id,
            coalesce(domain_userid, client_user_id) as anonymous_id,
            null as device_id,
            case
                when lower(platform) = 'web' then 'web'
                when regexp_matches(device_text, '(^|[^a-z])andr(oid)?([^a-z]|$)')
                    then 'android'
                when regexp_matches(device_text, '(^|[^a-z])(ios|ipados|iphone|ipad)([^a-z]|$)')
                    then 'ios'
                else 'unknown'
            end as platform,
            coalesce(domain_sessionid, client_session_id) as session_id,
            mkt_source as utm_source,
            mkt_medium as utm_medium,
            mkt_campaign as utm_campaign,
            mkt_content as utm_content,
            mkt_term as utm_term,
            coalesce(
                page_referrer,
                case
                    when refr_urlhost is not null
                        then coalesce(refr_urlscheme, 'http') || '://' || refr_urlhost
                            || coalesce(refr_urlpath, '')
                end
            ) as referrer,
            page_url as landing_url,
            case
                when mkt_clickid is not null then
                    case lower(mkt_network) {networks} else coalesce(lower(mkt_network), 'click')
                    end || ':' || mkt_clickid
            end as click_id,
            null as campaign_id,
            null as message_id,
            null as push_kind,
            case
                when canonical_name <> 'purchase' then null
                when original_name = 'transaction'
                    then {_net_revenue("tr_total", "tr_tax", "tr_shipping")}
                else
                    {_net_revenue("transaction_revenue", "transaction_tax", "transaction_shipping")}
            end as revenue,
            case
                when canonical_name = 'purchase' then upper(
                    case when original_name = 'transaction' then tr_currency
                    else transaction_currency end
                )
            end as currency,
            case
                when canonical_name = 'purchase' then
                    case when original_name = 'transaction' then tr_orderid else transaction_id end
            end as order_id,
            json_merge_patch(
                '{{}}',
                json_object(
                    'original_event_name',
                    case when canonical_name = 'other' then original_name end,
                    'event_time_source',
                    case when derived_value is null and collector_value is not null
                        then 'collector_tstamp' end,
                    {properties}
                )
            )::varchar as properties
        from named
    """
