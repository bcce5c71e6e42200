"""GA4 / Firebase BigQuery export adapter: `events_YYYYMMDD` rows to canonical events (SPEC 2.1).

Files under `<landing>/ga4/` are the export as NDJSON (one event per line, INT64 often written as
JSON strings) or as Parquet (the same schema, nested `event_params` as
list<struct<key, value struct<string_value, int_value, float_value, double_value>>>). A Parquet
row is turned into its JSON text first, so both shapes go through one set of SQL.

How the export maps (decisions the export itself does not make for us):

- event_id: the export has none. It is `ga4_` + md5 over the fields that identify one event in
  one export and do not change when the same event is exported again (daily table, a re-run,
  NDJSON or Parquet): stream_id, user_pseudo_id, user_id, event_timestamp, event_name,
  event_bundle_sequence_id, batch_page_id, batch_ordering_id, batch_event_index and every event
  param as `key=value` sorted by key (values normalised, so "1" and 1 hash alike). The params
  are what tell apart two events the SDK sent in the same batch at the same microsecond
  (different engagement_time_msec, event_tag_timestamp). `items` are left out: they describe
  the event, they do not identify it.
- anonymous_id is user_pseudo_id (the cookie id on web; on app streams it is the app instance
  id, kept here rather than as device_id because it resets on reinstall); device_id stays null.
- Traffic source of the session: the first record that has a source, medium or campaign wins
  as a whole (never mixing fields of two records): collected_traffic_source, else
  session_traffic_source_last_click.manual_campaign, else the event params source, medium,
  campaign, content, term. The user-level `traffic_source` record is first-user acquisition
  and is not used. click_id is `gclid:<id>` from collected_traffic_source, the gclid param or
  the page_location query string, else `dclid:<id>`.
- FCM events (push_kind app): notification_receive and notification_foreground (received while
  the app was in the foreground) are push_delivered, notification_open push_opened,
  notification_dismiss push_dismissed. The SDK fills the `message_id` param from the composer
  id of the send (google.c.a.c_id), which every recipient of one send shares, while the
  pipeline treats message_id as one message to one person; so message_id is
  `<message_id param>:<user_pseudo_id>`. campaign_id is message_name (the notification name
  set in the composer), else label (the analytics label of API sends), else a campaign
  param, else the message_id param itself.
- purchase and generate_lead/sign_up: revenue from ecommerce.purchase_revenue else the value
  param, currency from the currency param, order_id from ecommerce.transaction_id else the
  transaction_id param; `(not set)` is GA4's placeholder and becomes null.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ingest import UnreadableFileError, read_json_file

SOURCE = "ga4"

# GA4 event name -> canonical name; anything else is `other`.
EVENT_MAP = {
    "page_view": "page_view",
    "screen_view": "screen_view",
    "session_start": "session_start",
    "purchase": "purchase",
    "view_item": "product_view",
    "add_to_cart": "add_to_cart",
    "begin_checkout": "checkout_start",
    "sign_up": "lead_submit",
    "generate_lead": "lead_submit",
    "login": "identify",
    "notification_receive": "push_delivered",
    "notification_foreground": "push_delivered",
    "notification_open": "push_opened",
    "notification_dismiss": "push_dismissed",
}
# FCM's automatically collected events: app push.
PUSH_EVENTS = tuple(name for name in EVENT_MAP if name.startswith("notification_"))
# Events whose value, currency and transaction id are a conversion's.
VALUE_EVENTS = ("purchase", "generate_lead", "sign_up")

# Params read into canonical columns; they are left out of properties.params.
MAPPED_PARAMS = (
    "ga_session_id",
    "page_location",
    "page_referrer",
    "source",
    "medium",
    "campaign",
    "content",
    "term",
    "gclid",
    "currency",
    "transaction_id",
)
# Params the mapping reads (mapped ones plus those that stay visible in properties too).
READ_PARAMS = MAPPED_PARAMS + ("value", "message_id", "message_name", "label")

# Every value slot read as text: int_value may be a JSON string, and a key may be int in one row
# and double in another, so the slots are coalesced and normalised after reading.
_PARAMS_TYPE = (
    '[{"key": "VARCHAR", "value": {"string_value": "VARCHAR", "int_value": "VARCHAR", '
    '"float_value": "VARCHAR", "double_value": "VARCHAR"}}]'
)
# Microseconds between 1973 and 5138: anything outside is seconds, milliseconds or garbage.
_MIN_MICROS, _MAX_MICROS = 10**14, 10**17
_NOT_SET = "'(not set)'"


def read(
    data: bytes,
    path: str,
    open_sibling: Callable[[str], bytes | None],
    options: Mapping[str, object] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Map one GA4 export file (NDJSON or Parquet) to canonical rows and rejects."""
    con = duckdb.connect()
    try:
        if path.lower().endswith(".parquet"):
            con.register("ga4_lines", _parquet_lines(con, data, path))
        else:
            con.register("ga4_lines", read_json_file(data, path).select(["source_row", "raw"]))
        con.execute(f"create temp table checked as {_CHECK_SQL}")
        rows = con.sql(_MAP_SQL).to_arrow_table()
        rejects = con.sql(
            """
            select source_row, raw, problem as reason
            from checked
            where problem <> ''
            order by source_row
            """
        ).to_arrow_table()
    finally:
        con.close()
    return rows, rejects


