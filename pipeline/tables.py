"""The tables pushassist writes, with a description for every column.

This module is the single place where table and column names are defined. Assets attach these
descriptions to their materializations (so they show in the Dagster UI), and the data dictionary
in the README is generated from them. Names here are part of the product's contract: renaming a
column is a breaking change for analysts.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    name: str
    type: str
    description: str


@dataclass(frozen=True)
class Table:
    schema: str
    name: str
    grain: str
    description: str
    columns: tuple[Column, ...]

    @property
    def qualified_name(self) -> str:
        return f"{self.schema}.{self.name}"

    @property
    def column_names(self) -> list[str]:
        return [c.name for c in self.columns]

    def create_sql(self) -> str:
        """A `create table if not exists` statement for this table."""
        cols = ",\n    ".join(f"{c.name} {c.type}" for c in self.columns)
        return f"create table if not exists {self.qualified_name} (\n    {cols}\n)"


def _cols(*specs: tuple[str, str, str]) -> tuple[Column, ...]:
    return tuple(Column(*s) for s in specs)


CANONICAL_COLUMNS = _cols(
    ("event_id", "varchar", "Identifier of the event, unique per source."),
    (
        "source",
        "varchar",
        "Adapter that read the event (canonical, ga4, braze, segment, snowplow).",
    ),
    ("event_time", "timestamptz", "When the event happened, UTC."),
    ("event_name", "varchar", "Canonical event name; unknown names are kept as `other`."),
    ("user_id", "varchar", "Known user id (login)."),
    ("anonymous_id", "varchar", "Cookie or app-instance id."),
    ("device_id", "varchar", "Device or push-token owner id."),
    ("platform", "varchar", "ios, android, web or unknown."),
    ("session_id", "varchar", "Session id, when the source has one."),
    ("utm_source", "varchar", "Traffic source of the session or click."),
    ("utm_medium", "varchar", "Traffic medium of the session or click."),
    ("utm_campaign", "varchar", "Campaign name of the session or click."),
    ("utm_content", "varchar", "Campaign content of the session or click."),
    ("utm_term", "varchar", "Campaign term of the session or click."),
    ("referrer", "varchar", "Referring URL of the session."),
    ("landing_url", "varchar", "First URL of the session."),
    ("click_id", "varchar", "Ad click id (gclid, fbclid, ...), when present."),
    ("campaign_id", "varchar", "Push campaign id, for push events."),
    ("message_id", "varchar", "Id of the single push message (one send), for push events."),
    ("push_kind", "varchar", "app or web, for push events."),
    ("holdout_group", "varchar", "control or treatment, for holdout_assigned events."),
    ("revenue", "decimal(18,2)", "Conversion value in currency units."),
    ("currency", "varchar", "ISO currency code of revenue."),
    ("order_id", "varchar", "Order id, for conversions."),
    ("properties", "varchar", "JSON text of everything else the source had."),
    ("source_file", "varchar", "Raw file the row was read from."),
    ("source_row", "bigint", "Line (1-based) or row number of the event in its raw file."),
)

EVENT_NAMES = (
    "push_sent",
    "push_delivered",
    "push_bounced",
    "push_opened",
    "push_influenced_open",
    "push_dismissed",
    "holdout_assigned",
    "session_start",
    "page_view",
    "screen_view",
    "product_view",
    "add_to_cart",
    "checkout_start",
    "purchase",
    "subscription_start",
    "subscription_renewal",
    "lead_submit",
    "identify",
    "identity_merge",
    "push_opt_in",
    "push_opt_out",
    "deletion_request",
    "other",
)

PUSH_CHANNEL = "Mobile Push Notifications"

STAGING_EVENTS = Table(
    "staging",
    "events",
    "event",
    "Every raw event in the canonical shape, validated and deduplicated on (source, event_id).",
    CANONICAL_COLUMNS
    + _cols(("event_date", "date", "Day of event_time in the reporting time zone (partition).")),
)

QUARANTINED_EVENTS = Table(
    "quality",
    "quarantined_events",
    "raw row",
    "Raw rows that could not be read or broke the canonical schema, with the reason.",
    _cols(
        ("source", "varchar", "Adapter that tried to read the row."),
        ("source_file", "varchar", "Raw file the row came from."),
        ("source_row", "bigint", "Line (1-based) or row number in that file."),
        ("raw", "varchar", "The raw row as text, exactly as read."),
        ("reason", "varchar", "Why the row was quarantined, in words a person can act on."),
        (
            "event_date",
            "date",
            "Partition the row was counted in: its event day when the time parsed, else the "
            "first day of its file's readable events (else the first partition date).",
        ),
    ),
)

INGEST_COUNTS = Table(
    "quality",
    "ingest_counts",
    "day x file",
    "Row conservation per partition and file: rows read = staged + quarantined + duplicates.",
    _cols(
        ("event_date", "date", "Partition day."),
        ("source_file", "varchar", "Raw file."),
        ("rows_read", "bigint", "Rows read from the file that belong to this day."),
        ("rows_staged", "bigint", "Rows written to staging.events."),
        ("rows_quarantined", "bigint", "Rows written to quality.quarantined_events."),
        (
            "rows_duplicate",
            "bigint",
            "Rows dropped as duplicates of an earlier (source, event_id).",
        ),
    ),
)

IDENTITY_MAP = Table(
    "core",
    "identity_map",
    "identifier",
    "Every identifier seen, the person it belongs to and the rule that decided it.",
    _cols(
        ("identifier_type", "varchar", "user_id, anonymous_id or device_id."),
        ("identifier", "varchar", "The identifier value."),
        ("person_id", "varchar", "Stable id of the person the identifier belongs to."),
        (
            "rule",
            "varchar",
            "Rule that mapped it: known_user, anonymous_stitch, cross_device, unlinked, "
            "shared_device, public_device or junk.",
        ),
        ("user_count", "integer", "Distinct user ids seen with this identifier."),
        ("first_seen", "timestamptz", "First event time with this identifier."),
        ("last_seen", "timestamptz", "Last event time with this identifier."),
    ),
)

EVENT_PERSONS = Table(
    "core",
    "event_persons",
    "event",
    "The person each staged event belongs to, and the identity rule that decided it.",
    _cols(
        ("event_id", "varchar", "Event id (with source, the key of staging.events)."),
        ("source", "varchar", "Adapter that read the event."),
        ("event_date", "date", "Partition day of the event."),
        ("person_id", "varchar", "Person the event is credited to."),
        (
            "identity_rule",
            "varchar",
            "known_user (the event carries a user id), anonymous_stitch, cross_device, "
            "shared_device (time rule on a shared device) or unlinked.",
        ),
    ),
)

TOUCHES = Table(
    "core",
    "touches",
    "touch",
    "Marketing touches of each person: sessions with their channel, and one push touch per "
    "message.",
    _cols(
        ("touch_id", "varchar", "Id of the touch: the id of the event that made it."),
        ("person_id", "varchar", "Person touched."),
        ("touch_time", "timestamptz", "When the touch happened, UTC."),
        ("touch_date", "date", "Day of touch_time in the reporting time zone (partition)."),
        (
            "touch_type",
            "varchar",
            "session, push_click (opened), push_influenced (influenced open) or push_impression "
            "(delivered, not opened).",
        ),
        ("channel", "varchar", "Channel credited for the touch."),
        ("channel_rule", "varchar", "Name of the channel rule that matched (or push_event)."),
        (
            "recorded_channel",
            "varchar",
            "For a push click, the channel its linked session was recorded under (often Direct).",
        ),
        ("is_push", "boolean", "Whether the touch is a push touch."),
        ("push_kind", "varchar", "app or web for push touches."),
        ("platform", "varchar", "Platform of the touch."),
        ("campaign_id", "varchar", "Push campaign id (push touches) or utm_campaign (sessions)."),
        ("message_id", "varchar", "Push message id, for push touches."),
        ("session_id", "varchar", "Session id, or for a push click the session it opened."),
        ("event_ids", "varchar[]", "Ids of the events that make the touch (lineage)."),
        ("identity_rule", "varchar", "Identity rule that put the touch on this person."),
    ),
)

CONVERSIONS = Table(
    "core",
    "conversions",
    "conversion",
    "Conversions (purchases, subscriptions, leads) with their person, value and lookback.",
    _cols(
        ("conversion_id", "varchar", "Id of the conversion (the id of its event)."),
        ("conversion_event_id", "varchar", "Id of the event that recorded the conversion."),
        ("order_id", "varchar", "Order id, when the source had one."),
        ("person_id", "varchar", "Person who converted."),
        ("conversion_type", "varchar", "Conversion definition name (purchase, subscription ...)."),
        ("event_name", "varchar", "Canonical event name of the conversion."),
        ("conversion_time", "timestamptz", "When it happened, UTC."),
        ("conversion_date", "date", "Day in the reporting time zone (partition)."),
        ("value", "decimal(18,2)", "Conversion value in currency units (0 when none)."),
        ("currency", "varchar", "Currency of value."),
        ("platform", "varchar", "Platform the conversion happened on."),
        ("lookback_days", "integer", "Lookback window of this conversion type, in days."),
        ("identity_rule", "varchar", "Identity rule that put the conversion on this person."),
    ),
)

CONVERSION_PATHS = Table(
    "core",
    "conversion_paths",
    "conversion",
    "Each conversion's path of touches inside its lookback window, and push's role in it.",
    _cols(
        ("conversion_id", "varchar", "Id of the conversion."),
        ("conversion_event_id", "varchar", "Id of the event that recorded the conversion."),
        ("order_id", "varchar", "Order id, when the source had one."),
        ("person_id", "varchar", "Person who converted."),
        ("conversion_type", "varchar", "Conversion definition name."),
        ("conversion_time", "timestamptz", "When it happened, UTC."),
        ("conversion_date", "date", "Day in the reporting time zone (partition)."),
        ("value", "decimal(18,2)", "Conversion value in currency units."),
        ("currency", "varchar", "Currency of value."),
        ("platform", "varchar", "Platform the conversion happened on."),
        (
            "path",
            "varchar",
            "Channels of the touches in the window, oldest first, joined by ' > ' (after the "
            "path transform; impressions and influenced opens are written as e.g. "
            "'Mobile Push Notifications (impression)').",
        ),
        ("touch_event_ids", "varchar[]", "Ids of the touches in the path, oldest first."),
        ("touch_count", "integer", "Touches in the window, all types."),
        (
            "last_touch_channel",
            "varchar",
            "Channel of the credited last touch under the last-touch rule setting (Direct when "
            "the window holds no session or push click).",
        ),
        ("last_touch_id", "varchar", "Id of the credited last touch (null when none)."),
        ("push_role", "varchar", "last_touch, assist or none."),
        (
            "assist_kind",
            "varchar",
            "For an assist, the strongest push touch in the path: click, influenced or "
            "impression (null otherwise).",
        ),
        (
            "is_push_assisted",
            "boolean",
            "Counts in the headline push-assisted figure: an assist, impression-only assists "
            "only when the setting allows them.",
        ),
        (
            "ga_assist",
            "boolean",
            "Google Analytics' assist: a push click at any position but the last click, even if "
            "push is also the last click.",
        ),
        ("push_touch_count", "integer", "Push touches of any kind in the window."),
        ("push_kinds", "varchar[]", "Distinct push kinds (app, web) of those touches."),
        ("push_kind", "varchar", "app, web, both or none."),
        ("campaign_ids", "varchar[]", "Distinct push campaigns in the window."),
        ("hours_from_first_push", "double", "Hours from the first push touch to the conversion."),
        ("hours_from_last_push", "double", "Hours from the last push touch to the conversion."),
        (
            "stitch_rules",
            "varchar[]",
            "Identity rules other than known_user that the conversion or its push touches "
            "depended on (anonymous_stitch, cross_device, shared_device).",
        ),
    ),
)

ATTRIBUTION_CREDITS = Table(
    "core",
    "attribution_credits",
    "conversion x touch x model",
    "Credit each attribution model gives each touch of each conversion; credits sum to 1 per "
    "conversion and model.",
    _cols(
        ("conversion_id", "varchar", "Id of the conversion."),
        ("conversion_date", "date", "Day of the conversion (partition)."),
        (
            "model",
            "varchar",
            "Attribution model: a heuristic one, or markov, shapley or fractribution (fitted on "
            "the conversion's day; a conversion's credit is split over its path's positions by "
            "the model's weights).",
        ),
        (
            "touch_id",
            "varchar",
            "Credited touch (null for the Direct fallback of a path with no creditable touch).",
        ),
        ("position", "integer", "1-based position of the touch in the transformed path."),
        ("channel", "varchar", "Channel of the credited touch."),
        ("is_push", "boolean", "Whether the credited touch is push."),
        ("campaign_id", "varchar", "Campaign of the credited touch."),
        ("credit", "double", "Share of the conversion credited (0 to 1)."),
        ("value_credit", "double", "Share of the conversion value credited, currency units."),
    ),
)

PUSH_ASSISTED_CONVERSIONS_DAILY = Table(
    "marts",
    "push_assisted_conversions_daily",
    "day x push_kind x platform x conversion type",
    "Conversions per day and how push took part in them: as the credited last touch or as an "
    "assist. A conversion counts once however many campaigns touched it, so `conversions` sums "
    "to the day's total.",
    _cols(
        ("date", "date", "Conversion day in the reporting time zone."),
        ("push_kind", "varchar", "Push kinds in the conversion's path: app, web, both or none."),
        ("platform", "varchar", "Platform the conversion happened on."),
        ("conversion_type", "varchar", "Conversion definition name."),
        ("conversions", "bigint", "All conversions."),
        ("push_last_touch_conversions", "bigint", "Conversions whose credited last touch is push."),
        (
            "push_assisted_conversions",
            "bigint",
            "Headline: conversions push assisted without being the last touch (impression-only "
            "assists included only when the setting count_impression_assists is on).",
        ),
        ("click_assisted_conversions", "bigint", "Assists whose strongest push touch is a click."),
        (
            "influenced_assisted_conversions",
            "bigint",
            "Assists whose strongest push touch is an influenced open.",
        ),
        (
            "impression_assisted_conversions",
            "bigint",
            "Assists with push impressions only (always reported, whatever the setting).",
        ),
        ("single_assist_conversions", "bigint", "Push-assisted conversions with one push touch."),
        (
            "multi_assist_conversions",
            "bigint",
            "Push-assisted conversions with several push touches.",
        ),
        ("assisted_revenue", "decimal(38,2)", "Value of the push-assisted conversions."),
        ("last_touch_revenue", "decimal(38,2)", "Value of the push last-touch conversions."),
        (
            "assisted_to_last_touch_ratio",
            "double",
            "push_assisted_conversions / push_last_touch_conversions (null when no last touch).",
        ),
        (
            "median_hours_push_to_conversion",
            "double",
            "Median hours from the last push touch to the conversion, over push-assisted "
            "conversions.",
        ),
        (
            "ga_assisted_conversions",
            "bigint",
            "Google Analytics-style assisted conversions: a push click anywhere but the last "
            "click (push may also be the last click).",
        ),
        (
            "stitched_assisted_conversions",
            "bigint",
            "Push-assisted conversions that exist only through identity stitching: the "
            "conversion or one of its push touches was put on the person by a rule other than "
            "a known user id (see stitch_rules in core.conversion_paths).",
        ),
        (
            "anonymous_stitch_assisted_conversions",
            "bigint",
            "Of those, the ones that depended on joining anonymous history to a known user.",
        ),
        (
            "cross_device_assisted_conversions",
            "bigint",
            "Of those, the ones that depended on joining a device to its user.",
        ),
    ),
)

PUSH_CAMPAIGN_DAILY = Table(
    "marts",
    "push_campaign_daily",
    "day x campaign",
    "Delivery funnel and assisted conversions of each push campaign. Rows do not add up to "
    "the day's total: a conversion touched by two campaigns counts once in each.",
    _cols(
        (
            "date",
            "date",
            "Day in the reporting time zone (send day for the funnel columns, "
            "conversion day for the conversion columns).",
        ),
        ("campaign_id", "varchar", "Push campaign id."),
        ("push_kind", "varchar", "app, web or both."),
        ("sends", "bigint", "Messages sent that day."),
        (
            "deliveries",
            "bigint",
            "Of those, delivered (a send with no bounce counts as delivered).",
        ),
        ("delivery_rate", "double", "deliveries / sends."),
        ("opens", "bigint", "Of those delivered, messages opened (at any later time)."),
        ("open_rate", "double", "opens / deliveries."),
        ("influenced_opens", "bigint", "Of those delivered, messages with an influenced open."),
        ("opt_outs", "bigint", "push_opt_out events carrying this campaign that day."),
        (
            "assisted_conversions",
            "bigint",
            "Push-assisted conversions that day whose path holds this campaign.",
        ),
        ("assisted_revenue", "decimal(38,2)", "Value of those conversions."),
        (
            "last_touch_conversions",
            "bigint",
            "Conversions that day whose credited last touch is this campaign's push.",
        ),
        (
            "revenue_per_notification_sent",
            "double",
            "assisted_revenue / sends (null when nothing was sent that day).",
        ),
    ),
)

CHANNEL_MISCLASSIFICATIONS = Table(
    "quality",
    "channel_misclassifications",
    "suspected case",
    "Suspected channel misclassifications, each with its evidence: sessions a push open started "
    "but recorded under another channel (push_opened_not_push), sessions with a push-looking "
    "utm_medium the rules did not classify as push (push_medium_unclassified), and campaigns "
    "with opens but no push session in a day (campaign_opens_without_sessions).",
    _cols(
        ("date", "date", "Day of the session, or of the opens, in the reporting time zone."),
        (
            "kind",
            "varchar",
            "push_opened_not_push, push_medium_unclassified or campaign_opens_without_sessions.",
        ),
        (
            "case_id",
            "varchar",
            "The suspected item: the session's event id, or the campaign id (with date, kind "
            "and case_id a row is unique).",
        ),
        (
            "touch_id",
            "varchar",
            "Touch in core.touches holding the session: the push click it was folded into, or "
            "the session's own touch (null for campaigns).",
        ),
        ("session_id", "varchar", "Session id (null for campaigns)."),
        ("person_id", "varchar", "Person (null for campaigns)."),
        (
            "campaign_id",
            "varchar",
            "Push campaign of the open, the session's utm_campaign, or the campaign.",
        ),
        (
            "recorded_channel",
            "varchar",
            "Channel the rules gave the session as recorded (null for campaigns).",
        ),
        ("recorded_rule", "varchar", "Channel rule that matched it (null for campaigns)."),
        ("suggested_channel", "varchar", "Channel the evidence points to."),
        ("utm_source", "varchar", "The session's utm_source."),
        ("utm_medium", "varchar", "The session's utm_medium."),
        (
            "seconds_after_open",
            "double",
            "Seconds from the push open to the session (push_opened_not_push).",
        ),
        ("opens", "bigint", "Push opens of the campaign that day (campaigns)."),
        ("evidence", "varchar", "Why the case is suspected, in words, with the ids involved."),
        (
            "event_ids",
            "varchar[]",
            "Ids of the staging events behind the case: the session and the open, or the "
            "campaign's opens (lineage).",
        ),
    ),
)

CHANNEL_CORRECTION_DAILY = Table(
    "marts",
    "channel_correction_daily",
    "day x conversion type",
    "Push's part in conversions under the corrected channels (a session a push open started "
    "is the open's push click) and under the recorded channels (that session is its own touch "
    "with the channel it was recorded as, beside the push click): the size of the correction. "
    "Both views are computed whichever one the setting attribution.use_corrected_channels "
    "chose for core.conversion_paths.",
    _cols(
        ("date", "date", "Conversion day in the reporting time zone."),
        ("conversion_type", "varchar", "Conversion definition name."),
        ("conversions", "bigint", "All conversions."),
        (
            "push_last_touch_corrected",
            "bigint",
            "Conversions whose credited last touch is push, corrected channels.",
        ),
        (
            "push_last_touch_recorded",
            "bigint",
            "Conversions whose credited last touch is push, recorded channels.",
        ),
        (
            "push_assisted_corrected",
            "bigint",
            "Push-assisted conversions (the headline figure), corrected channels.",
        ),
        (
            "push_assisted_recorded",
            "bigint",
            "Push-assisted conversions (the headline figure), recorded channels.",
        ),
        (
            "changed_conversions",
            "bigint",
            "Conversions whose push role or credited last-touch channel differs between views.",
        ),
        (
            "attribution_view",
            "varchar",
            "View core.conversion_paths uses (corrected or recorded), from the setting.",
        ),
    ),
)

CHANNEL_ATTRIBUTION_DAILY = Table(
    "marts",
    "channel_attribution_daily",
    "day x channel x model",
    "Conversions and revenue each attribution model credits to each channel, per conversion "
    "day. For every day and model, credited conversions add up to the day's conversions.",
    _cols(
        ("date", "date", "Conversion day in the reporting time zone."),
        ("model", "varchar", "Attribution model (as in core.attribution_credits)."),
        ("channel", "varchar", "Channel credited."),
        ("is_push", "boolean", "Whether the channel is push."),
        ("credited_conversions", "double", "Sum of the model's credits to the channel."),
        ("credited_revenue", "double", "Sum of the model's value credits, currency units."),
    ),
)

CONVERSION_PATHS_TOP = Table(
    "marts",
    "conversion_paths_top",
    "day x path",
    "The paths conversions took, per conversion day, with how often and how much: the most "
    "common first. Sum over days for a longer period.",
    _cols(
        ("date", "date", "Conversion day in the reporting time zone."),
        ("path", "varchar", "Path as in core.conversion_paths (after the path transform)."),
        ("conversions", "bigint", "Conversions that took this path that day."),
        ("value", "decimal(38,2)", "Their value."),
        ("contains_push", "boolean", "Whether the path holds a push touch of any kind."),
        ("path_rank", "integer", "Rank of the path that day by conversions, then value."),
    ),
)

LOOKBACK_SENSITIVITY = Table(
    "marts",
    "lookback_sensitivity",
    "day x conversion type x window",
    "How many conversions push would assist with a shorter or longer lookback window: 1 h, "
    "6 h, 1, 3, 7, 14 and 30 days, all from one pass over the touches. The row whose window "
    "equals the conversion type's own lookback matches the headline figures.",
    _cols(
        ("date", "date", "Conversion day in the reporting time zone."),
        ("conversion_type", "varchar", "Conversion definition name."),
        ("lookback_window", "varchar", "Lookback window: 1h, 6h, 1d, 3d, 7d, 14d or 30d."),
        ("window_hours", "integer", "The window in hours."),
        (
            "is_configured_window",
            "boolean",
            "Whether the window is the lookback configured for the conversion type.",
        ),
        ("conversions", "bigint", "All conversions of the type that day."),
        (
            "push_last_touch_conversions",
            "bigint",
            "Conversions whose credited last touch within the window is push.",
        ),
        (
            "push_assisted_conversions",
            "bigint",
            "Conversions push assists within the window (headline rule, as in "
            "push_assisted_conversions_daily).",
        ),
    ),
)

ALL_TABLES = (
    STAGING_EVENTS,
    QUARANTINED_EVENTS,
    INGEST_COUNTS,
    IDENTITY_MAP,
    EVENT_PERSONS,
    TOUCHES,
    CONVERSIONS,
    CONVERSION_PATHS,
    ATTRIBUTION_CREDITS,
    PUSH_ASSISTED_CONVERSIONS_DAILY,
    PUSH_CAMPAIGN_DAILY,
    CHANNEL_ATTRIBUTION_DAILY,
    CONVERSION_PATHS_TOP,
    LOOKBACK_SENSITIVITY,
    CHANNEL_CORRECTION_DAILY,
    CHANNEL_MISCLASSIFICATIONS,
)
