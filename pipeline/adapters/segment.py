"""Segment adapter: track / identify / page / screen / alias messages to canonical events.

Two export shapes are read, told apart by the file:
- JSON lines (`.jsonl`, `.ndjson`, `.json`): one message per line, as the HTTP API receives it
  and the S3 destination writes it (camelCase keys, nested `context` and `properties`).
- Warehouse CSV (`.csv`): a Segment warehouse table (`pages`, `screens`, `identifies`,
  `aliases`, `tracks` or a per-event table such as `order_completed`), with flattened snake_case
  columns (`context_campaign_source`, `anonymous_id`, ...). The kind of table comes from its
  columns (`event`/`event_text` make a track table, `previous_id` an alias table), else from a
  file-name token (`..._pages.csv`). A CSV with no `id` and `timestamp` columns is not a Segment
  event table: its rows are rejected, never skipped.

Mapping (JSON path / warehouse column):

    event_id                  `messageId` / `id`
    event_time                `timestamp`: Segment's skew-corrected time, not receivedAt/sentAt
    user_id, anonymous_id     `userId`, `anonymousId` / `user_id`, `anonymous_id`
    device_id                 `context.device.id`; not `advertisingId`, which users reset and
                              which is all zeros under limited ad tracking
    platform                  `context.os.name`, `context.device.type`, `context.library.name`;
                              a page call (analytics.js) is web; else unknown
    session_id                null: Segment has no session id; sessions are built downstream
    utm_*                     `context.campaign` source, medium, name, content, term
    referrer, landing_url     `context.page.referrer` / `.url`, else `properties.referrer` / `.url`
    click_id                  `gclid:<id>` (gbraid, wbraid, msclkid, dclid, fbclid, ttclid) from
                              the page URL's query
    campaign_id, message_id   push events: `properties.campaign.id`, else `campaign_id`, else the
                              campaign name (the mobile spec sends only the name);
                              `properties.message_id`
    revenue, currency,        Order Completed, see below
    order_id
    properties                the message's `properties` (a warehouse row's non-context columns),
                              plus `original_event_name` for `other`, the page or screen `name`
                              and an alias's `previous_id`

Event names: page -> page_view, screen -> screen_view, identify -> identify, alias -> identify
(user_id = userId, anonymous_id = previousId: an alias links the two ids). Track events, matched
on the snake_case form of the name: Order Completed -> purchase, Push Notification Received /
Tapped / Bounced -> push_delivered / push_opened / push_bounced (push_kind app: the mobile spec),
Product Viewed -> product_view, Product Added -> add_to_cart, Checkout Started -> checkout_start,
Signed Up -> identify (SPEC 2.2 files signups under identify). Every other track (Application
Opened included: it fires on every foreground, so it is no session start) and other call types
(group) are `other`, with the original name in properties.

Order Completed revenue excludes shipping and tax (Segment's `revenue`). Without `revenue`,
`subtotal` (after discounts, before shipping and tax) is used, else `total - shipping - tax`.
Currency is `properties.currency`, upper-cased, and USD only when it is absent.

Rejects: a line that is not JSON or not an object, a message with no messageId (id), and a
message with no timestamp or one that is not a time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from pathlib import PurePosixPath

import duckdb
import pyarrow as pa

from pipeline.ingest import read_csv_file, read_json_file

SOURCE = "segment"

# Track events with a canonical meaning, keyed by the snake_case form of the Segment name.
TRACK_EVENTS = {
    "order_completed": "purchase",
    "push_notification_received": "push_delivered",
    "push_notification_tapped": "push_opened",
    "push_notification_bounced": "push_bounced",
    "product_viewed": "product_view",
    "product_added": "add_to_cart",
    "checkout_started": "checkout_start",
    "signed_up": "identify",
}

# Warehouse table kinds named in a file name, and the call type each holds.
TABLE_KINDS = {
    "pages": "page",
    "screens": "screen",
    "identifies": "identify",
    "aliases": "alias",
    "tracks": "track",
}

# Warehouse columns that are Segment's own bookkeeping or mapped to canonical columns; every
# other column of a warehouse row is a property.
SYSTEM_COLUMNS = {
    "id",
    "anonymous_id",
    "user_id",
    "previous_id",
    "received_at",
    "sent_at",
    "timestamp",
    "original_timestamp",
    "uuid",
    "uuid_ts",
    "loaded_at",
    "event",
    "event_text",
}

# Ad click ids read from a landing URL, written `<parameter>:<id>` like the other sources.
CLICK_ID_REGEX = r"[?&#](gclid|gbraid|wbraid|msclkid|dclid|fbclid|ttclid)=([^&#]+)"

# The fields of a message, as JSON paths on the raw line. Push campaign ids fall back to the
# campaign name: the mobile spec's push events carry only `campaign.name`.
JSON_FIELDS = {
    "message_id": "$.messageId",
    "ts": "$.timestamp",
    "call_type": "$.type",
    "event_text": "$.event",
    "user_id": "$.userId",
    "anonymous_id": "$.anonymousId",
    "previous_id": "$.previousId",
    "device_id": "$.context.device.id",
    "device_type": "$.context.device.type",
    "os_name": "$.context.os.name",
    "library": "$.context.library.name",
    "page_url": ("$.context.page.url", "$.properties.url"),
    "page_referrer": ("$.context.page.referrer", "$.properties.referrer"),
    "utm_source": "$.context.campaign.source",
    "utm_medium": "$.context.campaign.medium",
    "utm_campaign": "$.context.campaign.name",
    "utm_content": "$.context.campaign.content",
    "utm_term": "$.context.campaign.term",
    "revenue": "$.properties.revenue",
    "subtotal": "$.properties.subtotal",
    "total": "$.properties.total",
    "shipping": "$.properties.shipping",
    "tax": "$.properties.tax",
    "currency": "$.properties.currency",
    "order_id": "$.properties.order_id",
    "push_campaign_id": (
        "$.properties.campaign.id",
        "$.properties.campaign_id",
        "$.properties.campaign.name",
    ),
    "push_message_id": ("$.properties.message_id", "$.properties.messageId"),
    "call_name": "$.name",
}

# The same fields as warehouse columns (the flattened, snake_case names).
CSV_FIELDS = {
    "message_id": "id",
    "ts": "timestamp",
    "event_text": ("event_text", "event"),
    "user_id": "user_id",
    "anonymous_id": "anonymous_id",
    "previous_id": "previous_id",
    "device_id": "context_device_id",
    "device_type": "context_device_type",
    "os_name": "context_os_name",
    "library": "context_library_name",
    "page_url": ("context_page_url", "url"),
    "page_referrer": ("context_page_referrer", "referrer"),
    "utm_source": "context_campaign_source",
    "utm_medium": "context_campaign_medium",
    "utm_campaign": "context_campaign_name",
    "utm_content": "context_campaign_content",
    "utm_term": "context_campaign_term",
    "revenue": "revenue",
    "subtotal": "subtotal",
    "total": "total",
    "shipping": "shipping",
    "tax": "tax",
    "currency": "currency",
    "order_id": "order_id",
    "push_campaign_id": ("campaign_id", "campaign_name"),
    "push_message_id": "message_id",
    "call_name": "name",
}


def read(
    data: bytes,
    path: str,
    open_sibling: Callable[[str], bytes | None],
    options: Mapping[str, object] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Map one Segment file (JSON lines or a warehouse CSV table) to canonical rows and rejects.

    Segment files are self-contained: `open_sibling` is not used.
    """
    with duckdb.connect() as con:
        con.execute("set TimeZone = 'UTC'")
        if path.lower().endswith(".csv"):
            parse_rejects = _stage_csv(con, data, path)
        else:
            parse_rejects = _stage_json(con, data, path)
        con.execute(f"create temp table mapped as {_MAP_SQL}")
        rows = con.sql(
            "select * exclude (reason) from mapped where reason is null order by source_row"
        ).to_arrow_table()
        rejects = con.sql(
            "select source_row, raw, reason from mapped where reason is not null"
        ).to_arrow_table()
    rejects = pa.concat_tables([parse_rejects, rejects.cast(parse_rejects.schema)])
    return rows, rejects.sort_by("source_row")