def _parquet_lines(con: duckdb.DuckDBPyConnection, data: bytes, path: str) -> pa.Table:
    """Each Parquet row as JSON text (the raw record), numbered from 1."""
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (pa.ArrowInvalid, OSError) as exc:
        raise UnreadableFileError(f"{path}: cannot be read as Parquet: {exc}") from exc
    if "event_timestamp" in table.column_names:
        column = table.column("event_timestamp")
        # A writer that typed the INT64 as a timestamp still means microseconds since epoch.
        if pa.types.is_timestamp(column.type):
            micros = column.cast(pa.timestamp("us", column.type.tz)).cast(pa.int64())
            index = table.column_names.index("event_timestamp")
            table = table.set_column(index, "event_timestamp", micros)
    records = pa.table(
        {
            "source_row": pa.array(range(1, table.num_rows + 1), pa.int64()),
            "rec": table.combine_chunks().to_struct_array(),
        }
    )
    con.register("ga4_records", records)
    return con.sql(
        """
        select source_row, to_json(rec)::varchar as raw
        from ga4_records
        """
    ).to_arrow_table()


def _text(path: str) -> str:
    """A JSON field of the row as text, empty strings as null."""
    return f"nullif(doc ->> '{path}', '')"


def _int_text(path: str) -> str:
    """An INT64 field (number or string in the JSON) as normalised integer text."""
    return f"coalesce(try_cast({_text(path)} as bigint)::varchar, {_text(path)})"


def _money(expr: str) -> str:
    """Decimal text with at most 2 places; exact for decimal text, via double for 1e-05 forms.

    Text that is no number is passed on as it is, so that ingest quarantines the row with the
    value in its reason instead of staging a purchase worth nothing.
    """
    return (
        f"coalesce(try_cast(try_cast({expr} as decimal(38, 9)) as decimal(18, 2))::varchar, "
        f"try_cast(try_cast({expr} as double) as decimal(18, 2))::varchar, {expr}::varchar)"
    )


