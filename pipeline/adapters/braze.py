"""Braze Currents adapter: Avro event files to canonical events (SPEC 2.1).

Currents writes Avro object-container files, one event type per file. The event type is read
from the path: a folder `event_type=<type>` (Currents' storage layout), else a file or folder
named like a type (`users.messages.pushnotification.Send.avro`), else the writer schema's name
(`dataexport.S3.inner.<type>`, which is all a 2017-era object name such as
`dataexport.S3.integration.<app group>+2+0000035465.avro` has to go on). Every file is decoded
with its own writer schema, so versions of one event type with fields added or dropped can sit
in one folder; a field a version lacks is simply null.

Decoding is the only per-record Python: each record becomes its JSON text (also kept as `raw`),
and one DuckDB query over the file maps all of them.

| Braze event type | event_name | notes |
|---|---|---|
| users.messages.pushnotification.Send | push_sent | Braze reports sends, not deliveries |
| ...pushnotification.Open | push_opened | |
| ...pushnotification.Bounce | push_bounced | |
| ...pushnotification.InfluencedOpen | push_influenced_open | |
| ...pushnotification.IosForeground | push_delivered | see below |
| ...pushnotification.Abort / Retry | other | push columns kept |
| users.behaviors.Purchase | purchase | revenue = price (x quantity) in cents |
| users.behaviors.CustomEvent | other, or the setting sources.braze.custom_events[name] | |
| users.behaviors.app.SessionStart | session_start | session_id |
| users.campaigns.EnrollInControl | holdout_assigned | holdout_group control |
| users.UserOrphan | identity_merge | see below |
| users.UserDeleteRequest | deletion_request | |
| anything else, users.campaigns.Conversion included | other | original_event_name = type |

Decisions where Braze's documentation leaves room:

- Identifiers: user_id is `external_user_id`. Braze's own `user_id` (the profile's BSON id, on
  every event, anonymous profiles included) goes to anonymous_id as `braze:<id>`: the prefix
  keeps it apart from other sources' cookie ids, and an event carrying both ids links the
  profile to the known user in pipeline.identity, so an anonymous profile's history joins the
  person once the profile is identified. A Braze profile holds at most one external id, so the
  shared-device guard does not trip on it.
- users.UserOrphan (a profile merged into another one, `orphaned_by_id`) becomes identity_merge
  with anonymous_id = `braze:<orphaned_by_id>` (the surviving profile) and device_id = the
  orphan's device, so identity links the orphan's device, and through it the orphan's history,
  to the survivor. user_id stays empty: the event names the survivor only by its Braze id, and
  the orphan's external id there would make the survivor's profile look shared between two
  users. The orphan's ids are kept in properties as `merged_anonymous_id` and `merged_user_id`
  (identity.py reads `merged_user_id` only beside a user_id, so it links nothing today). An
  orphan event without a device_id therefore links nothing new.
- Push messages: message_id = `dispatch_id:<Braze user id>`. A dispatch is one send of a
  campaign to its whole audience, and Send, Open, Bounce, InfluencedOpen and IosForeground all
  carry it, so this id is unique per user send and joins a send to its open. Files without a
  dispatch_id (2017 exports) leave message_id empty. campaign_id is `campaign_id`, else the
  Canvas' `canvas_id` for a Canvas send (the Canvas is the unit a marketer reports on; the step
  id stays in properties). push_kind is web when platform is web, else app. Braze platforms
  other than ios, android and web (kindle, tvos, roku) are `unknown`.
- IosForeground (an iOS notification that arrived while the app was open) is push_delivered:
  it proves delivery of that message, and the user did not tap it, so it must not count as an
  open.
- Purchase: Currents' price is a 32-bit float; it is read back as its shortest decimal text
  (3.140000104904175 is 3.14) and rounded half up to cents. The current schema has no quantity
  (the SDKs log a purchase of quantity 3 as three events); a schema version that has one is
  multiplied in. Currents has no order id; a top-level `order_id` field is used when a version
  has one. An `order_id` inside the custom properties is not promoted, since Braze logs each
  product of an order as its own event and a shared order id would make the downstream dedupe
  by order id drop real revenue.
- users.campaigns.Conversion is Braze's own conversion tracking (a conversion event it credits
  to a campaign), not a conversion of ours: it stays `other`, so the purchase behind it is not
  counted twice.
- The sample files hold placeholder values (`time` in 2034): they are mapped as they are.

properties holds the record's other non-null fields (ad ids, push tokens and the app group id
are left out; raw keeps everything), Braze's JSON-encoded `properties` parsed, and
`braze_event_type`.
"""