def _json_text(path: str) -> str:
    return f"nullif(trim(doc ->> '{path}'), '')"


def _stage_json(con: duckdb.DuckDBPyConnection, data: bytes, path: str) -> pa.Table:
    """Load the lines into the temp table `messages`; return lines that are no JSON object."""
    lines = read_json_file(data, path).select(["source_row", "raw"])
    con.register("json_lines", lines)
    con.execute(
        """
        create temp table checked as
        select
            source_row,
            raw,
            case
                when not json_valid(raw) then 'line is not valid JSON'
                when json_type(raw::json) <> 'OBJECT' then 'line is JSON but not an object'
            end as reason
        from json_lines
        """
    )
    fields = []
    for name, paths in JSON_FIELDS.items():
        paths = (paths,) if isinstance(paths, str) else paths
        fields.append(f"coalesce({', '.join(_json_text(p) for p in paths)}) as {name}")
    # Properties must be an object to be kept as such; anything else is left out of it.
    properties = (
        "case when json_type(doc -> '$.properties') = 'OBJECT' "
        "then (doc -> '$.properties')::varchar else '{}' end"
    )
    con.execute(
        f"""
        create temp table messages as
        select
            source_row,
            raw,
            {", ".join(fields)},
            {properties} as base_properties,
            null::varchar as problem,
            'messageId' as id_field
        from (
            -- Parsed once, read many times.
            select source_row, raw, raw::json as doc
            from checked
            where reason is null
        )
        """
    )
    return con.sql(
        "select source_row, raw, reason from checked where reason is not null"
    ).to_arrow_table()


