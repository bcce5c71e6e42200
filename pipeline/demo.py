"""Seeded demo data for pushassist, in the export shapes of real tools, with the answer it should
produce.

`generate_demo` simulates a month of a shop's push notifications, sessions and conversions for a
few thousand people and writes it the way the vendors' exports land (README, landing layout):

- `ga4/YYYY/MM/events_YYYYMMDD.json`: the GA4 / Firebase BigQuery export of the web stream and
  the iOS and Android apps, one NDJSON line per event with INT64 written as strings; one or two
  days arrive as `.parquet` in the export's nested shape. Sessions are `session_start` events
  with `ga_session_id`; a web session's traffic source is in `collected_traffic_source` (and its
  `page_referrer`), an app session's in the session_start params. Views, ecommerce, purchases
  (`ecommerce.purchase_revenue`, `transaction_id`, `currency`), leads (`generate_lead`,
  `sign_up`) and logins come from here, and so do the FCM events (`notification_receive`,
  `notification_foreground`, `notification_open`, `notification_dismiss`) of the few campaigns
  sent through Firebase directly, to Android.
- `braze/event_type=<type>/date=YYYY-MM-DD/part-0.avro`: Braze Currents, one event type per
  file: push Send, Bounce, Open, InfluencedOpen and IosForeground of the Braze campaigns (app
  and web push), EnrollInControl for the global control group, CustomEvent (subscription starts
  and renewals, which the settings file maps to conversions, and a wishlist event that stays
  `other`) and push token removals (opt-outs, `other`). The Send schema gains two fields half
  way through the month, as Currents schemas do.
- `canonical/billing/charges_YYYYMMDD.jsonl`: renewals the billing server charged with nobody
  in a session, in pushassist's own format.

A push message comes from exactly one system (Braze or FCM), so no message is counted twice.
Identifiers are what the exports carry: GA4's `user_pseudo_id` (a browser cookie or an app
instance) and `user_id` once logged in; Braze's `external_user_id`, its own profile id and its
SDK `device_id`. The tricky cases of real data are in it: push-opened app sessions that lost
their utm (recorded as Direct), anonymous web visits that log in later, several devices per
person, one tablet (one app instance) shared by two users who log in at different times, a
buggy app and site version that writes a placeholder user id (`0`, `null`, `anonymous`) on
logged-out rows, GA4 rows exported twice and Braze records delivered twice, late rows in the
next day's file, and a handful of broken rows (a line that is not JSON, no event_timestamp, a
timestamp in milliseconds, no event_name, no identifier at all, a Braze record without id).

Next to the landing root, never inside it, it writes the truth: the true person of each event
(`events.parquet`) and, for every conversion, push's role under the default settings
(`conversions.parquet`), computed here by a small implementation of the attribution rules that
shares no code with the pipeline. GA4 rows carry no event id (the adapter derives one from
their content), so both files are keyed by what the generator knows for sure: the file
(`source_file`, relative to the landing root) and the 1-based line or record number in it
(`source_row`), the staged copy when a row was written twice. The settings the month needs
(`sources.braze.custom_events`) go to `pushassist.yaml` beside the landing root.

The expected answer follows SPEC 4.1-4.2 at the default settings: touches are sessions (with a
GA4 channel) and one push touch per message (click at the first open, else influenced open,
else impression at delivery, where a send without a bounce counts as delivered); a session
starting within the push-open window after an open is the open's touch; the window
`[t - lookback, t]` is inclusive; the last non-Direct session or push click is the credited
last touch. A session whose utm says push (not merged with an open) counts as a push click,
and GA's assist looks at every session and push click in the window before the last one,
before any path transform. Braze custom events carry their price only in free-form properties,
which no adapter reads as revenue, so subscriptions logged to Braze are worth 0; the billing
server's renewals carry their revenue.

Seven scripted "story" people (fixed ids and times, truth keys `story_*`) carry cases whose
answer is easy to reason about by hand: a click assist, an impression-only assist, a
push-opened session recorded as Direct, conversions one second outside and exactly at the edge
of the lookback, and a tablet shared by two users. Their times need at least 10 days, so
shorter runs leave them out (and then hold no shared device).

Run it from the command line with `python -m pipeline.demo --landing data/landing`.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import heapq
import io
import json
import logging
import random
import re
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import NamedTuple

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from pipeline.settings import Settings, parse_settings
from pipeline.tables import EVENT_NAMES, PUSH_CHANNEL

logger = logging.getLogger(__name__)

DAY = 86_400
MICROS = 1_000_000
DIRECT = "Direct"
OTHER = "other"
TRUTH_DIR_NAME = "demo_truth"
SETTINGS_FILE_NAME = "pushassist.yaml"
STORY_MIN_DAYS = 10
MIN_PEOPLE = 20
JUNK_IDS = ("0", "null", "anonymous")
GA4, BRAZE, CANONICAL = "ga4", "braze", "canonical"
FCM = "fcm"  # push sent through Firebase: reported by the app to GA4

# Braze custom events that are conversions: the demo's settings file maps them
# (sources.braze.custom_events); any other custom event stays `other`.
SUBSCRIPTION_STARTED = "subscription_started"
SUBSCRIPTION_RENEWED = "subscription_renewed"
CUSTOM_EVENTS = {
    SUBSCRIPTION_STARTED: "subscription_start",
    SUBSCRIPTION_RENEWED: "subscription_renewal",
}
WISHLIST_EVENT = "added_to_wishlist"
UNKNOWN_GA4_EVENT = "app_rating"

# Braze campaigns (app and web push) and the campaigns sent through Firebase directly (Android
# app push, named by the notification composer's name).
APP_CAMPAIGNS = (
    "cmp_app_spring_sale",
    "cmp_app_daily_deals",
    "cmp_app_new_arrivals",
    "cmp_app_flash_sale",
    "cmp_app_weekend_picks",
    "cmp_app_price_drop",
    "cmp_app_back_in_stock",
    "cmp_app_loyalty_points",
)
WEB_CAMPAIGNS = (
    "cmp_web_new_arrivals",
    "cmp_web_flash_sale",
    "cmp_web_blog_digest",
    "cmp_web_price_drop",
)
FCM_CAMPAIGNS = ("fcm_android_weekly_deals", "fcm_android_restock_alert", "fcm_android_members_day")
CART_CAMPAIGN = "cmp_app_cart_reminder"
# Share of the app broadcasts that go out through Firebase rather than Braze.
_FCM_SHARE = 0.25

_PUSH_TYPE = "users.messages.pushnotification."
BRAZE_SEND = _PUSH_TYPE + "Send"
BRAZE_BOUNCE = _PUSH_TYPE + "Bounce"
BRAZE_OPEN = _PUSH_TYPE + "Open"
BRAZE_INFLUENCED_OPEN = _PUSH_TYPE + "InfluencedOpen"
BRAZE_IOS_FOREGROUND = _PUSH_TYPE + "IosForeground"
BRAZE_ENROLL_IN_CONTROL = "users.campaigns.EnrollInControl"
BRAZE_CUSTOM_EVENT = "users.behaviors.CustomEvent"
BRAZE_TOKEN_STATE_CHANGE = "users.behaviors.pushnotification.TokenStateChange"

# utm of sessions opened by a push, by the system that sent it. Most classify as Mobile Push
# Notifications under GA4's rules; `notif` does not (a misclassification the checks should
# flag), which is harmless here because a session this close to its open is the open's touch.
_BRAZE_APP_PUSH_UTM = (
    (("braze", "push"), 55),
    (("braze", "Push"), 15),
    (("braze", "push_notification"), 20),
    (("braze", "notif"), 10),
)
_FCM_PUSH_UTM = ((("firebase", "push"), 60), (("firebase", "notification"), 40))
_WEB_PUSH_UTM = ((("braze", "web_push"), 70), (("braze", "webpush"), 30))

# Relative traffic by hour of day (UTC); sessions follow it by thinning a Poisson process.
_HOURLY = (
    0.15, 0.1, 0.08, 0.08, 0.1, 0.15, 0.3, 0.5, 0.7, 0.8, 0.85, 0.9,
    0.95, 0.9, 0.85, 0.85, 0.9, 0.95, 1.0, 1.0, 0.95, 0.8, 0.55, 0.3,
)  # fmt: skip
_MEAN_HOURLY = sum(_HOURLY) / 24

# Organic channel mix by surface, then after a push (the visit a push makes likelier).
_WEB_MIX = (
    ("Email", 15),
    ("Organic Search", 25),
    ("Paid Search", 12),
    ("Organic Social", 10),
    (DIRECT, 28),
    ("Referral", 10),
)
_APP_MIX = (
    (DIRECT, 72),
    ("Email", 10),
    ("Organic Social", 6),
    ("Organic Search", 6),
    ("Referral", 6),
)
_RETURN_MIX = (("Email", 30), ("Organic Search", 25), (DIRECT, 35), ("Paid Search", 10))

# Chance that a push touch brings the person back later through another channel, by how
# strongly the push was engaged with: this is what makes push genuinely assist conversions.
_RETURN_CHANCE = {"click": 0.15, "influenced": 0.08, "impression": 0.025}
_PURCHASE_CHANCE = {"organic": 0.025, "push_open": 0.08, "return": 0.25, "renewal": 0.0}
_SUB_CHANCE = {"organic": 0.04, "push_open": 0.12, "return": 0.12, "renewal": 0.0}
_PUSH_OPEN_DIRECT_SHARE = 0.30
_ASSIST_RANK = {"click": 3, "influenced": 2, "impression": 1}

HOME = "https://shop.example.com"
_USD_PER_EUR = 1.09


@dataclass(frozen=True)
class DemoSummary:
    """What a demo run wrote, with the counts a test or report checks the pipeline against.

    Attributes:
        files: the files written, relative to `landing_root` (`ga4/...`, `braze/...`,
            `canonical/...`).
        settings_path: the settings file the pipeline needs to read the month (Braze custom
            events that are conversions), beside the landing root.
        rows_written: every line or record in those files: events + duplicate_rows + broken.
        events: valid events, once each (the rows of `events.parquet`).
        duplicate_rows: extra copies of an event: a GA4 row exported again, a Braze record
            delivered again, a canonical line repeated.
        broken_rows: rows the ingest must quarantine, by reason (ga4_invalid_json,
            ga4_missing_event_timestamp, ga4_timestamp_in_milliseconds, ga4_missing_event_name,
            ga4_no_identifier, braze_missing_id).
        unknown_event_rows: valid events the pipeline keeps as `other` (a GA4 custom event,
            Braze's unmapped custom event and push token removals).
        late_rows: events written in the next day's file instead of their own.
        people: true persons with at least one valid event.
        conversions: conversions by type after dedupe by order id (the rows of
            `conversions.parquet`); duplicate_order_events is how many purchase or subscription
            events that dedupe dropped.
        push_roles, assist_kinds: the expected counts of each push role and assist kind.
        push_opened_sessions: sessions that started within the push-open window after a push
            open of the same person; push_opened_direct_sessions: those that carried no
            traffic source at all.
        rows_by_format: rows written per source and file format (`ga4/ndjson`, `ga4/parquet`,
            `braze/avro`, `canonical/jsonl`).
        messages_by_system: push messages sent through Braze and through FCM.
    """

    seed: int
    start: date
    days: int
    landing_root: Path
    truth_dir: Path
    settings_path: Path
    files: tuple[str, ...]
    rows_written: int
    events: int
    duplicate_rows: int
    broken_rows: dict[str, int]
    unknown_event_rows: int
    late_rows: int
    people: int
    conversions: dict[str, int]
    duplicate_order_events: int
    push_roles: dict[str, int]
    assist_kinds: dict[str, int]
    push_opened_sessions: int
    push_opened_direct_sessions: int
    rows_by_format: dict[str, int] = field(default_factory=dict)
    messages_by_system: dict[str, int] = field(default_factory=dict)

    @property
    def events_path(self) -> Path:
        return self.truth_dir / "events.parquet"

    @property
    def conversions_path(self) -> Path:
        return self.truth_dir / "conversions.parquet"

    @property
    def settings(self) -> dict:
        """The settings file's content, as a mapping (for a test that builds its own run)."""
        return yaml.safe_load(self.settings_path.read_text(encoding="utf-8"))

    @property
    def push_as_direct_rate(self) -> float:
        """Share of push-opened sessions that carried no traffic source (so recorded as Direct)."""
        if not self.push_opened_sessions:
            return 0.0
        return self.push_opened_direct_sessions / self.push_opened_sessions


def demo_settings(start: date) -> dict:
    """The settings the demo month needs: its first day and the Braze custom events that are
    conversions. Landing root and warehouse come from the environment or the caller."""
    return {
        "first_partition_date": start.isoformat(),
        "sources": {"braze": {"custom_events": dict(CUSTOM_EVENTS)}},
    }


@dataclass
class _Surface:
    """Where a person shows up: an app install on a phone or tablet, or a web browser.

    GA4 knows it by `user_pseudo_id` (app instance id or cookie id), Braze by its SDK device id.
    """

    platform: str  # ios, android or web
    pseudo_id: str
    braze_device: str
    # When the user first logged in here (0: before the month began, so every event carries the
    # user id); None until then, and events carry only the pseudo id.
    login_at: int | None
    first_touch: int  # user_first_touch_timestamp, in microseconds
    device: dict  # GA4's device record
    geo: dict  # GA4's geo record
    app_version: str | None = None
    anonymous_sessions: list[tuple[int, int, int]] = field(default_factory=list)
    sessions: int = 0  # ga_session_number so far
    bundles: int = 0  # event_bundle_sequence_id so far


@dataclass
class _Person:
    key: str
    user_id: str | None
    braze_id: str | None  # Braze's own profile id
    devices: list[_Surface]
    web: _Surface | None
    app_push: bool
    web_push: bool
    holdout: str | None
    currency: str
    timezone: str
    activity: float
    open_rate: float
    sub_prospect: bool
    renews_at: int | None
    opt_out_at: int | None
    # The placeholder a buggy app and site version writes as user_id on logged-out rows.
    junk: str | None
    subscribed: bool = False


class _Broadcast(NamedTuple):
    at: int
    campaign: str
    kind: str  # app or web
    system: str  # braze or fcm
    share: float
    send_id: str  # Braze dispatch id, or the FCM message id every recipient shares


def _pick(rng: random.Random, weighted):
    values = [v for v, _ in weighted]
    weights = [w for _, w in weighted]
    return rng.choices(values, weights)[0]


def _uuid(rng: random.Random) -> str:
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def _stable_uuid(text: str) -> str:
    """A fixed id for a fixed name (app ids, variation ids), without touching the seeded rng."""
    return str(uuid.UUID(hashlib.md5(text.encode()).hexdigest(), version=4))


def _noise(key: str, salt: str, low: int, high: int) -> int:
    """A number in [low, high] that only depends on the event, for cosmetic fields of a row: a
    row written twice must be written identically."""
    digest = hashlib.md5(f"{key}/{salt}".encode()).digest()
    return low + int.from_bytes(digest[:8], "big") % (high - low + 1)


def _traffic(rng: random.Random, channel: str, web: bool) -> dict:
    """Traffic source of a session from `channel`, as the canonical utm, referrer, click id and
    landing url (web only) that the GA4 export holds in its own fields.

    Sessions with no utm but a referrer are classified by the referrer (as GA4 does): a Google
    or Bing referrer is Organic Search, Instagram is Organic Social, any other site is Referral.
    A Direct visit carries no source at all: GA4 records none.
    """
    path = rng.choice(["/", "/sale", "/new", "/category/shoes", "/category/bags"])
    out: dict = {}
    if channel == "Email":
        camp = rng.choice(["weekly_digest", "new_in", "winback", "members_only"])
        out = {"utm_source": "newsletter", "utm_medium": "email", "utm_campaign": camp}
    elif channel == "Organic Search":
        r = rng.random()
        if r < 0.45 or not web:
            out = {"utm_source": "google", "utm_medium": "organic"}
            if web:
                out["referrer"] = "https://www.google.com/"
        elif r < 0.55:
            out = {
                "utm_source": "bing",
                "utm_medium": "organic",
                "referrer": "https://www.bing.com/",
            }
        else:
            out = {"referrer": "https://www.google.com/"}
    elif channel == "Paid Search":
        out = {
            "utm_source": "google",
            "utm_medium": "cpc",
            "utm_campaign": rng.choice(["brand_search", "generic_shoes", "generic_bags"]),
            "utm_term": rng.choice(["running shoes", "leather bag", "shop example"]),
            "click_id": f"Cj0KCQiA{rng.getrandbits(64):016x}",
        }
        if web:
            out["referrer"] = "https://www.google.com/"
    elif channel == "Organic Social":
        if web and rng.random() < 0.4:
            out = {"referrer": "https://l.instagram.com/"}
        else:
            src = rng.choice(["facebook", "instagram"])
            out = {"utm_source": src, "utm_medium": "social", "utm_campaign": "brand_posts"}
            if web:
                out["referrer"] = f"https://l.{src}.com/"
    elif channel == "Referral":
        if web and rng.random() < 0.5:
            out = {"referrer": "https://www.dealsblog.example/best-deals"}
        else:
            out = {"utm_source": "dealsblog.example", "utm_medium": "referral"}
    elif channel != DIRECT:
        raise ValueError(f"no traffic shape for channel {channel!r}")
    if web:
        query = "&".join(
            f"{k}={out[k]}" for k in ("utm_source", "utm_medium", "utm_campaign") if k in out
        )
        out["landing_url"] = HOME + path + (f"?{query}" if query else "")
    return out


# GA4 device and geo records of the demo's devices, browsers and countries.
_IOS_MODELS = (("Apple", "iPhone 14", "iOS 17.2"), ("Apple", "iPhone 13", "iOS 17.1"))
_ANDROID_MODELS = (
    ("Samsung", "Galaxy S23", "Android 14"),
    ("Google", "Pixel 7", "Android 14"),
    ("Xiaomi", "Redmi Note 12", "Android 13"),
)
_BROWSERS = (
    ("desktop", "Chrome", "120.0.6099.109", "Windows", "Windows 10"),
    ("desktop", "Safari", "17.2", "Macintosh", "Macintosh Intel 10.15"),
    ("mobile", "Safari", "17.2", "iOS", "iOS 17.2"),
    ("mobile", "Chrome", "120.0.6099.43", "Android", "Android 14"),
)
_PLACES = {
    "USD": (
        ("New York", "United States", "Americas", "New York", "Northern America"),
        ("Chicago", "United States", "Americas", "Illinois", "Northern America"),
        ("Austin", "United States", "Americas", "Texas", "Northern America"),
    ),
    "EUR": (
        ("Berlin", "Germany", "Europe", "Berlin", "Western Europe"),
        ("Paris", "France", "Europe", "Ile-de-France", "Western Europe"),
    ),
}
_TIMEZONES = {"United States": "America/New_York", "Germany": "Europe/Berlin"}
_LANGUAGES = {"United States": "en-us", "Germany": "de-de", "France": "fr-fr"}


def _device_record(rng: random.Random, platform: str, language: str) -> dict:
    record = {
        "category": "mobile",
        "mobile_brand_name": None,
        "mobile_model_name": None,
        "operating_system": None,
        "operating_system_version": None,
        "advertising_id": None,
        "language": language,
        "is_limited_ad_tracking": "No",
        "browser": None,
        "browser_version": None,
        "web_info": None,
    }
    if platform == "web":
        category, browser, version, system, system_version = rng.choice(_BROWSERS)
        record.update(
            category=category,
            operating_system=system,
            operating_system_version=system_version,
            web_info={"browser": browser, "browser_version": version, "hostname": HOME[8:]},
        )
    else:
        brand, model, system_version = rng.choice(
            _IOS_MODELS if platform == "ios" else _ANDROID_MODELS
        )
        record.update(
            mobile_brand_name=brand,
            mobile_model_name=model,
            operating_system="iOS" if platform == "ios" else "Android",
            operating_system_version=system_version,
        )
    return record


def _geo_record(rng: random.Random, currency: str) -> dict:
    city, country, continent, region, sub_continent = rng.choice(_PLACES[currency])
    return {
        "city": city,
        "country": country,
        "continent": continent,
        "region": region,
        "sub_continent": sub_continent,
        "metro": "(not set)",
    }


class _Builder:
    """Simulates people one at a time and collects their events with the true person of each.

    An event is a dict: its canonical name and fields (what the adapter will make of the row),
    plus private fields for writing it in its source's shape (`_src`, `_type`, `_surface` ...)
    and for the truth (`key`, `_p` the true person, `_t` and `_us` the time, `_msg` the push
    message, `_ch` a session's channel).
    """

    def __init__(self, seed: int, start: date, days: int):
        self.rng = random.Random(seed)
        self.start_ts = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
        self.days = days
        self.end_ts = self.start_ts + days * DAY
        self.events: list[dict] = []
        self._event_n = 0
        self._order_n = 0
        self._message_n = 0
        self._anonymous_n = 0
        self.broadcasts = self._schedule_broadcasts()

    # -- ids ---------------------------------------------------------------------------------

    def order_id(self, prefix: str = "ord") -> str:
        self._order_n += 1
        return f"{prefix}_{self._order_n:07d}"

    def message_key(self) -> str:
        self._message_n += 1
        return f"msg_{self._message_n:07d}"

    def hex_id(self, bits: int) -> str:
        return f"{self.rng.getrandbits(bits):0{bits // 4}x}"

    # -- events ------------------------------------------------------------------------------

    def emit(
        self,
        person: str,
        ts: int,
        name: str,
        fields: dict,
        *,
        src: str,
        kind: str,
        key: str | None = None,
        micros: int | None = None,
    ) -> dict | None:
        """Record one event; events outside the demo period never happened.

        GA4 times have microseconds; Braze's are whole seconds, and so are the billing server's.
        """
        if ts >= self.end_ts or ts < self.start_ts:
            return None
        event = {k: v for k, v in fields.items() if v is not None}
        if key is None:
            self._event_n += 1
            key = f"evt_{self._event_n:07d}"
        if micros is None:
            micros = self.rng.randrange(MICROS) if src == GA4 else 0
        surface = event.get("_surface")
        if surface is not None:
            surface.bundles += 1
            event["_bundle"] = surface.bundles
        if src == BRAZE:
            event["_bid"] = _uuid(self.rng)
        event.update(key=key, event_name=name, _src=src, _type=kind, _p=person, _t=ts)
        event["_us"] = micros
        self.events.append(event)
        return event

    def ga4(self, p: _Person, s: _Surface, ts: int, kind: str, name: str, fields=None, **kw):
        """A GA4 event of `p` on surface `s`: it carries the user id once they logged in there,
        and before that only the pseudo id (or the buggy version's placeholder user id)."""
        logged_in = p.user_id is not None and s.login_at is not None and ts >= s.login_at
        ids = {"_surface": s, "platform": s.platform, "user_id": p.user_id if logged_in else p.junk}
        return self.emit(p.key, ts, name, {**ids, **(fields or {})}, src=GA4, kind=kind, **kw)

    def braze(self, p: _Person, s: _Surface | None, ts: int, kind: str, name: str, fields: dict):
        """A Braze Currents event of `p` (an identified profile), from surface `s` if any."""
        ids = {"_braze": p.braze_id, "user_id": p.user_id, "_timezone": p.timezone}
        if s is not None:
            ids.update(_surface_ref=s, device_id=s.braze_device, platform=s.platform)
        return self.emit(p.key, ts, name, {**ids, **fields}, src=BRAZE, kind=kind)

    # -- people ------------------------------------------------------------------------------

    def _schedule_broadcasts(self) -> list[_Broadcast]:
        """Push campaigns of the month: app most days (a quarter of them through FCM), web
        every few days (through Braze)."""
        rng = self.rng
        out = []
        for d in range(self.days):
            day0 = self.start_ts + d * DAY
            for _ in range(1 + (rng.random() < 0.25)):
                if rng.random() < 0.85:
                    at = day0 + rng.randint(8 * 3600, 20 * 3600)
                    share = rng.uniform(0.3, 0.6)
                    if rng.random() < _FCM_SHARE:
                        fcm_id = str(rng.randrange(10**18, 10**19))
                        campaign = rng.choice(FCM_CAMPAIGNS)
                        out.append(_Broadcast(at, campaign, "app", FCM, share, fcm_id))
                    else:
                        campaign = rng.choice(APP_CAMPAIGNS)
                        out.append(_Broadcast(at, campaign, "app", BRAZE, share, self.hex_id(96)))
            if d % 3 == 1:
                at = day0 + rng.randint(9 * 3600, 19 * 3600)
                campaign = rng.choice(WEB_CAMPAIGNS)
                share = rng.uniform(0.4, 0.7)
                out.append(_Broadcast(at, campaign, "web", BRAZE, share, self.hex_id(96)))
        return out

    def surface(self, platform: str, geo: dict, login_at: int | None) -> _Surface:
        """A new app install or browser of someone who lives at `geo`."""
        rng = self.rng
        first_touch = (self.start_ts - rng.randint(DAY, 400 * DAY)) * MICROS
        first_touch += rng.randrange(MICROS)
        if platform == "web":
            # A GA4 web client id: a random number and the first visit's epoch seconds.
            pseudo = f"{rng.randrange(10**8, 2 * 10**9)}.{first_touch // MICROS}"
        else:
            pseudo = self.hex_id(128)
        language = _LANGUAGES[geo["country"]]
        return _Surface(
            platform=platform,
            pseudo_id=pseudo,
            braze_device=_uuid(rng),
            login_at=login_at,
            first_touch=first_touch,
            device=_device_record(rng, platform, language),
            geo=geo,
            app_version=None if platform == "web" else rng.choice(["5.2.1", "5.3.0"]),
        )

    def make_person(self, n: int) -> _Person:
        """A random person: an anonymous visitor, or a user on app, web or both."""
        rng = self.rng
        key = f"person_{n:05d}"
        if rng.random() < 0.06:
            # An anonymous visitor who never logs in: a person of their own, web only. Every
            # other one comes through the buggy site version, so each placeholder value is
            # written by several people even in a small run.
            self._anonymous_n += 1
            junk = JUNK_IDS[self._anonymous_n // 2 % 3] if self._anonymous_n % 2 == 0 else None
            web = self.surface("web", _geo_record(rng, "USD"), None)
            return _Person(
                key=key,
                user_id=None,
                braze_id=None,
                devices=[],
                web=web,
                app_push=False,
                web_push=False,
                holdout=None,
                currency="USD",
                timezone="America/New_York",
                activity=min(rng.expovariate(1 / 0.15), 1.5),
                open_rate=0.0,
                sub_prospect=False,
                renews_at=None,
                opt_out_at=None,
                junk=junk,
            )
        currency = "EUR" if rng.random() < 0.2 else "USD"
        geo = _geo_record(rng, currency)
        surfaces = _pick(rng, (("app", 40), ("web", 30), ("both", 30)))
        devices: list[_Surface] = []
        if surfaces in ("app", "both"):
            devices.append(self.surface(rng.choice(["ios", "android"]), geo, 0))
            if rng.random() < 0.2:
                # A second device (a tablet) used before its first login: cross-device case.
                devices.append(self.surface(rng.choice(["ios", "android"]), geo, None))
        web = self.surface("web", geo, None) if surfaces in ("web", "both") else None
        app_push = bool(devices) and rng.random() < 0.7
        web_push = web is not None and rng.random() < 0.35
        period = self.end_ts - self.start_ts
        return _Person(
            key=key,
            user_id=f"u_{100000 + n}",
            braze_id=self.hex_id(96),
            devices=devices,
            web=web,
            app_push=app_push,
            web_push=web_push,
            holdout="control" if rng.random() < 0.1 else "treatment",
            currency=currency,
            timezone=_TIMEZONES.get(geo["country"], "Europe/Paris"),
            activity=min(rng.expovariate(1 / 0.3), 3.0),
            open_rate=min(rng.expovariate(1 / 0.1), 0.6),
            sub_prospect=rng.random() < 0.12,
            renews_at=self.start_ts + rng.randrange(period) if rng.random() < 0.1 else None,
            opt_out_at=(
                self.start_ts + rng.randrange(period)
                if (app_push or web_push) and rng.random() < 0.03
                else None
            ),
            # Every 20th user has the buggy version too, on whatever they do logged out.
            junk=JUNK_IDS[n // 20 % 3] if n % 20 == 0 else None,
        )

    def surfaces(self, p: _Person) -> list[_Surface]:
        """Where the person shows up: their app devices and their browser."""
        return [*p.devices, *([p.web] if p.web else [])]

    def simulate(self, p: _Person) -> None:
        """All events of one person: planned visits and pushes, processed in time order."""
        rng = self.rng
        heap: list[tuple[int, int, str, tuple]] = []
        seq = 0

        def plan(ts: int, kind: str, payload: tuple) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (ts, seq, kind, payload))

        surfaces = self.surfaces(p)
        rate = p.activity / DAY / _MEAN_HOURLY
        ts = float(self.start_ts)
        while True:
            ts += rng.expovariate(rate)
            if ts >= self.end_ts:
                break
            if rng.random() < _HOURLY[int(ts) // 3600 % 24]:
                surface = rng.choice(surfaces)
                mix = _WEB_MIX if surface.platform == "web" else _APP_MIX
                plan(int(ts), "visit", (surface, _pick(rng, mix), "organic"))
        if p.user_id is None and not heap:
            # Every anonymous visitor in the data has at least one visit.
            at = self.start_ts + rng.randrange(self.end_ts - self.start_ts)
            plan(at, "visit", (p.web, _pick(rng, _WEB_MIX), "organic"))
        for b in self.broadcasts:
            if b.kind == "web":
                audience = p.web_push
            else:
                # FCM campaigns are composed for the Android app only.
                audience = p.app_push and (b.system == BRAZE or p.devices[0].platform == "android")
            if not audience or rng.random() >= b.share:
                continue
            at = b.at + rng.randint(0, 600)
            if p.holdout == "treatment":
                plan(at, "message", (b,))
            elif b.system == BRAZE:
                # The global control group: Braze enrolls it instead of sending; the team keeps
                # it out of the Firebase audiences by hand.
                plan(at, "control", (b,))
        if p.renews_at is not None:
            plan(p.renews_at, "renewal", ())
        if p.opt_out_at is not None:
            surface = p.devices[0] if p.app_push else p.web
            fields = {"_token_change": "remove"}
            self.braze(p, surface, p.opt_out_at, BRAZE_TOKEN_STATE_CHANGE, OTHER, fields)
        while heap:
            ts, _, kind, payload = heapq.heappop(heap)
            if ts >= self.end_ts:
                continue
            if kind == "visit":
                self.visit(p, ts, *payload, plan=plan)
            elif p.opt_out_at is not None and ts >= p.opt_out_at and kind != "renewal":
                continue
            elif kind == "message":
                self.send(p, ts, *payload, plan=plan)
            elif kind == "control":
                (b,) = payload
                fields = {"campaign_id": b.campaign, "holdout_group": "control"}
                self.braze(p, None, ts, BRAZE_ENROLL_IN_CONTROL, "holdout_assigned", fields)
            elif kind == "cart":
                dispatch = self.hex_id(96)
                self.braze_message(p, ts, CART_CAMPAIGN, "app", dispatch, plan=plan)
            elif kind == "renewal":
                self.renewal(p, ts, plan)
        self.force_logins(p)

    def send(self, p: _Person, t0: int, b: _Broadcast, *, plan) -> None:
        if b.system == BRAZE:
            self.braze_message(p, t0, b.campaign, b.kind, b.send_id, plan=plan)
        else:
            self.fcm_message(p, t0, b.campaign, b.send_id, b.at, plan=plan)

    def braze_message(
        self, p: _Person, t0: int, campaign: str, kind: str, dispatch: str, *, plan
    ) -> None:
        """One Braze push: sent, then bounced, or perhaps opened, influenced or ignored. Braze
        reports sends, not deliveries: a send that does not bounce counts as delivered."""
        rng = self.rng
        s = p.devices[0] if kind == "app" else p.web
        assert s is not None
        common = {
            "campaign_id": campaign,
            "_dispatch": dispatch,
            "_msg": self.message_key(),
            "push_kind": kind,
        }
        self.braze(p, s, t0, BRAZE_SEND, "push_sent", common)
        if rng.random() < 0.03:
            self.braze(p, s, t0 + rng.randint(1, 20), BRAZE_BOUNCE, "push_bounced", common)
            return
        strength, touch_at = "impression", t0
        if s.platform == "ios" and rng.random() < 0.03:
            # It arrived while the app was open: iOS reports a foreground delivery, no tap.
            touch_at = t0 + rng.randint(1, 40)
            self.braze(p, s, touch_at, BRAZE_IOS_FOREGROUND, "push_delivered", common)
        elif rng.random() < p.open_rate:
            strength = "click"
            touch_at = t0 + 5 + int(min(rng.expovariate(1 / 2700), 20 * 3600))
            self.braze(p, s, touch_at, BRAZE_OPEN, "push_opened", common)
            utm = _BRAZE_APP_PUSH_UTM if kind == "app" else _WEB_PUSH_UTM
            self.after_open(p, touch_at, s, campaign, utm, plan)
        elif kind == "app" and rng.random() < 0.06:
            # Braze infers influenced opens on mobile apps only.
            strength = "influenced"
            touch_at = t0 + rng.randint(600, 6 * 3600)
            self.braze(p, s, touch_at, BRAZE_INFLUENCED_OPEN, "push_influenced_open", common)
        self.maybe_return(p, strength, touch_at, plan)

    def fcm_message(
        self, p: _Person, t0: int, campaign: str, fcm_id: str, sent_at: int, *, plan
    ) -> None:
        """One push sent through Firebase: the app logs its receipt, open or dismissal to GA4.
        FCM logs no send, so a message that never reached the device leaves no trace."""
        rng = self.rng
        s = p.devices[0]
        if rng.random() < 0.05:
            return
        common = {
            "campaign_id": campaign,
            "_fcm_id": fcm_id,
            "_fcm_time": sent_at,
            "_msg": self.message_key(),
            "push_kind": "app",
        }
        delivered = t0 + rng.randint(1, 40)
        if rng.random() < 0.05:
            # The app was in the foreground: the app handles it and shows no notification.
            self.ga4(p, s, delivered, "notification_foreground", "push_delivered", common)
            self.maybe_return(p, "impression", delivered, plan)
            return
        self.ga4(p, s, delivered, "notification_receive", "push_delivered", common)
        strength, touch_at = "impression", delivered
        if rng.random() < p.open_rate:
            strength = "click"
            touch_at = delivered + 5 + int(min(rng.expovariate(1 / 2700), 20 * 3600))
            self.ga4(p, s, touch_at, "notification_open", "push_opened", common)
            self.after_open(p, touch_at, s, campaign, _FCM_PUSH_UTM, plan)
        elif rng.random() < 0.2:
            at = delivered + rng.randint(30, 7200)
            self.ga4(p, s, at, "notification_dismiss", "push_dismissed", common)
        self.maybe_return(p, strength, touch_at, plan)

    def maybe_return(self, p: _Person, strength: str, touch_at: int, plan) -> None:
        """A push the person saw may bring them back later, through another channel."""
        rng = self.rng
        if rng.random() < _RETURN_CHANCE[strength]:
            later = touch_at + 3600 + int(rng.expovariate(1 / (30 * 3600)))
            choice = rng.choice(self.surfaces(p))
            plan(later, "visit", (choice, _pick(rng, _RETURN_MIX), "return"))

    def after_open(self, p, opened: int, s: _Surface, campaign: str, utm_mix, plan) -> None:
        """The session a push open starts: usually seconds later, sometimes without any utm."""
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            return
        utm_campaign = campaign.removeprefix("cmp_")
        web = s.platform == "web"
        if r < 0.08:
            # Opened, then came back some minutes later: outside the open's window, its own touch.
            at = opened + rng.randint(180, 600)
            if rng.random() < 0.5:
                traffic = {"utm_source": utm_mix[0][0][0], "utm_medium": utm_mix[0][0][1]}
                channel = PUSH_CHANNEL
            else:
                traffic, channel = {}, DIRECT
        else:
            at = opened + rng.randint(5, 90)
            if rng.random() < _PUSH_OPEN_DIRECT_SHARE:
                # The deep link dropped its utm: the session is recorded as Direct.
                traffic, channel = {}, DIRECT
            else:
                source, medium = _pick(rng, utm_mix)
                traffic = {"utm_source": source, "utm_medium": medium}
                traffic["utm_campaign"] = utm_campaign
                channel = "Unassigned" if medium == "notif" else PUSH_CHANNEL
        if web:
            query = "&".join(f"{k}={v}" for k, v in traffic.items())
            traffic["landing_url"] = f"{HOME}/promo/{utm_campaign}" + (f"?{query}" if query else "")
        self.visit(p, at, s, channel, "push_open", plan=plan, traffic=traffic)

    def visit(self, p, t0, s: _Surface, channel, kind, *, plan, traffic=None, renewal=False):
        """One session with its views, perhaps a cart, a login and a conversion."""
        rng = self.rng
        web = s.platform == "web"
        if traffic is None:
            traffic = _traffic(rng, channel, web)
        known = p.user_id is not None
        buys = rng.random() < (_PURCHASE_CHANCE[kind] if known else 0.015)
        subscribes = known and p.sub_prospect and not p.subscribed
        subscribes = subscribes and rng.random() < _SUB_CHANCE[kind]
        leads = web and rng.random() < (0.012 if known else 0.05)
        s.sessions += 1
        # GA4's session id is the session's start in epoch seconds.
        session = {"_sess": t0, "_sess_n": s.sessions}
        # Converting needs an account, so a known person logs in on this surface first.
        needs_login = buys or subscribes or renewal or rng.random() < 0.3
        login_at = None
        if known and needs_login and s.login_at is None:
            s.login_at = login_at = t0 + 3
        if known and login_at is None and (s.login_at is None or t0 < s.login_at):
            s.anonymous_sessions.append((t0, t0, s.sessions))
        fields = {**session, **traffic, "_ch": channel}
        self.ga4(p, s, t0, "session_start", "session_start", fields)
        ts = t0
        if login_at is not None:
            ts = login_at
            method = rng.choice(["email", "google", "apple"])
            self.ga4(p, s, ts, "login", "identify", {**session, "_method": method})

        def step(ga4_name: str, name: str, **extra) -> None:
            nonlocal ts
            ts += rng.randint(8, 90)
            self.ga4(p, s, ts, ga4_name, name, {**session, **extra})

        view = "page_view" if web else "screen_view"
        for _ in range(rng.randint(1, 4)):
            step(view, view, _page=rng.choice(["home", "sale", "new", "shoes", "bags", "account"]))
        product = f"sku_{rng.randint(1000, 9999)}"
        price = rng.choice([1999, 2999, 4999, 7999, 12900])
        carts = buys or rng.random() < 0.2
        if carts or rng.random() < 0.4:
            step("view_item", "product_view", _items=[(product, price, 1)], currency=p.currency)
            logged_in = s.login_at is not None and ts >= s.login_at
            if not web and known and logged_in and rng.random() < 0.1:
                # The app also logs a wishlist tap to Braze: a custom event that is no conversion.
                fields = _custom(WISHLIST_EVENT, {"product_id": product})
                self.braze(p, s, ts + 2, BRAZE_CUSTOM_EVENT, OTHER, fields)
        if carts:
            items = [(product, price, rng.randint(1, 3))]
            step("add_to_cart", "add_to_cart", _items=items, currency=p.currency)
        if buys:
            step("begin_checkout", "checkout_start", currency=p.currency)
            ts += rng.randint(20, 240)
            self.purchase(p, s, session, ts)
        elif carts and p.app_push and p.holdout == "treatment" and rng.random() < 0.5:
            plan(ts + rng.randint(3600, 3 * 3600), "cart", ())
        if subscribes:
            p.subscribed = True
            plan_name, cents = rng.choice([("monthly", 999), ("yearly", 9900)])
            ts += rng.randint(8, 90)
            props = {"plan": plan_name, "price": cents / 100, "currency": p.currency}
            fields = _custom(SUBSCRIPTION_STARTED, props)
            self.braze(p, s, ts, BRAZE_CUSTOM_EVENT, "subscription_start", fields)
        if renewal:
            ts += rng.randint(8, 90)
            props = {"plan": "monthly", "price": 9.99, "currency": p.currency}
            fields = _custom(SUBSCRIPTION_RENEWED, props)
            self.braze(p, s, ts, BRAZE_CUSTOM_EVENT, "subscription_renewal", fields)
        if leads:
            form = rng.choice(["newsletter_signup", "store_appointment", "b2b_quote"])
            extra: dict = {"_form": form}
            if rng.random() < 0.5:
                extra.update(_cents=0, currency=p.currency)
            ga4_name = "sign_up" if form == "newsletter_signup" else "generate_lead"
            step(ga4_name, "lead_submit", **extra)

    def purchase(self, p: _Person, s: _Surface, session: dict, ts: int) -> None:
        """A purchase, now and then reported a second time under the same transaction id."""
        rng = self.rng
        items = [
            (f"sku_{rng.randint(1000, 9999)}", rng.choice([999, 1999, 2999, 4999, 7999]), 1)
            for _ in range(rng.randint(1, 4))
        ]
        # The value of an order is what its items cost; shipping is apart, as GA4 keeps it.
        cents = sum(price * quantity for _, price, quantity in items)
        fields = {
            **session,
            "currency": p.currency,
            "order_id": self.order_id(),
            "_cents": cents,
            "_items": items,
        }
        if self.ga4(p, s, ts, "purchase", "purchase", fields) is None:
            return
        if rng.random() < 0.02:
            # The server reports the same order again through the Measurement Protocol (no
            # session); only the first purchase event of an order counts.
            later = ts + rng.randint(2, 40)
            resent = {k: v for k, v in fields.items() if k not in session}
            self.ga4(p, s, later, "purchase", "purchase", {**resent, "_server": True})

    def renewal(self, p: _Person, ts: int, plan) -> None:
        """A subscription renewal: mostly done in a session, otherwise charged by the server."""
        rng = self.rng
        if rng.random() < 0.35:
            fields = {
                "user_id": p.user_id,
                "platform": "unknown",
                "currency": p.currency,
                "order_id": self.order_id("sub"),
                "_cents": 999,
                "_props": {"plan": "monthly", "charged_by": "billing_server"},
            }
            self.emit(
                p.key,
                ts,
                "subscription_renewal",
                fields,
                src=CANONICAL,
                kind="subscription_renewal",
            )
            return
        surface = rng.choice(self.surfaces(p))
        channel = _pick(rng, (((DIRECT, 60), ("Email", 40))))
        self.visit(p, ts, surface, channel, "renewal", plan=plan, renewal=True)

    def unknown_events(self, persons: list[_Person]) -> None:
        """A few app events outside the canonical vocabulary: valid rows, kept as `other`."""
        app_users = [p for p in persons if p.devices and p.user_id]
        for p in self.rng.sample(app_users, min(3, len(app_users))):
            ts = self.start_ts + self.rng.randrange(self.days * DAY)
            fields = {"_rating": self.rng.randint(1, 5)}
            self.ga4(p, p.devices[0], ts, UNKNOWN_GA4_EVENT, OTHER, fields)

    def force_logins(self, p: _Person) -> None:
        """Log a known person in on every surface that otherwise stays anonymous.

        Without a login an anonymous cookie or app instance would look like a different person,
        and the truth would ask the identity stage for something no rule can recover.
        """
        if p.user_id is None:
            return
        for s in self.surfaces(p):
            if s.login_at is not None or not s.anonymous_sessions:
                continue
            sid, started, number = s.anonymous_sessions[-1]
            at = min(started + 1, self.end_ts - 1)
            fields = {"user_id": p.user_id, "_sess": sid, "_sess_n": number, "_method": "email"}
            # The login row carries the user id, whatever the surface carried before it.
            self.ga4(p, s, at, "login", "identify", fields)

    # -- scripted stories --------------------------------------------------------------------

    def stories(self) -> None:
        """Hand-written people whose expected attribution is stated in the tests."""
        for person, rows in _story_scripts(self.start_ts).items():
            for n, (ts, src, kind, name, fields) in enumerate(rows):
                fields = dict(fields)
                key = fields.pop("key", None) or f"story_{person.split('_', 2)[2]}_{n:02d}"
                self.emit(person, ts, name, fields, src=src, kind=kind, key=key, micros=0)


def _custom(name: str, properties: dict) -> dict:
    """The fields of a Braze custom event: its name and its JSON-encoded properties."""
    return {"_custom_name": name, "_props": properties}


def _story_surface(platform: str, pseudo_id: str, braze_device: str) -> _Surface:
    """A story person's device or browser; its cosmetic records come from its own fixed seed."""
    local = random.Random(pseudo_id)
    return _Surface(
        platform=platform,
        pseudo_id=pseudo_id,
        braze_device=braze_device,
        login_at=0,
        first_touch=1_700_000_000 * MICROS,
        device=_device_record(local, platform, "en-us"),
        geo=_geo_record(local, "USD"),
        app_version=None if platform == "web" else "5.3.0",
    )


def _story_scripts(t0: int) -> dict[str, list[tuple[int, str, str, str, dict]]]:
    """The story people's events as (time, source, source event type, canonical name, fields);
    times are `day N, HH:MM:SS` after the demo's first midnight."""

    def at(day: int, hms: str) -> int:
        h, m, s = (int(x) for x in hms.split(":"))
        return t0 + day * DAY + h * 3600 + m * 60 + s

    def ga(s: _Surface, user: str | None) -> dict:
        return {"_surface": s, "platform": s.platform, "user_id": user}

    def bz(profile: str, user: str, s: _Surface) -> dict:
        return {
            "_braze": profile,
            "user_id": user,
            "_timezone": "America/New_York",
            "_surface_ref": s,
            "device_id": s.braze_device,
            "platform": s.platform,
        }

    def push(ids: dict, campaign: str, message: str, kind: str = "app") -> dict:
        dispatch = hashlib.md5(message.encode()).hexdigest()[:24]
        fields = {"campaign_id": campaign, "_msg": message, "_dispatch": dispatch}
        return {**ids, **fields, "push_kind": kind}

    def session(ids: dict, start: int, label: str, **traffic) -> dict:
        return {**ids, "_sess": start, "_sess_n": 1, "_ch": label, **traffic}

    def inside(ids: dict, start: int, **extra) -> dict:
        return {**ids, "_sess": start, "_sess_n": 1, **extra}

    def pays(ids: dict, start: int, order: str, cents: int, key: str, cur: str = "USD") -> dict:
        items = [("sku_story", cents, 1)]
        return inside(ids, start, order_id=order, _cents=cents, currency=cur, _items=items, key=key)

    phone_1 = _story_surface("ios", "5707a1e0000000000000000000000001", _stable_uuid("story 1"))
    web_2 = _story_surface("web", "1000000002.1700000000", _stable_uuid("story 2"))
    phone_3 = _story_surface("android", "5707a1e0000000000000000000000003", _stable_uuid("story 3"))
    phone_4 = _story_surface("ios", "5707a1e0000000000000000000000004", _stable_uuid("story 4"))
    phone_5 = _story_surface("android", "5707a1e0000000000000000000000005", _stable_uuid("story 5"))
    web_5 = _story_surface("web", "1000000005.1700000000", _stable_uuid("story 5 web"))
    phone_x = _story_surface("ios", "5707a1e00000000000000000000000aa", _stable_uuid("story x"))
    tablet = _story_surface("android", "5707a1e0000000000000000000000ab1", _stable_uuid("tablet"))
    web_y = _story_surface("web", "1000000099.1700000000", _stable_uuid("story y web"))

    s1, b1 = ga(phone_1, "u_story_1"), bz("65a0000000000000000000b1", "u_story_1", phone_1)
    s2_anon, s2 = ga(web_2, None), ga(web_2, "u_story_2")
    b2 = bz("65a0000000000000000000b2", "u_story_2", web_2)
    s3, b3 = ga(phone_3, "u_story_3"), bz("65a0000000000000000000b3", "u_story_3", phone_3)
    s4, b4 = ga(phone_4, "u_story_4"), bz("65a0000000000000000000b4", "u_story_4", phone_4)
    b5, s5_web = bz("65a0000000000000000000b5", "u_story_5", phone_5), ga(web_5, "u_story_5")
    bx = bz("65a0000000000000000000ba", "u_story_x", phone_x)
    # The tablet's app sets the user id on the login event only: everything else it logs
    # carries the app instance id alone.
    tab, tab_x, tab_y = ga(tablet, None), ga(tablet, "u_story_x"), ga(tablet, "u_story_y")
    y_web = ga(web_y, "u_story_y")
    braze_push = {"utm_source": "braze", "utm_medium": "push"}
    fcm_3a = {
        **s3,
        "campaign_id": "fcm_android_weekly_deals",
        "_msg": "msg_story_3a",
        "_fcm_id": "7364512098000000003",
        "_fcm_time": at(5, "18:00:00"),
        "push_kind": "app",
    }
    sess_1a, sess_1b = at(1, "10:20:30"), at(2, "19:00:00")
    sess_2, sess_3a = at(4, "12:00:00"), at(4, "20:00:00")
    sess_3b, sess_3c = at(5, "18:30:40"), at(6, "08:06:00")
    sess_4a, sess_4b, sess_5 = at(0, "08:05:20"), at(7, "08:00:00"), at(8, "08:55:00")
    sess_xa, sess_ya, sess_yb = at(2, "10:00:30"), at(3, "20:00:30"), at(4, "11:00:00")
    send, opened = (BRAZE, BRAZE_SEND, "push_sent"), (BRAZE, BRAZE_OPEN, "push_opened")
    start = (GA4, "session_start", "session_start")
    screen, page = (GA4, "screen_view", "screen_view"), (GA4, "page_view", "page_view")
    bought, login = (GA4, "purchase", "purchase"), (GA4, "login", "identify")
    return {
        # A push click on day 1, then a purchase through an email on day 2: a click assist.
        # The server reports the order twice; the first purchase event is the conversion.
        "person_story_click_assist": [
            (at(1, "10:00:00"), *send, push(b1, "cmp_app_spring_sale", "msg_story_1")),
            (at(1, "10:20:00"), *opened, push(b1, "cmp_app_spring_sale", "msg_story_1")),
            (sess_1a, *start, session(s1, sess_1a, PUSH_CHANNEL, **braze_push)),
            (at(1, "10:21:10"), *screen, inside(s1, sess_1a, _page="sale")),
            (
                sess_1b,
                *start,
                session(s1, sess_1b, "Email", utm_source="newsletter", utm_medium="email"),
            ),
            (at(2, "19:03:00"), GA4, "view_item", "product_view", inside(s1, sess_1b)),
            (
                at(2, "19:06:00"),
                *bought,
                pays(s1, sess_1b, "ord_story_1", 5990, "story_click_assist_purchase"),
            ),
            (
                at(2, "19:06:20"),
                *bought,
                {
                    **s1,
                    "order_id": "ord_story_1",
                    "_cents": 5990,
                    "currency": "USD",
                    "_items": [("sku_story", 5990, 1)],
                    "_server": True,
                    "key": "story_click_assist_purchase_again",
                },
            ),
        ],
        # A web push delivered but never opened, then an anonymous Google visit that logs in
        # and buys: an impression-only assist, whose Organic Search session joins the person
        # only through backward stitching.
        "person_story_impression_assist": [
            (
                at(3, "09:00:00"),
                *send,
                push(b2, "cmp_web_new_arrivals", "msg_story_2", "web"),
            ),
            (
                sess_2,
                *start,
                session(
                    s2_anon,
                    sess_2,
                    "Organic Search",
                    referrer="https://www.google.com/",
                    landing_url=f"{HOME}/new",
                ),
            ),
            (at(4, "12:02:00"), *page, inside(s2_anon, sess_2, _page="new")),
            (at(4, "12:07:00"), *login, inside(s2, sess_2, _method="email")),
            (
                at(4, "12:10:00"),
                *bought,
                pays(s2, sess_2, "ord_story_2", 12000, "story_impression_assist_purchase", "EUR"),
            ),
        ],
        # An FCM push opened, then a session without utm 40 s later (recorded as Direct): the
        # session is the open's touch, so push is the last touch of the subscription (logged
        # to Braze). The next day a Braze push opened and a Direct session 5 minutes later:
        # two touches, and last non-direct picks the push click for the lead.
        "person_story_push_direct": [
            (sess_3a, *start, session(s3, sess_3a, DIRECT)),
            (at(5, "18:00:03"), GA4, "notification_receive", "push_delivered", fcm_3a),
            (at(5, "18:30:00"), GA4, "notification_open", "push_opened", fcm_3a),
            (sess_3b, *start, session(s3, sess_3b, DIRECT)),
            (
                at(5, "18:35:00"),
                BRAZE,
                BRAZE_CUSTOM_EVENT,
                "subscription_start",
                {
                    **b3,
                    **_custom(SUBSCRIPTION_STARTED, {"plan": "monthly", "price": 9.99}),
                    "key": "story_push_direct_subscription",
                },
            ),
            (at(6, "08:00:00"), *send, push(b3, "cmp_app_daily_deals", "msg_story_3b")),
            (at(6, "08:01:00"), *opened, push(b3, "cmp_app_daily_deals", "msg_story_3b")),
            (sess_3c, *start, session(s3, sess_3c, DIRECT)),
            (
                at(6, "08:10:00"),
                GA4,
                "generate_lead",
                "lead_submit",
                inside(s3, sess_3c, _form="store_appointment", key="story_push_direct_lead"),
            ),
        ],
        # A push click one second older than the 7-day purchase lookback: no push in the path.
        "person_story_outside_lookback": [
            (at(0, "08:00:00"), *send, push(b4, "cmp_app_new_arrivals", "msg_story_4")),
            (at(0, "08:05:00"), *opened, push(b4, "cmp_app_new_arrivals", "msg_story_4")),
            (sess_4a, *start, session(s4, sess_4a, PUSH_CHANNEL, **braze_push)),
            (sess_4b, *start, session(s4, sess_4b, DIRECT)),
            (
                at(7, "08:05:01"),
                *bought,
                pays(s4, sess_4b, "ord_story_4", 3500, "story_outside_lookback_purchase"),
            ),
        ],
        # An influenced open exactly 7 days before a paid-search purchase on the web: the
        # window is inclusive, so it is an influenced assist (and a cross-device one).
        "person_story_boundary_influenced": [
            (at(1, "07:00:00"), *send, push(b5, "cmp_app_weekend_picks", "msg_story_5")),
            (
                at(1, "09:00:00"),
                BRAZE,
                BRAZE_INFLUENCED_OPEN,
                "push_influenced_open",
                push(b5, "cmp_app_weekend_picks", "msg_story_5"),
            ),
            (
                sess_5,
                *start,
                session(
                    s5_web,
                    sess_5,
                    "Paid Search",
                    utm_source="google",
                    utm_medium="cpc",
                    utm_campaign="brand_search",
                    click_id="Cj0KCQiAstory5",
                    referrer="https://www.google.com/",
                    landing_url=f"{HOME}/?utm_source=google&utm_medium=cpc",
                ),
            ),
            (
                at(8, "09:00:00"),
                *bought,
                pays(s5_web, sess_5, "ord_story_5", 8000, "story_boundary_influenced_purchase"),
            ),
        ],
        # X and Y share a tablet (one app instance). Its events carry only the app instance
        # id; each belongs to the user whose login on it most recently preceded it. X got a
        # push on their phone the evening before Y's purchase: crediting Y's purchase to X would
        # wrongly show an assist.
        "person_story_shared_x": [
            (at(2, "10:00:00"), *login, {**tab_x, "_method": "email", "key": "story_x_login"}),
            (sess_xa, *start, session(tab, sess_xa, DIRECT)),
            (at(2, "10:02:00"), *screen, inside(tab, sess_xa, _page="home")),
            (
                at(2, "10:05:00"),
                *bought,
                pays(tab, sess_xa, "ord_story_x", 3000, "story_shared_x_purchase"),
            ),
            (at(3, "19:00:00"), *send, push(bx, "cmp_app_price_drop", "msg_story_x")),
        ],
        "person_story_shared_y": [
            (at(3, "20:00:00"), *login, {**tab_y, "_method": "email", "key": "story_y_login"}),
            (
                sess_ya,
                *start,
                session(tab, sess_ya, "Organic Social", utm_source="facebook", utm_medium="social"),
            ),
            (
                at(3, "20:04:00"),
                *bought,
                pays(tab, sess_ya, "ord_story_y", 4500, "story_shared_y_purchase"),
            ),
            (
                sess_yb,
                *start,
                session(
                    y_web,
                    sess_yb,
                    "Organic Search",
                    utm_source="google",
                    utm_medium="organic",
                    landing_url=f"{HOME}/?utm_source=google&utm_medium=organic",
                ),
            ),
            (at(4, "11:01:00"), *page, inside(y_web, sess_yb, _page="home")),
        ],
    }


# -- the expected answer ---------------------------------------------------------------------


def _micros(event: dict) -> int:
    return event["_t"] * MICROS + event["_us"]


@dataclass(frozen=True)
class _Touch:
    ts: int  # microseconds
    touch_id: str
    kind: str  # session, click, influenced or impression
    channel: str
    is_push: bool


def _person_touches(events: list[dict], window_us: int) -> tuple[list[_Touch], int, int]:
    """One person's touches, plus how many sessions a push open started and how many of those
    carried no traffic source. `events` must be sorted by time."""
    opens = [_micros(e) for e in events if e["event_name"] == "push_opened"]
    touches: list[_Touch] = []
    messages: dict[str, dict[str, tuple[int, str]]] = {}
    opened_sessions = opened_direct = 0
    for e in events:
        name, ts = e["event_name"], _micros(e)
        if name == "session_start":
            i = bisect.bisect_right(opens, ts)
            if i and ts - opens[i - 1] <= window_us:
                # The session the open started: the open's touch, whatever its utm says.
                opened_sessions += 1
                opened_direct += not (e.get("utm_source") or e.get("utm_medium"))
                continue
            channel = e["_ch"]
            touches.append(_Touch(ts, e["key"], "session", channel, channel == PUSH_CHANNEL))
        elif name.startswith("push_") and e.get("_msg"):
            messages.setdefault(e["_msg"], {}).setdefault(name, (ts, e["key"]))
    for seen in messages.values():
        for name, kind in (
            ("push_opened", "click"),
            ("push_influenced_open", "influenced"),
            ("push_delivered", "impression"),
        ):
            if name in seen:
                ts, key = seen[name]
                touches.append(_Touch(ts, key, kind, PUSH_CHANNEL, True))
                break
        else:
            # A send without a bounce counts as delivered, at the send.
            if "push_sent" in seen and "push_bounced" not in seen:
                ts, key = seen["push_sent"]
                touches.append(_Touch(ts, key, "impression", PUSH_CHANNEL, True))
    touches.sort(key=lambda t: (t.ts, t.touch_id))
    return touches, opened_sessions, opened_direct


def _role(touches: list[_Touch], lo: int, hi: int) -> dict:
    """Push's role in one conversion whose window is [lo, hi], under last non-direct."""
    path = [t for t in touches if lo <= t.ts <= hi]
    clicks = [t for t in path if t.kind in ("session", "click")]
    non_direct = [t for t in clicks if t.channel != DIRECT]
    last = (non_direct or clicks or [None])[-1]
    pushes = [t for t in path if t.is_push]
    if last is not None and last.is_push:
        role = "last_touch"
    elif pushes:
        role = "assist"
    else:
        role = "none"
    kind = None
    if role == "assist":
        # A session recorded under the push channel is a click on a push.
        kinds = ["click" if t.kind == "session" else t.kind for t in pushes]
        kind = max(kinds, key=_ASSIST_RANK.__getitem__)
    return {
        "push_role": role,
        "assist_kind": kind,
        "last_touch_channel": last.channel if last is not None else DIRECT,
        "push_touch_count": len(pushes),
        "ga_assist": any(t.is_push for t in clicks[:-1]),
    }


@dataclass(frozen=True)
class _Truth:
    conversions: list[dict]
    push_opened_sessions: int
    push_opened_direct_sessions: int
    duplicate_order_events: int


def expected_results(events: list[dict], settings: Settings) -> _Truth:
    """Each conversion's true person and push role, from the generator's own knowledge.

    Only the default last-touch rule (last non-direct) is implemented: this is a check on the
    pipeline at its defaults, not a second attribution engine.
    """
    if settings.attribution.last_touch_rule != "last_non_direct":
        raise ValueError("the demo truth is computed for the last_non_direct rule only")
    window_us = int(settings.attribution.push_open_session_window_minutes * 60 * MICROS)
    type_of = {ev: name for name, d in settings.conversions.items() for ev in d.events}
    by_person: dict[str, list[dict]] = {}
    for e in sorted(events, key=lambda e: (_micros(e), e["key"])):
        by_person.setdefault(e["_p"], []).append(e)
    touches: dict[str, list[_Touch]] = {}
    opened = opened_direct = 0
    for person, person_events in by_person.items():
        touches[person], n, n_direct = _person_touches(person_events, window_us)
        opened += n
        opened_direct += n_direct
    rows = []
    seen_orders: set[tuple[str, str]] = set()
    repeated_orders = 0
    for person, person_events in by_person.items():
        for e in person_events:
            ctype = type_of.get(e["event_name"])
            if ctype is None:
                continue
            definition = settings.conversions[ctype]
            if definition.dedupe_by_order_id and e.get("order_id"):
                if (ctype, e["order_id"]) in seen_orders:
                    repeated_orders += 1
                    continue
                seen_orders.add((ctype, e["order_id"]))
            cents = e.get("_cents")
            lookback_us = definition.lookback_days * DAY * MICROS
            ts = _micros(e)
            rows.append(
                {
                    "conversion_key": e["key"],
                    "source": e["_src"],
                    "conversion_type": ctype,
                    "event_name": e["event_name"],
                    "true_person": person,
                    "conversion_time": ts,
                    "order_id": e.get("order_id"),
                    "value": (cents or 0) / 100,
                    "currency": e.get("currency"),
                    "lookback_days": definition.lookback_days,
                    **_role(touches[person], ts - lookback_us, ts),
                }
            )
    rows.sort(key=lambda r: (r["conversion_time"], r["conversion_key"]))
    return _Truth(rows, opened, opened_direct, repeated_orders)


# -- GA4 / Firebase export rows --------------------------------------------------------------

_STREAMS = {"web": "3456789012", "ios": "2718281828", "android": "3141592653"}
_APP_INFO = {
    "ios": ("1:2718281828:ios:5e1c0a9b3d7f2a46", "com.apple.AppStore"),
    "android": ("1:3141592653:android:0b8d4f2e6a1c3e57", "com.android.vending"),
}
_PRIVACY = {"analytics_storage": "Yes", "ads_storage": "Yes", "uses_transient_token": "No"}
_FIRST_SOURCE = {"name": "(direct)", "medium": "(none)", "source": "(direct)"}
_ITEM_CATEGORIES = ("Shoes", "Bags", "Accessories")

_PARAM_VALUE = pa.struct(
    [
        ("string_value", pa.string()),
        ("int_value", pa.int64()),
        ("float_value", pa.float64()),
        ("double_value", pa.float64()),
    ]
)


def _strings(*names: str) -> pa.StructType:
    return pa.struct([(name, pa.string()) for name in names])


# The export's schema (the part of it the demo fills), as BigQuery writes it to Parquet.
GA4_SCHEMA = pa.schema(
    [
        ("event_date", pa.string()),
        ("event_timestamp", pa.int64()),
        ("event_name", pa.string()),
        ("event_params", pa.list_(pa.struct([("key", pa.string()), ("value", _PARAM_VALUE)]))),
        ("event_previous_timestamp", pa.int64()),
        ("event_value_in_usd", pa.float64()),
        ("event_bundle_sequence_id", pa.int64()),
        ("event_server_timestamp_offset", pa.int64()),
        ("user_id", pa.string()),
        ("user_pseudo_id", pa.string()),
        ("privacy_info", _strings("analytics_storage", "ads_storage", "uses_transient_token")),
        ("user_properties", pa.list_(pa.struct([("key", pa.string()), ("value", _PARAM_VALUE)]))),
        ("user_first_touch_timestamp", pa.int64()),
        ("user_ltv", pa.struct([("revenue", pa.float64()), ("currency", pa.string())])),
        (
            "device",
            pa.struct(
                [
                    ("category", pa.string()),
                    ("mobile_brand_name", pa.string()),
                    ("mobile_model_name", pa.string()),
                    ("operating_system", pa.string()),
                    ("operating_system_version", pa.string()),
                    ("advertising_id", pa.string()),
                    ("language", pa.string()),
                    ("is_limited_ad_tracking", pa.string()),
                    ("browser", pa.string()),
                    ("browser_version", pa.string()),
                    ("web_info", _strings("browser", "browser_version", "hostname")),
                ]
            ),
        ),
        ("geo", _strings("city", "country", "continent", "region", "sub_continent", "metro")),
        (
            "app_info",
            _strings("id", "version", "install_store", "firebase_app_id", "install_source"),
        ),
        ("traffic_source", _strings("name", "medium", "source")),
        ("stream_id", pa.string()),
        ("platform", pa.string()),
        ("event_dimensions", _strings("hostname")),
        (
            "ecommerce",
            pa.struct(
                [
                    ("total_item_quantity", pa.int64()),
                    ("purchase_revenue_in_usd", pa.float64()),
                    ("purchase_revenue", pa.float64()),
                    ("refund_value_in_usd", pa.float64()),
                    ("refund_value", pa.float64()),
                    ("shipping_value_in_usd", pa.float64()),
                    ("shipping_value", pa.float64()),
                    ("tax_value_in_usd", pa.float64()),
                    ("tax_value", pa.float64()),
                    ("unique_items", pa.int64()),
                    ("transaction_id", pa.string()),
                ]
            ),
        ),
        (
            "items",
            pa.list_(
                pa.struct(
                    [
                        ("item_id", pa.string()),
                        ("item_name", pa.string()),
                        ("item_category", pa.string()),
                        ("price", pa.float64()),
                        ("quantity", pa.int64()),
                        ("item_revenue", pa.float64()),
                    ]
                )
            ),
        ),
        (
            "collected_traffic_source",
            _strings(
                "manual_campaign_id",
                "manual_campaign_name",
                "manual_source",
                "manual_medium",
                "manual_term",
                "manual_content",
                "gclid",
                "dclid",
                "srsltid",
            ),
        ),
        ("is_active_user", pa.bool_()),
    ]
)


def _money(cents: int) -> float:
    return round(cents / 100, 2)


def _usd(cents: int, currency: str | None) -> float:
    return round(cents / 100 * (_USD_PER_EUR if currency == "EUR" else 1.0), 2)


def _ga4_params(e: dict) -> list[tuple[str, object]]:
    """The event's params, as (key, value): text, integer or floating point."""
    s: _Surface = e["_surface"]
    web = s.platform == "web"
    kind, key = e["_type"], e["key"]
    out: list[tuple[str, object]] = []

    def add(name: str, value: object) -> None:
        if value is not None:
            out.append((name, value))

    if kind == "session_start":
        if web:
            add("page_location", e.get("landing_url") or f"{HOME}/")
            add("page_referrer", e.get("referrer"))
        else:
            # An app session opened from a tagged link: Firebase logs the campaign's source on
            # the session's first event.
            for name in ("source", "medium", "campaign", "term"):
                add(name, e.get(f"utm_{name}"))
            add("gclid", e.get("click_id"))
    elif kind == "page_view":
        add("page_location", f"{HOME}/{e.get('_page', 'home')}")
        add("page_title", f"Shop - {e.get('_page', 'home').title()}")
    elif kind == "screen_view":
        page = e.get("_page", "home")
        add("firebase_screen", page)
        suffix = "ViewController" if s.platform == "ios" else "Activity"
        add("firebase_screen_class", f"{page.title()}{suffix}")
    elif kind in ("view_item", "add_to_cart", "begin_checkout", "purchase"):
        add("currency", e.get("currency"))
        items = e.get("_items") or []
        cents = e.get("_cents", sum(p * q for _, p, q in items))
        add("value", _money(cents))
        if kind == "purchase":
            add("transaction_id", e.get("order_id"))
            add("shipping", 4.99)
            add("tax", 0.0)
    elif kind in ("login", "sign_up"):
        add("method", e.get("_method", "email"))
    elif kind == "generate_lead":
        add("form_id", e.get("_form"))
    elif kind.startswith("notification_"):
        add("message_id", e["_fcm_id"])
        add("message_name", e["campaign_id"])
        add("message_time", e["_fcm_time"])
        add("message_device_time", 0)
        add("message_type", "display_notification")
    elif kind == UNKNOWN_GA4_EVENT:
        add("rating", e["_rating"])
        add("store", "app_store" if s.platform == "ios" else "play_store")
    if kind in ("sign_up", "generate_lead") and e.get("_cents") is not None:
        add("value", _money(e["_cents"]))
        add("currency", e.get("currency"))
    if "_sess" in e:
        add("ga_session_id", e["_sess"])
        add("ga_session_number", e["_sess_n"])
    if kind not in ("session_start", "purchase") and not kind.startswith("notification_"):
        add("engagement_time_msec", _noise(key, "engagement", 100, 60_000))
    return out


def _param(name: str, value: object, as_json: bool) -> dict:
    slots: dict = {"string_value": None, "int_value": None, "float_value": None}
    slots["double_value"] = None
    if isinstance(value, str):
        slots["string_value"] = value
    elif isinstance(value, int):
        slots["int_value"] = str(value) if as_json else value
    else:
        slots["double_value"] = value
    return {"key": name, "value": slots}


def _ga4_row(e: dict, *, as_json: bool) -> dict:
    """The event as one row of the export: INT64 as JSON strings in NDJSON, as integers in
    Parquet, everything else the same."""

    def int64(value: int | None) -> int | str | None:
        if value is None:
            return None
        return str(value) if as_json else value

    s: _Surface = e["_surface"]
    web = s.platform == "web"
    kind = e["_type"]
    collected = None
    if (
        kind == "session_start"
        and web
        and any(e.get(k) for k in ("utm_source", "utm_medium", "utm_campaign", "click_id"))
    ):
        collected = {
            "manual_campaign_id": None,
            "manual_campaign_name": e.get("utm_campaign"),
            "manual_source": e.get("utm_source"),
            "manual_medium": e.get("utm_medium"),
            "manual_term": e.get("utm_term"),
            "manual_content": None,
            "gclid": e.get("click_id"),
            "dclid": None,
            "srsltid": None,
        }
    items = [
        {
            "item_id": sku,
            "item_name": f"Product {sku.removeprefix('sku_')}",
            "item_category": _ITEM_CATEGORIES[_noise(sku, "category", 0, 2)],
            "price": _money(price),
            "quantity": int64(quantity),
            "item_revenue": _money(price * quantity) if kind == "purchase" else None,
        }
        for sku, price, quantity in e.get("_items") or []
    ]
    ecommerce = value_usd = None
    if kind == "purchase":
        cents, currency = e["_cents"], e.get("currency")
        value_usd = _usd(cents, currency)
        ecommerce = {
            "total_item_quantity": int64(sum(q for _, _, q in e["_items"])),
            "purchase_revenue_in_usd": value_usd,
            "purchase_revenue": _money(cents),
            "refund_value_in_usd": None,
            "refund_value": None,
            "shipping_value_in_usd": _usd(499, currency),
            "shipping_value": 4.99,
            "tax_value_in_usd": 0.0,
            "tax_value": 0.0,
            "unique_items": int64(len(e["_items"])),
            "transaction_id": e.get("order_id"),
        }
    app_info = None
    if not web:
        firebase_app_id, install_source = _APP_INFO[s.platform]
        app_info = {
            "id": "com.example.shop",
            "version": s.app_version,
            "install_store": None,
            "firebase_app_id": firebase_app_id,
            "install_source": install_source,
        }
    offset = None if web or e.get("_server") else _noise(e["key"], "offset", 10**5, 9 * 10**6)
    return {
        "event_date": time.strftime("%Y%m%d", time.gmtime(e["_t"])),
        "event_timestamp": int64(e["_t"] * MICROS + e["_us"]),
        "event_name": kind,
        "event_params": [_param(k, v, as_json) for k, v in _ga4_params(e)],
        "event_previous_timestamp": None,
        "event_value_in_usd": value_usd,
        "event_bundle_sequence_id": int64(e["_bundle"]),
        "event_server_timestamp_offset": int64(offset),
        "user_id": e.get("user_id"),
        "user_pseudo_id": s.pseudo_id,
        "privacy_info": _PRIVACY,
        "user_properties": [],
        "user_first_touch_timestamp": int64(s.first_touch),
        "user_ltv": None,
        "device": s.device,
        "geo": s.geo,
        "app_info": app_info,
        "traffic_source": _FIRST_SOURCE,
        "stream_id": _STREAMS[s.platform],
        "platform": s.platform.upper(),
        "event_dimensions": {"hostname": HOME[8:]} if web else None,
        "ecommerce": ecommerce,
        "items": items,
        "collected_traffic_source": collected,
        "is_active_user": True,
    }


def _ga4_broken(row: dict, reason: str, *, as_json: bool) -> dict | str:
    """A copy of a real row, broken in one way (text when it is no longer JSON)."""
    row = dict(row)
    if reason == "ga4_invalid_json":
        line = json.dumps(row, separators=(",", ":"))
        return line[: len(line) // 2]
    if reason == "ga4_missing_event_timestamp":
        # A hand-edited line drops the key; a Parquet row can only hold a null.
        if as_json:
            del row["event_timestamp"]
        else:
            row["event_timestamp"] = None
    elif reason == "ga4_timestamp_in_milliseconds":
        millis = int(row["event_timestamp"]) // 1000
        row["event_timestamp"] = str(millis) if as_json else millis
    elif reason == "ga4_missing_event_name":
        row["event_name"] = None
    elif reason == "ga4_no_identifier":
        # Consent mode's cookieless ping: no cookie, no user.
        row["user_pseudo_id"] = row["user_id"] = None
    else:
        raise ValueError(f"unknown broken row {reason!r}")
    return row


# -- Braze Currents records ------------------------------------------------------------------

_BRAZE_APP_GROUP = _stable_uuid("braze app group: shop")
_BRAZE_APPS = {p: _stable_uuid(f"braze app: shop {p}") for p in ("ios", "android", "web")}


def _optional(name: str, kind: str = "string") -> dict:
    return {"name": name, "type": ["null", kind], "default": None}


def _required(name: str, kind: str = "string") -> dict:
    return {"name": name, "type": kind}


_HEAD = [
    _required("id"),
    _required("user_id"),
    _optional("external_user_id"),
    _required("app_id"),
    _required("time", "int"),
    _optional("timezone"),
]
_MESSAGE = [
    _optional("campaign_id"),
    _optional("campaign_name"),
    _optional("message_variation_id"),
    _optional("message_variation_name"),
    _optional("canvas_id"),
    _optional("canvas_name"),
    _optional("canvas_step_id"),
    _optional("send_id"),
    _optional("dispatch_id"),
]
_AD = [_optional("ad_id"), _optional("ad_id_type"), _optional("ad_tracking_enabled", "boolean")]
_DEVICE = [_optional("platform"), _optional("os_version"), _optional("device_model")]


def _braze_fields(event_type: str, version: int) -> list[dict]:
    """The writer schema's fields of one Currents event type (version 2 of Send adds two)."""
    if event_type in (BRAZE_SEND, BRAZE_IOS_FOREGROUND):
        extra = [_optional("message_extras"), _optional("locale_key")] if version > 1 else []
        return [
            *_HEAD,
            _required("platform"),
            *_MESSAGE,
            _optional("device_id"),
            *_AD,
            *extra,
            _optional("app_group_id"),
        ]
    if event_type == BRAZE_BOUNCE:
        return [*_HEAD, _optional("platform"), *_MESSAGE, _optional("device_id"), *_AD]
    if event_type in (BRAZE_OPEN, BRAZE_INFLUENCED_OPEN):
        buttons = [_optional("button_action_type"), _optional("button_string")]
        return [
            *_HEAD,
            *_MESSAGE,
            *_DEVICE,
            _optional("device_id"),
            *(buttons if event_type == BRAZE_OPEN else []),
            *_AD,
            _optional("app_group_id"),
        ]
    if event_type == BRAZE_ENROLL_IN_CONTROL:
        return [
            *[f if f["name"] != "app_id" else _optional("app_id") for f in _HEAD],
            _required("campaign_id"),
            _optional("campaign_name"),
            _optional("message_variation_id"),
            _optional("message_variation_name"),
            _optional("send_id"),
            _optional("app_group_id"),
        ]
    if event_type == BRAZE_CUSTOM_EVENT:
        return [
            *[f if f["name"] != "app_id" else _optional("app_id") for f in _HEAD],
            *_DEVICE,
            _optional("device_id"),
            _required("name"),
            _required("properties"),
            *_AD,
            _optional("app_group_id"),
        ]
    if event_type == BRAZE_TOKEN_STATE_CHANGE:
        return [
            _required("id"),
            _required("time", "int"),
            _optional("app_id"),
            _optional("time_ms", "long"),
            _required("user_id"),
            _optional("platform"),
            _optional("sdk_version"),
            _optional("app_group_id"),
            _optional("external_user_id"),
            _optional("push_token_device_id"),
            _optional("push_token_state_change_type"),
        ]
    raise ValueError(f"no Currents schema for {event_type!r}")


def _braze_schema(event_type: str, version: int) -> dict:
    namespace, name = event_type.rsplit(".", 1)
    return {
        "type": "record",
        "name": name,
        # Currents names its schemas after the integration and the event type.
        "namespace": f"dataexport.S3.inner.{namespace}",
        "fields": _braze_fields(event_type, version),
    }


def _title(campaign: str) -> str:
    return campaign.split("_", 1)[1].replace("_", " ").title()


def _braze_record(e: dict, version: int) -> dict:
    """The event as one Currents record; fields the schema has and the event lacks are null."""
    kind = e["_type"]
    s: _Surface | None = e.get("_surface_ref")
    platform = s.platform if s is not None else None
    record: dict = {
        "id": e["_bid"],
        "user_id": e["_braze"],
        "external_user_id": e.get("user_id"),
        "app_id": _BRAZE_APPS[platform or "web"] if platform else None,
        "time": e["_t"],
        "timezone": e.get("_timezone"),
        "app_group_id": _BRAZE_APP_GROUP,
    }
    if s is not None:
        system_version = s.device.get("operating_system_version") or ""
        record.update(
            platform=platform,
            device_id=s.braze_device,
            os_version=system_version.rsplit(" ", 1)[-1] or None,
            device_model=s.device.get("mobile_model_name"),
        )
    if kind.startswith(_PUSH_TYPE):
        campaign = e["campaign_id"]
        record.update(
            campaign_id=campaign,
            campaign_name=_title(campaign),
            message_variation_id=_stable_uuid(f"{campaign} variant"),
            message_variation_name="Variant 1",
            dispatch_id=e["_dispatch"],
        )
        if kind == BRAZE_OPEN:
            record["button_action_type"] = "uri"
        if version > 1:
            record["locale_key"] = s.device["language"] if s is not None else None
    elif kind == BRAZE_ENROLL_IN_CONTROL:
        campaign = e["campaign_id"]
        record.update(
            campaign_id=campaign,
            campaign_name=_title(campaign),
            message_variation_id=_stable_uuid(f"{campaign} control"),
            message_variation_name="Control Group",
        )
    elif kind == BRAZE_CUSTOM_EVENT:
        record.update(name=e["_custom_name"], properties=json.dumps(e.get("_props") or {}))
    elif kind == BRAZE_TOKEN_STATE_CHANGE:
        record.update(
            time_ms=e["_t"] * 1000,
            sdk_version="5.0.0",
            push_token_device_id=record.get("device_id"),
            push_token_state_change_type=e["_token_change"],
        )
    return record


# -- canonical rows --------------------------------------------------------------------------


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _revenue_text(cents: int) -> str:
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _canonical_line(e: dict) -> str:
    out = {
        "event_id": e["key"],
        "source": CANONICAL,
        "event_time": _iso(e["_t"]),
        "event_name": e["event_name"],
        "user_id": e.get("user_id"),
        "platform": e.get("platform"),
        "currency": e.get("currency"),
        "order_id": e.get("order_id"),
        "revenue": "__REVENUE__",
        "properties": e.get("_props"),
    }
    # JSON numbers keep their two decimals only when written by hand.
    return json.dumps(out).replace('"__REVENUE__"', _revenue_text(e["_cents"]))


# -- laying the month out in files -----------------------------------------------------------

# Rows the ingest must quarantine, and where each goes: a GA4 file of that format, or a Braze
# file of that type. Parquet cannot hold a line that is not JSON.
_BROKEN = (
    ("ga4_invalid_json", "json"),
    ("ga4_invalid_json", "json"),
    ("ga4_missing_event_timestamp", "json"),
    ("ga4_missing_event_timestamp", "parquet"),
    ("ga4_timestamp_in_milliseconds", "json"),
    ("ga4_missing_event_name", "json"),
    ("ga4_no_identifier", "parquet"),
    ("braze_missing_id", BRAZE_SEND),
    ("braze_missing_id", BRAZE_CUSTOM_EVENT),
)


def _parquet_day(day_index: int) -> bool:
    """One or two days of each month arrive as Parquet, as an export job is moved."""
    return day_index % 14 == 5


def _is_story(e: dict) -> bool:
    return e["key"].startswith("story_")


@dataclass
class _Layout:
    files: dict[str, list[dict]]  # relative path -> rows, each {"e": event, "broken": reason}
    late_rows: int
    duplicate_rows: int
    broken_rows: dict[str, int]


def _lay_out(b: _Builder, start: date, events: list[dict]) -> _Layout:
    """The rows of each file: a few events arrive a day late, a few twice, a few broken."""
    rng, days = b.rng, b.days

    def day_of(e: dict) -> int:
        return (e["_t"] - b.start_ts) // DAY

    def path_of(e: dict, d: int) -> str:
        day = start + timedelta(days=d)
        if e["_src"] == GA4:
            suffix = "parquet" if _parquet_day(d) else "json"
            return f"ga4/{day:%Y}/{day:%m}/events_{day:%Y%m%d}.{suffix}"
        if e["_src"] == BRAZE:
            return f"braze/event_type={e['_type']}/date={day:%Y-%m-%d}/part-0.avro"
        return f"canonical/billing/charges_{start:%Y%m%d}.jsonl"

    files: dict[str, list[dict]] = {}
    late: dict[str, list[dict]] = {}
    by_day: dict[tuple[str, int], list[dict]] = {}
    late_rows = 0
    for e in events:
        d = day_of(e)
        by_day.setdefault((e["_src"], d), []).append(e)
        if e["_src"] != CANONICAL and d + 1 < days and not _is_story(e) and rng.random() < 0.01:
            # Late arrivals come at the end of the next day's export.
            late.setdefault(path_of(e, d + 1), []).append({"e": e})
            late_rows += 1
        else:
            files.setdefault(path_of(e, d), []).append({"e": e})
    for path, rows in late.items():
        files.setdefault(path, []).extend(rows)

    def insert(path: str, row: dict) -> None:
        rows = files.setdefault(path, [])
        rows.insert(rng.randint(0, len(rows)), row)

    randoms = [e for e in events if not _is_story(e)]
    copies = [
        (e, min(day_of(e) + rng.randint(0, 1), days - 1))
        for e in rng.sample(randoms, max(1, len(randoms) // 250))
    ]
    for d in (d for d in range(days) if _parquet_day(d)):
        # Around a Parquet day, rows are exported again in the other format: the adapter must
        # derive the same event id from both shapes.
        for source_day, target in ((d - 1, d), (d, d + 1)):
            pool = [e for e in by_day.get((GA4, source_day), []) if not _is_story(e)]
            if pool and target < days:
                copies.append((rng.choice(pool), target))
    for e, d in copies:
        insert(path_of(e, d), {"e": e})
    broken: dict[str, int] = {}
    for reason, where in _BROKEN:
        if reason.startswith("ga4"):
            candidates = [
                d
                for d in range(days)
                if _parquet_day(d) == (where == "parquet") and by_day.get((GA4, d))
            ]
            candidates = candidates or [d for d in range(days) if by_day.get((GA4, d))]
            d = rng.choice(candidates)
            pool = by_day[(GA4, d)]
            views = [e for e in pool if e["event_name"] in ("page_view", "screen_view")]
            template = rng.choice(views or pool)
        else:
            candidates = [
                d
                for d in range(days)
                if any(e["_type"] == where for e in by_day.get((BRAZE, d), []))
            ]
            candidates = candidates or [d for d in range(days) if by_day.get((BRAZE, d))]
            d = rng.choice(candidates)
            pool = by_day[(BRAZE, d)]
            template = rng.choice([e for e in pool if e["_type"] == where] or pool)
        insert(path_of(template, d), {"e": template, "broken": reason})
        broken[reason] = broken.get(reason, 0) + 1
    return _Layout(files, late_rows, len(copies), dict(sorted(broken.items())))


# -- writing ---------------------------------------------------------------------------------

_DEMO_FILES = (
    re.compile(r"ga4/\d{4}/\d{2}/events_\d{8}\.(json|parquet)"),
    re.compile(r"braze/event_type=[A-Za-z.]+/date=\d{4}-\d{2}-\d{2}/part-0\.avro"),
    re.compile(r"canonical/billing/charges_\d{8}\.jsonl"),
    # What earlier versions of the demo wrote.
    re.compile(r"canonical/\d{4}/\d{2}/events_\d{4}-\d{2}-\d{2}\.(jsonl|csv|parquet)"),
)


def _remove_old_demo_files(landing_root: Path) -> None:
    """Files of an earlier run would otherwise mix with this one's; only the demo's own file
    names are removed, then the folders they leave empty."""
    folders = set()
    for top in ("ga4", "braze", "canonical"):
        root = landing_root / top
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*")):
            rel = path.relative_to(landing_root).as_posix()
            if path.is_file() and any(p.fullmatch(rel) for p in _DEMO_FILES):
                path.unlink()
                folders.update(path.parents)
    inside = (f for f in folders if f.is_relative_to(landing_root) and f != landing_root)
    for folder in sorted(inside, key=lambda f: len(f.parts), reverse=True):
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()


def _render(path: str, rows: list[dict], days_in: int, start: date) -> tuple[bytes, str]:
    """A file's bytes and its format (`ga4/ndjson` ...), from its rows."""
    if path.startswith("ga4/"):
        as_json = path.endswith(".json")
        records = []
        for row in rows:
            record = _ga4_row(row["e"], as_json=as_json)
            if row.get("broken"):
                record = _ga4_broken(record, row["broken"], as_json=as_json)
            records.append(record)
        if as_json:
            lines = [
                r if isinstance(r, str) else json.dumps(r, separators=(",", ":")) for r in records
            ]
            return "".join(line + "\n" for line in lines).encode(), "ga4/ndjson"
        sink = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(records, schema=GA4_SCHEMA), sink)
        return sink.getvalue(), "ga4/parquet"
    if path.startswith("braze/"):
        event_type = path.split("/")[1].removeprefix("event_type=")
        day = date.fromisoformat(path.split("/")[2].removeprefix("date="))
        # The Send schema gained two fields half way through the period.
        version = 2 if (day - start).days >= days_in // 2 else 1
        records = []
        for row in rows:
            record = _braze_record(row["e"], version)
            if row.get("broken"):
                record["id"] = ""
            records.append(record)
        sink = io.BytesIO()
        schema = fastavro.parse_schema(_braze_schema(event_type, version))
        # A sync marker derived from the path keeps the bytes the same from run to run.
        marker = hashlib.md5(path.encode()).digest()
        fastavro.writer(sink, schema, records, codec="deflate", sync_marker=marker)
        return sink.getvalue(), "braze/avro"
    return "".join(_canonical_line(r["e"]) + "\n" for r in rows).encode(), "canonical/jsonl"


def _source_id(e: dict) -> str | None:
    """The id the source itself gives the event: Braze's `id`, a canonical event_id. GA4 rows
    have none (the adapter derives one from their content)."""
    if e["_src"] == BRAZE:
        return e["_bid"]
    if e["_src"] == CANONICAL:
        return e["key"]
    return None


def _write_truth(
    truth_dir: Path, events: list[dict], conversions: list[dict], where: dict[str, tuple]
) -> None:
    truth_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(events, key=lambda e: (_micros(e), e["key"]))
    ts_type = pa.timestamp("us", tz="UTC")
    events_table = pa.table(
        {
            "key": pa.array([e["key"] for e in ordered], pa.string()),
            "source": pa.array([e["_src"] for e in ordered], pa.string()),
            "source_file": pa.array([where[e["key"]][0] for e in ordered], pa.string()),
            "source_row": pa.array([where[e["key"]][1] for e in ordered], pa.int64()),
            "event_id": pa.array([_source_id(e) for e in ordered], pa.string()),
            "true_person": pa.array([e["_p"] for e in ordered], pa.string()),
            "event_name": pa.array([e["event_name"] for e in ordered], pa.string()),
            "event_time": pa.array([_micros(e) for e in ordered], ts_type),
        }
    )
    pq.write_table(events_table, truth_dir / "events.parquet")
    by_key = {e["key"]: e for e in events}
    conv_types = {
        "conversion_key": pa.string(),
        "source": pa.string(),
        "source_file": pa.string(),
        "source_row": pa.int64(),
        "conversion_event_id": pa.string(),
        "order_id": pa.string(),
        "conversion_type": pa.string(),
        "event_name": pa.string(),
        "true_person": pa.string(),
        "conversion_time": ts_type,
        "value": pa.float64(),
        "currency": pa.string(),
        "lookback_days": pa.int32(),
        "push_role": pa.string(),
        "assist_kind": pa.string(),
        "last_touch_channel": pa.string(),
        "push_touch_count": pa.int32(),
        "ga_assist": pa.bool_(),
    }
    rows = [
        {
            **r,
            "source_file": where[r["conversion_key"]][0],
            "source_row": where[r["conversion_key"]][1],
            "conversion_event_id": _source_id(by_key[r["conversion_key"]]),
        }
        for r in conversions
    ]
    columns = {name: pa.array([r[name] for r in rows], typ) for name, typ in conv_types.items()}
    pq.write_table(pa.table(columns), truth_dir / "conversions.parquet")


def _write_settings(path: Path, start: date) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = (
        "# Written by `python -m pipeline.demo`: what the pipeline needs to read the demo month.\n"
        "# Braze custom events that are conversions (the others stay `other`).\n"
    )
    body = yaml.safe_dump(demo_settings(start), sort_keys=False)
    path.write_text(header + body, encoding="utf-8")


def generate_demo(
    landing_root: Path,
    *,
    seed: int = 7,
    start: date = date(2024, 1, 1),
    days: int = 31,
    people: int = 3000,
    truth_dir: Path | None = None,
    settings_path: Path | None = None,
) -> DemoSummary:
    """Write a seeded month as GA4 and Braze exports under `landing_root`, with the truth.

    The truth goes to `truth_dir` (default `landing_root.parent / "demo_truth"`) and the
    settings the month needs to `settings_path` (default `landing_root.parent /
    "pushassist.yaml"`), both outside the landing root so the pipeline never ingests them. The
    same arguments always write the same bytes. Story people need at least 10 days and are left
    out of shorter runs.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if people < MIN_PEOPLE:
        raise ValueError(f"people must be at least {MIN_PEOPLE}, got {people}")
    landing_root = Path(landing_root)
    truth_dir = Path(truth_dir) if truth_dir is not None else landing_root.parent / TRUTH_DIR_NAME
    settings_path = (
        Path(settings_path)
        if settings_path is not None
        else landing_root.parent / SETTINGS_FILE_NAME
    )
    for what, path in (("truth folder", truth_dir), ("settings file", settings_path)):
        if path.resolve().is_relative_to(landing_root.resolve()):
            raise ValueError(f"the {what} {path} must be outside the landing root")
    settings = parse_settings(demo_settings(start))
    clock = time.perf_counter()
    b = _Builder(seed, start, days)
    n_stories = len(_story_scripts(b.start_ts)) if days >= STORY_MIN_DAYS else 0
    if n_stories:
        b.stories()
    persons = [b.make_person(n) for n in range(1, people - n_stories + 1)]
    for p in persons:
        b.simulate(p)
    b.unknown_events(persons)
    events = sorted(b.events, key=lambda e: (_micros(e), e["key"]))
    names = {e["event_name"] for e in events} - {OTHER}
    if not names <= set(EVENT_NAMES):
        raise AssertionError(f"demo wrote non-canonical names {sorted(names - set(EVENT_NAMES))}")
    systems: dict[str, set[str]] = {}
    for e in events:
        if e.get("_msg"):
            systems.setdefault(e["_msg"], set()).add(e["_src"])
    if any(len(s) > 1 for s in systems.values()):
        raise AssertionError("a push message was reported by two systems")
    truth = expected_results(events, settings)
    conversions = truth.conversions

    layout = _lay_out(b, start, events)
    _remove_old_demo_files(landing_root)
    written: list[str] = []
    by_format: dict[str, int] = {}
    where: dict[str, tuple[str, int]] = {}
    for path in sorted(layout.files):
        rows = layout.files[path]
        data, fmt = _render(path, rows, days, start)
        target = landing_root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        written.append(path)
        by_format[fmt] = by_format.get(fmt, 0) + len(rows)
        for n, row in enumerate(rows, start=1):
            # Files are visited in path order and rows in order: the first place an event is
            # seen is the copy the ingest keeps, the others are duplicates.
            if not row.get("broken"):
                where.setdefault(row["e"]["key"], (path, n))
    _write_truth(truth_dir, events, conversions, where)
    _write_settings(settings_path, start)

    def counts(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in conversions:
            if r[key] is not None:
                out[r[key]] = out.get(r[key], 0) + 1
        return dict(sorted(out.items()))

    messages = {BRAZE: 0, FCM: 0}
    for sources in systems.values():
        messages[BRAZE if BRAZE in sources else FCM] += 1
    summary = DemoSummary(
        seed=seed,
        start=start,
        days=days,
        landing_root=landing_root,
        truth_dir=truth_dir,
        settings_path=settings_path,
        files=tuple(written),
        rows_written=sum(by_format.values()),
        events=len(events),
        duplicate_rows=layout.duplicate_rows,
        broken_rows=layout.broken_rows,
        unknown_event_rows=sum(e["event_name"] == OTHER for e in events),
        late_rows=layout.late_rows,
        people=len({e["_p"] for e in events}),
        conversions=counts("conversion_type"),
        duplicate_order_events=truth.duplicate_order_events,
        push_roles=counts("push_role"),
        assist_kinds=counts("assist_kind"),
        push_opened_sessions=truth.push_opened_sessions,
        push_opened_direct_sessions=truth.push_opened_direct_sessions,
        rows_by_format=dict(sorted(by_format.items())),
        messages_by_system=messages,
    )
    logger.info(
        "demo: wrote %d rows (%d events, %d duplicates, %d broken; %s) for %d people in %d files "
        "under %s in %.1fs; truth in %s, settings in %s",
        summary.rows_written,
        summary.events,
        summary.duplicate_rows,
        sum(summary.broken_rows.values()),
        ", ".join(f"{k} {v}" for k, v in summary.rows_by_format.items()),
        summary.people,
        len(written),
        landing_root,
        time.perf_counter() - clock,
        truth_dir,
        settings_path,
    )
    logger.info(
        "demo: conversions %s, push roles %s, assist kinds %s, push messages %s, push-opened "
        "sessions recorded as Direct %d of %d (%.1f%%)",
        summary.conversions,
        summary.push_roles,
        summary.assist_kinds,
        summary.messages_by_system,
        summary.push_opened_direct_sessions,
        summary.push_opened_sessions,
        100 * summary.push_as_direct_rate,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: write the demo month into a landing root."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo",
        description="Write seeded demo exports (GA4, Braze) under LANDING, the truth and the "
        "settings file beside it.",
    )
    parser.add_argument("--landing", type=Path, required=True, help="landing root to write to")
    parser.add_argument(
        "--truth", type=Path, default=None, help="truth folder (default: LANDING/../demo_truth)"
    )
    parser.add_argument(
        "--settings",
        type=Path,
        default=None,
        help="settings file to write (default: LANDING/../pushassist.yaml)",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--people", type=int, default=3000)
    parser.add_argument("--days", type=int, default=31)
    parser.add_argument(
        "--start", type=date.fromisoformat, default=date(2024, 1, 1), help="first day, YYYY-MM-DD"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    generate_demo(
        args.landing,
        seed=args.seed,
        start=args.start,
        days=args.days,
        people=args.people,
        truth_dir=args.truth,
        settings_path=args.settings,
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