from __future__ import annotations

import functools
import io
import json
import math
import os
import re
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

import duckdb
import fastavro
import pyarrow as pa
import pyarrow.compute as pc

from pipeline.ingest import UnreadableFileError

SOURCE = "braze"

_PUSH = "users.messages.pushnotification."
_CUSTOM_EVENT = "users.behaviors.CustomEvent"
_PURCHASE = "users.behaviors.Purchase"
_SESSION_START = "users.behaviors.app.SessionStart"
_ENROLL_IN_CONTROL = "users.campaigns.EnrollInControl"
_USER_ORPHAN = "users.UserOrphan"

EVENT_NAMES_BY_TYPE = {
    f"{_PUSH}Send": "push_sent",
    f"{_PUSH}Open": "push_opened",
    f"{_PUSH}Bounce": "push_bounced",
    f"{_PUSH}InfluencedOpen": "push_influenced_open",
    f"{_PUSH}IosForeground": "push_delivered",
    _PURCHASE: "purchase",
    _SESSION_START: "session_start",
    _ENROLL_IN_CONTROL: "holdout_assigned",
    _USER_ORPHAN: "identity_merge",
    "users.UserDeleteRequest": "deletion_request",
}

# A Braze event type: lower-case dotted namespaces and a capitalised event, e.g. users.UserOrphan.
_EVENT_TYPE = re.compile(r"[a-z][a-z0-9_]*(?:\.[a-z][a-z0-9_]*)*\.[A-Z][A-Za-z0-9]*")

# Fields that never go to properties: mapped to columns on every event, or bulky device secrets.
_ALWAYS_DROPPED = (
    "id",
    "time",
    "user_id",
    "external_user_id",
    "device_id",
    "platform",
    "ad_id",
    "ad_id_type",
    "ad_tracking_enabled",
    "push_token",
    "app_group_id",
)
_DROPPED_FROM_PUSH = ("campaign_id", "dispatch_id")
_DROPPED_BY_TYPE = {
    _PURCHASE: ("price", "currency", "order_id"),
    _SESSION_START: ("session_id",),
    _ENROLL_IN_CONTROL: ("campaign_id",),
    _USER_ORPHAN: ("orphaned_by_id",),
    _CUSTOM_EVENT: ("name",),
}

# Epoch seconds DuckDB timestamps can hold (years 1 to 9999).
_MIN_SECONDS, _MAX_SECONDS = -62135596800, 253402300799