def _table_kind(columns: set[str], path: str) -> str | None:
    """The call type a warehouse table holds, from its columns or else its file name."""
    if columns & {"event", "event_text"}:
        return "track"
    if "previous_id" in columns:
        return "alias"
    stem = PurePosixPath(path).stem.lower()
    for token, kind in TABLE_KINDS.items():
        if re.search(rf"(^|[^a-z]){token}([^a-z]|$)", stem):
            return kind
    return None


def _stage_csv(con: duckdb.DuckDBPyConnection, data: bytes, path: str) -> pa.Table:
    """Load a warehouse table into the temp table `messages`; return its unparseable rows."""
    table, parse_rejects = read_csv_file(data, path)
    table = table.drop_columns(["source_file", "format"])
    columns = set(table.column_names) - {"source_row"}
    kind = _table_kind(columns, path)

    def column(name: str) -> str:
        return f"nullif(trim({_quote(name)}), '')" if name in columns else "null"

    fields = []
    for name, sources in CSV_FIELDS.items():
        sources = (sources,) if isinstance(sources, str) else sources
        fields.append(f"coalesce({', '.join(column(s) for s in sources)}) as {name}")
    prop_columns = [
        c
        for c in table.column_names
        if c in columns - SYSTEM_COLUMNS and not c.startswith("context_")
    ]
    # A CSV that is no Segment event table (say a lookup table) gets every row rejected.
    missing = [c for c in ("id", "timestamp") if c not in columns]
    if missing:
        problem = f"not a Segment event table: the header has no {' or '.join(missing)} column"
    elif kind is None:
        problem = (
            "cannot tell the table kind of this Segment warehouse file: name it pages, "
            "screens, identifies, aliases or tracks, or give it an event column"
        )
    else:
        problem = None
    con.register("csv_rows", table)
    # The raw record of a table row is the row as JSON (as pipeline.ingest writes it); properties
    # are the non-empty property columns.
    con.execute(
        f"""
        create temp table messages as
        select
            source_row,
            {_row_json([c for c in table.column_names if c != "source_row"])} as raw,
            {", ".join(fields)},
            {_literal(kind)} as call_type,
            json_merge_patch('{{}}', {_row_json(prop_columns)})::varchar as base_properties,
            {_literal(problem)} as problem,
            'id' as id_field
        from csv_rows
        """
    )
    return parse_rejects.select(["source_row", "raw", "reason"])


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str | None) -> str:
    return "null::varchar" if text is None else "'" + text.replace("'", "''") + "'"