def _sql_list(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{v}'" for v in values)


_CHECK_SQL = f"""
    with parsed as (
        select
            source_row,
            raw,
            case when json_valid(raw) then json(raw) end as doc
        from ga4_lines
    ),
    fields as (
        select
            *,
            {_text("$.event_timestamp")} as ts_text,
            try_cast({_text("$.event_timestamp")} as bigint) as ts,
            nullif(trim(doc ->> '$.event_name'), '') as ga4_name
        from parsed
    )
    select
        source_row,
        raw,
        doc,
        ts,
        ga4_name,
        case
            when doc is null then 'line is not valid JSON'
            when json_type(doc) <> 'OBJECT' then 'line is JSON but not an object'
            else concat_ws(
                '; ',
                case when ts_text is null then 'event_timestamp is missing' end,
                case
                    when ts_text is not null and ts is null
                    then 'event_timestamp ''' || ts_text || ''' is not an integer'
                    when ts not between {_MIN_MICROS} and {_MAX_MICROS}
                    then 'event_timestamp ' || ts::varchar
                        || ' is not in microseconds since 1970 (seconds or milliseconds?)'
                end,
                case when ga4_name is null then 'event_name is missing' end
            )
        end as problem
    from fields
"""

_PARAM_COLUMNS = ",\n".join(
    f"max(value_text) filter (where key = '{key}') as p_{key}" for key in READ_PARAMS
)

_EVENT_CASE = "\n".join(f"when '{k}' then '{v}'" for k, v in EVENT_MAP.items())

_TRAFFIC_FIELDS = ("source", "medium", "campaign", "content", "term")
# Where each traffic field sits in the three records, in order of preference.
_TRAFFIC_RECORDS = {
    "collected_traffic_source": {
        "source": _text("$.collected_traffic_source.manual_source"),
        "medium": _text("$.collected_traffic_source.manual_medium"),
        "campaign": _text("$.collected_traffic_source.manual_campaign_name"),
        "content": _text("$.collected_traffic_source.manual_content"),
        "term": _text("$.collected_traffic_source.manual_term"),
    },
    "session_traffic_source_last_click": {
        name: _text(
            "$.session_traffic_source_last_click.manual_campaign."
            + ("campaign_name" if name == "campaign" else name)
        )
        for name in _TRAFFIC_FIELDS
    },
    "event_params": {name: f"p_{name}" for name in _TRAFFIC_FIELDS},
}


def _traffic_columns() -> str:
    """One column per traffic field, every field from the one record chosen for the row."""
    columns = []
    for name in _TRAFFIC_FIELDS:
        branches = "\n".join(
            f"when '{record}' then {fields[name]}" for record, fields in _TRAFFIC_RECORDS.items()
        )
        columns.append(f"case traffic_from\n{branches}\nend as utm_{name}")
    return ",\n".join(columns)


def _traffic_from() -> str:
    branches = "\n".join(
        f"when coalesce({fields['source']}, {fields['medium']}, {fields['campaign']}) "
        f"is not null then '{record}'"
        for record, fields in _TRAFFIC_RECORDS.items()
    )
    return f"case\n{branches}\nend"


_MAP_SQL = f"""
    with param_list as (
        select
            source_row,
            unnest(from_json(doc -> '$.event_params', '{_PARAMS_TYPE}')) as p
        from checked
        where problem = ''
    ),
    param_values as (
        select
            source_row,
            p.key as key,
            -- An empty string_value is an empty slot, not the value: the number may sit in
            -- another slot of the same parameter.
            coalesce(
                nullif(p.value.string_value, ''),
                try_cast(p.value.int_value as bigint)::varchar,
                try_cast(p.value.float_value as double)::varchar,
                try_cast(p.value.double_value as double)::varchar
            ) as value_text,
            case
                when nullif(p.value.string_value, '') is not null
                    then to_json(p.value.string_value)
                when try_cast(p.value.int_value as bigint) is not null
                    then to_json(try_cast(p.value.int_value as bigint))
                else to_json(
                    coalesce(
                        try_cast(p.value.float_value as double),
                        try_cast(p.value.double_value as double)
                    )
                )
            end as value_json
        from param_list
    ),
    param_rows as (
        select
            source_row,
            {_PARAM_COLUMNS},
            string_agg(key || '=' || coalesce(value_text, ''), '&' order by key, value_text)
                as fingerprint
        from param_values
        group by source_row
    ),
    extra_params as (
        select
            source_row,
            json_group_object(key, value_json) as params
        from param_values
        where key not in ({_sql_list(MAPPED_PARAMS)})
        group by source_row
    ),
    events as (
        select
            c.source_row,
            c.raw,
            c.doc,
            c.ts,
            c.ga4_name,
            case c.ga4_name
                {_EVENT_CASE}
                else 'other'
            end as event_name,
            p.* exclude (source_row),
            x.params,
            {_text("$.user_pseudo_id")} as pseudo_id,
            {_traffic_from()} as traffic_from
        from checked as c
        left join param_rows as p
            using (source_row)
        left join extra_params as x
            using (source_row)
        where c.problem = ''
    ),
    mapped as (
        select
            *,
            'ga4_' || md5(
                concat_ws(
                    '|',
                    coalesce({_text("$.stream_id")}, ''),
                    coalesce(pseudo_id, ''),
                    coalesce({_text("$.user_id")}, ''),
                    ts::varchar,
                    ga4_name,
                    coalesce({_int_text("$.event_bundle_sequence_id")}, ''),
                    coalesce({_int_text("$.batch_page_id")}, ''),
                    coalesce({_int_text("$.batch_ordering_id")}, ''),
                    coalesce({_int_text("$.batch_event_index")}, ''),
                    coalesce(fingerprint, '')
                )
            ) as event_id,
            ga4_name in ({_sql_list(PUSH_EVENTS)}) as is_push,
            ga4_name in ({_sql_list(VALUE_EVENTS)}) as has_value,
            coalesce(
                'gclid:' || {_text("$.collected_traffic_source.gclid")},
                'gclid:' || p_gclid,
                'gclid:' || nullif(regexp_extract(p_page_location, '[?&#]gclid=([^&#]+)', 1), ''),
                'dclid:' || {_text("$.collected_traffic_source.dclid")}
            ) as click_id
        from events
    )
    select
        event_id,
        '{SOURCE}' as source,
        strftime(make_timestamp(ts), '%Y-%m-%dT%H:%M:%S.%fZ') as event_time,
        event_name,
        {_text("$.user_id")} as user_id,
        pseudo_id as anonymous_id,
        case upper({_text("$.platform")})
            when 'IOS' then 'ios'
            when 'ANDROID' then 'android'
            when 'WEB' then 'web'
            else case when {_text("$.platform")} is not null then 'unknown' end
        end as platform,
        pseudo_id || '.' || p_ga_session_id as session_id,
        {_traffic_columns()},
        p_page_referrer as referrer,
        p_page_location as landing_url,
        click_id,
        case when is_push then coalesce(p_message_name, p_label, p_campaign, p_message_id) end
            as campaign_id,
        case when is_push then p_message_id || ':' || coalesce(pseudo_id, {_text("$.user_id")}) end
            as message_id,
        case when is_push then 'app' end as push_kind,
        case when has_value then
            {_money(f"coalesce({_text('$.ecommerce.purchase_revenue')}, p_value)")}
        end as revenue,
        case when has_value then p_currency end as currency,
        case when has_value then
            coalesce(
                nullif({_text("$.ecommerce.transaction_id")}, {_NOT_SET}),
                nullif(nullif(p_transaction_id, ''), {_NOT_SET})
            )
        end as order_id,
        json_merge_patch(
            '{{}}',
            json_object(
                'original_event_name', case when event_name <> ga4_name then ga4_name end,
                'params', params,
                'items', nullif(json_array_length(doc -> '$.items'), 0),
                'device_category', {_text("$.device.category")},
                'operating_system', {_text("$.device.operating_system")},
                'country', {_text("$.geo.country")},
                'app_id', {_text("$.app_info.id")},
                'stream_id', {_text("$.stream_id")},
                'traffic_source_from', traffic_from
            )
        )::varchar as properties,
        source_row,
        raw
    from mapped
    order by source_row
"""