_MAPPING_SQL = """
with records as (
    select source_row, raw, raw::json as j
    from records_batch
),
fields as (
    select
        source_row,
        raw,
        j,
        nullif(trim(j ->> '$.id'), '') as id,
        j -> '$.time' as time_json,
        nullif(json_type(j -> '$.time'), 'NULL') as time_type,
        nullif(trim(j ->> '$.user_id'), '') as braze_user_id,
        nullif(trim(j ->> '$.external_user_id'), '') as external_user_id,
        nullif(trim(j ->> '$.device_id'), '') as device_id,
        lower(trim(j ->> '$.platform')) as platform_text,
        nullif(trim(j ->> '$.dispatch_id'), '') as dispatch_id,
        coalesce(nullif(trim(j ->> '$.campaign_id'), ''), nullif(trim(j ->> '$.canvas_id'), ''))
            as campaign_or_canvas,
        nullif(trim(j ->> '$.orphaned_by_id'), '') as orphaned_by_id,
        case when $event_type = $custom_event then j ->> '$.name' end as custom_name,
        case when $event_type = $purchase then j ->> '$.price' end as price_text
    from records
),
parsed as (
    select
        *,
        case
            when time_type in ('UBIGINT', 'BIGINT', 'DOUBLE') then try_cast(time_json as double)
        end as seconds,
        -- A float32 price read back as its shortest text: 3.140000104904175 is 3.14.
        try_cast(
            if($price_is_float32, try_cast(price_text as float)::varchar, price_text)
            as decimal(38, 9)
        ) as price,
        coalesce(try_cast(j ->> '$.quantity' as decimal(18, 6)), 1) as quantity
    from fields
),
timed as (
    select
        *,
        case
            when seconds between $min_seconds and $max_seconds and seconds = floor(seconds)
            then strftime(make_timestamp(seconds::bigint * 1000000), '%Y-%m-%dT%H:%M:%SZ')
            when seconds between $min_seconds and $max_seconds
            then strftime(
                make_timestamp(round(seconds * 1000000)::bigint), '%Y-%m-%dT%H:%M:%S.%fZ'
            )
            -- A schema with a timestamp logical type decodes to text with its offset.
            when time_type = 'VARCHAR'
            then strftime(try_cast(time_json ->> '$' as timestamptz), '%Y-%m-%dT%H:%M:%S.%fZ')
        end as event_time,
        case
            when id is null and time_type is null then 'the record has no id and no time'
            when id is null then 'the record has no id, so it cannot be deduplicated'
            when time_type is null then 'the record has no time'
        end as missing
    from parsed
),
mapped as (
    select
        t.*,
        case
            when $event_type = $custom_event then coalesce(c.canonical, 'other')
            else $event_name
        end as event_name,
        -- The prefix would hide a junk id (all zeros) from identity's junk filter: drop those.
        case
            when not regexp_full_match(braze_user_id, '[0-]*') then 'braze:' || braze_user_id
        end as braze_key
    from timed as t
    left join custom_conversions as c
        on c.name = t.custom_name
)
select
    id as event_id,
    $source as source,
    event_time,
    event_name,
    case when $event_type <> $user_orphan then external_user_id end as user_id,
    case
        when $event_type = $user_orphan and orphaned_by_id is not null
            then 'braze:' || orphaned_by_id
        else braze_key
    end as anonymous_id,
    device_id,
    case when platform_text in ('ios', 'android', 'web') then platform_text else 'unknown' end
        as platform,
    case when $event_type = $session_start then j ->> '$.session_id' end as session_id,
    case when $is_push or $event_type = $enroll then campaign_or_canvas end as campaign_id,
    case
        when $is_push then dispatch_id || ':' || coalesce(braze_user_id, external_user_id)
    end as message_id,
    case when $is_push then if(platform_text = 'web', 'web', 'app') end as push_kind,
    case when $event_type = $enroll then 'control' end as holdout_group,
    case
        when $event_type = $purchase then coalesce(
            -- Bounded first: the product of two decimals overflows rather than failing softly.
            case
                when abs(price) < 1e15 and abs(quantity) < 1e6
                    then round(price * quantity, 2)::decimal(18, 2)::varchar
            end,
            -- Not a number (or too large): passed on as it is, for ingest to quarantine.
            price_text
        )
    end as revenue,
    case when $event_type = $purchase then j ->> '$.currency' end as currency,
    case when $event_type = $purchase then nullif(trim(j ->> '$.order_id'), '') end as order_id,
    json_merge_patch(
        -- Patching {} with the record drops its null fields; the second patch drops the mapped
        -- ones.
        json_merge_patch(json_merge_patch('{}', raw), $dropped),
        json_object(
            'braze_event_type', $event_type,
            'original_event_name',
                case when event_name = 'other' then coalesce(custom_name, $event_type) end,
            'custom_event_name', custom_name,
            'properties',
                case
                    when json_type(j -> '$.properties') = 'VARCHAR'
                        and json_valid(j ->> '$.properties')
                    then (j ->> '$.properties')::json
                    -- Not JSON text: kept as it is (a null here would delete the field).
                    else j -> '$.properties'
                end,
            'merged_anonymous_id', case when $event_type = $user_orphan then braze_key end,
            'merged_user_id', case when $event_type = $user_orphan then external_user_id end
        )
    )::varchar as properties,
    source_row,
    raw,
    case
        when missing is not null then missing
        when event_time is null then 'time ' || (time_json::varchar) || ' is not a UNIX time'
            || ' in seconds'
    end as reason
from mapped
order by source_row
"""