def _row_json(columns: list[str]) -> str:
    """SQL for a JSON object of the named columns of a row ('{}' when there are none)."""
    if not columns:
        return "'{}'"
    return "to_json({" + ", ".join(f"{_literal(c)}: {_quote(c)}" for c in columns) + "})::varchar"


def _number(name: str) -> str:
    return f"try_cast({name} as decimal(18, 2))"


def _bad_number(name: str) -> str:
    return f"case when {name} is not null and {_number(name)} is null then {name} end"


_TRACK_CASES = "\n                ".join(
    f"when '{key}' then '{name}'" for key, name in TRACK_EVENTS.items()
)
_PUSH_EVENTS = "('push_delivered', 'push_opened', 'push_bounced')"

# One set-based pass over `messages`: canonical columns, plus `reason` for rejected messages.
_MAP_SQL = f"""
with typed as (
    select
        *,
        try_cast(ts as timestamptz) as ts_value,
        lower(coalesce(call_type, '')) as call,
        trim(regexp_replace(lower(coalesce(event_text, '')), '[^a-z0-9]+', '_', 'g'), '_')
            as event_key,
        regexp_extract(page_url, '{CLICK_ID_REGEX}', ['key', 'value']) as click
    from messages
),
named as (
    select
        *,
        case
            when call = 'page' then 'page_view'
            when call = 'screen' then 'screen_view'
            when call in ('identify', 'alias') then 'identify'
            when call = 'track' then case event_key
                {_TRACK_CASES}
                else 'other'
            end
            else 'other'
        end as event_name
    from typed
)
select
    source_row,
    raw,
    case
        when problem is not null then problem
        when message_id is null then id_field || ' is missing'
        when ts is null then 'timestamp is missing'
        when ts_value is null then 'timestamp ''' || ts || ''' is not an ISO-8601 time'
    end as reason,
    message_id as event_id,
    '{SOURCE}' as source,
    strftime(ts_value at time zone 'UTC', '%Y-%m-%dT%H:%M:%S.%fZ') as event_time,
    event_name,
    user_id,
    case when call = 'alias' then previous_id else anonymous_id end as anonymous_id,
    device_id,
    case
        when regexp_matches(lower(coalesce(os_name, '')), '^(ios|ipados|iphone os)$')
            or lower(device_type) = 'ios'
            or lower(library) in ('analytics-ios', 'analytics-swift')
            then 'ios'
        when lower(os_name) = 'android'
            or lower(device_type) = 'android'
            or lower(library) = 'analytics-android'
            then 'android'
        when lower(library) in ('analytics.js', 'analytics-next') or call = 'page' then 'web'
        else 'unknown'
    end as platform,
    null as session_id,
    utm_source,
    utm_medium,
    utm_campaign,
    utm_content,
    utm_term,
    page_referrer as referrer,
    page_url as landing_url,
    case when click.value <> '' then click.key || ':' || click.value end as click_id,
    case when event_name in {_PUSH_EVENTS} then push_campaign_id end as campaign_id,
    case when event_name in {_PUSH_EVENTS} then push_message_id end as message_id,
    case when event_name in {_PUSH_EVENTS} then 'app' end as push_kind,
    case
        when event_name <> 'purchase' then null
        when revenue is not null then revenue
        when subtotal is not null then subtotal
        when total is null then null
        -- An unreadable part is passed on as it is, so that ingest quarantines it by name.
        else coalesce(
            {_bad_number("total")},
            {_bad_number("shipping")},
            {_bad_number("tax")},
            (
                {_number("total")}
                - coalesce({_number("shipping")}, 0)
                - coalesce({_number("tax")}, 0)
            )::varchar
        )
    end as revenue,
    case when event_name = 'purchase' then upper(coalesce(currency, 'USD')) end as currency,
    case when event_name = 'purchase' then order_id end as order_id,
    json_merge_patch(
        base_properties,
        json_merge_patch(
            '{{}}',
            json_object(
                'original_event_name',
                case when event_name = 'other' then coalesce(event_text, call_type) end,
                'name',
                call_name,
                'previous_id',
                previous_id,
                'alias_anonymous_id',
                case when call = 'alias' then anonymous_id end
            )
        )
    )::varchar as properties
from named
"""