def read(
    data: bytes,
    path: str,
    open_sibling=None,
    options: Mapping[str, object] | None = None,
) -> tuple[pa.Table, pa.Table]:
    """Map one Currents Avro file to canonical rows and rejects (see pipeline.adapters).

    `options["custom_events"]` maps custom event names to canonical conversion events (the
    setting `sources.braze.custom_events`); any other custom event is kept as `other`.
    """
    custom_events = dict((options or {}).get("custom_events", {}))
    del open_sibling  # every Currents file is self-contained
    schema, raws = _decode(data, path)
    event_type = event_type_of(path, schema)
    is_push = event_type.startswith(_PUSH)
    dropped = (
        _ALWAYS_DROPPED
        + _DROPPED_BY_TYPE.get(event_type, ())
        + (_DROPPED_FROM_PUSH if is_push else ())
    )
    params = {
        "source": SOURCE,
        "event_type": event_type,
        "event_name": EVENT_NAMES_BY_TYPE.get(event_type, "other"),
        "is_push": is_push,
        "price_is_float32": "float" in _field_types(schema, "price"),
        "dropped": json.dumps(dict.fromkeys(dropped)),
        "custom_event": _CUSTOM_EVENT,
        "purchase": _PURCHASE,
        "session_start": _SESSION_START,
        "enroll": _ENROLL_IN_CONTROL,
        "user_orphan": _USER_ORPHAN,
        "min_seconds": _MIN_SECONDS,
        "max_seconds": _MAX_SECONDS,
    }
    batch = pa.table(
        {
            "source_row": pa.array(range(1, len(raws) + 1), pa.int64()),
            "raw": pa.array(raws, pa.string()),
        }
    )
    conversions = pa.table(
        {
            "name": pa.array(list(custom_events), pa.string()),
            "canonical": pa.array(list(custom_events.values()), pa.string()),
        }
    )
    # A cursor is a session of its own (its registrations and settings stay its own), and costs
    # far less than opening a database per file.
    with _database().cursor() as con:
        # strftime of a timestamptz renders in the session zone; Currents times are UTC.
        con.execute("set TimeZone = 'UTC'")
        con.register("records_batch", batch)
        con.register("custom_conversions", conversions)
        mapped = con.sql(_MAPPING_SQL, params=params).to_arrow_table()
    failed = mapped.column("reason").is_valid()
    rows = mapped.filter(pc.invert(failed)).drop_columns(["reason"])
    rejects = mapped.filter(failed).select(["source_row", "raw", "reason"])
    return rows, rejects


def _database() -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB that only runs the mapping query; it holds no tables."""
    return _database_of_process(os.getpid())


@functools.cache
def _database_of_process(pid: int) -> duckdb.DuckDBPyConnection:
    # Keyed by process: a forked worker must not share its parent's database handle.
    del pid
    return duckdb.connect()


def event_type_of(path: str, schema: dict[str, Any]) -> str:
    """The Currents event type of a file: from its folder or file name, else its schema name."""
    parts = PurePosixPath(path).parts
    for part in reversed(parts):
        if part.startswith("event_type="):
            return part.removeprefix("event_type=")
    stem = parts[-1].removesuffix(".avro") if parts else ""
    for candidate in (stem, *reversed(parts[:-1])):
        if _EVENT_TYPE.fullmatch(candidate):
            return candidate
    name = str(schema.get("name") or "")
    namespace = schema.get("namespace")
    if namespace and "." not in name:
        name = f"{namespace}.{name}"
    # Currents names its schemas `dataexport.<integration>.inner.<event type>`.
    return name.rsplit(".inner.", 1)[-1] or "unknown"


def _decode(data: bytes, path: str) -> tuple[dict[str, Any], list[str]]:
    """The file's writer schema and each record as JSON text (the only per-record loop)."""
    encode = json.JSONEncoder(
        default=str, allow_nan=False, ensure_ascii=False, separators=(",", ":")
    ).encode
    raws: list[str] = []
    try:
        reader = fastavro.reader(io.BytesIO(data))
        for record in reader:
            try:
                raws.append(encode(record))
            except ValueError:
                # NaN or infinity is not JSON; written as text, ingest names the bad value.
                raws.append(encode(_finite(record)))
    except Exception as exc:  # fastavro raises many types on a truncated or foreign file
        raise UnreadableFileError(f"{path}: cannot be read as an Avro file: {exc}") from exc
    return reader.writer_schema or {}, raws


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _field_types(schema: dict[str, Any], name: str) -> set[str]:
    """The primitive type names a top-level field of the schema may hold (empty if absent)."""
    for field in schema.get("fields", []):
        if field.get("name") == name:
            branches = field["type"] if isinstance(field["type"], list) else [field["type"]]
            return {b if isinstance(b, str) else str(b.get("type")) for b in branches}
    return set()
