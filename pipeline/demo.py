"""Seeded demo data for pushassist, written together with the answer it should produce.

`generate_demo` simulates a month of a shop's push notifications, sessions and conversions for a
few thousand people and writes them as canonical-format files under `<landing>/canonical/`
(JSON lines on most days, CSV and Parquet on some, with late, duplicate and broken rows mixed
in). Next to the landing root, never inside it, it writes the truth: who each event really
belongs to (`events.parquet`) and, for every conversion, push's role under the default settings
(`conversions.parquet`), computed here by a small implementation of the attribution rules that
shares no code with the pipeline. Tests and the demo report compare the pipeline against it.

The expected answer follows SPEC 4.1-4.2 at the default settings: touches are sessions (with a
GA4 channel) and one push touch per message (click at the first open, else influenced open,
else impression at delivery, where a send without a bounce counts as delivered); a session
starting within the push-open window after an open is the open's touch; the window
`[t - lookback, t]` is inclusive; the last non-Direct session or push click is the credited
last touch. A session whose utm says push (not merged with an open) counts as a push click,
and GA's assist looks at every session and push click in the window before the last one,
before any path transform.

Seven scripted "story" people (fixed ids, fixed times, fixed event ids `story_*`) carry cases
whose answer is easy to reason about by hand: a click assist, an impression-only assist, a
push-opened session recorded as Direct, conversions one second outside and exactly at the edge
of the lookback, and a tablet shared by two users. Their times need at least 10 days, so
shorter runs leave them out (and then hold no shared device).

Run it from the command line with `python -m pipeline.demo --landing data/landing`.
"""

from __future__ import annotations

import argparse
import bisect
import csv
import heapq
import json
import logging
import random
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.settings import Settings
from pipeline.tables import CANONICAL_COLUMNS, EVENT_NAMES, PUSH_CHANNEL

logger = logging.getLogger(__name__)

SOURCE = "canonical"
# The ingest adds the lineage columns; the files hold everything else.
FILE_COLUMNS = tuple(
    c.name for c in CANONICAL_COLUMNS if c.name not in ("source_file", "source_row")
)
DAY = 86_400
DIRECT = "Direct"
TRUTH_DIR_NAME = "demo_truth"
STORY_MIN_DAYS = 10
MIN_PEOPLE = 20
UNKNOWN_EVENT_NAME = "app_rating"
JUNK_IDS = ("0", "null", "anonymous")

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
CART_CAMPAIGN = "cmp_app_cart_reminder"

# utm of sessions opened by a push. Most classify as Mobile Push Notifications under GA4's
# rules; `notif` does not (a misclassification the checks should flag), which is harmless here
# because a session this close to its open is merged into the open's touch.
_APP_PUSH_UTM = (
    (("firebase", "push"), 40),
    (("braze", "push"), 25),
    (("firebase", "notification"), 10),
    (("braze", "Push"), 10),
    (("onesignal", "push-notification"), 10),
    (("braze", "notif"), 5),
)
_WEB_PUSH_UTM = ((("webpush", "web_push"), 70), (("onesignal", "web_push"), 30))

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


@dataclass(frozen=True)
class DemoSummary:
    """What a demo run wrote, with the counts a test or report checks the pipeline against.

    Attributes:
        files: the daily files written, relative to `landing_root` (`canonical/YYYY/MM/...`).
        rows_written: every row or line in those files: events + duplicate_rows + broken rows.
        events: valid events, once each (the rows of `events.parquet`).
        duplicate_rows: extra copies of an event, same event id and content.
        broken_rows: rows the ingest must quarantine, by reason (invalid_json,
            missing_event_id, bad_timestamp, no_identifier).
        unknown_event_rows: valid rows named `app_rating`, outside the canonical vocabulary.
        late_rows: events written in the next day's file instead of their own.
        people: true persons with at least one valid event.
        conversions: conversions by type after dedupe by order id (the rows of
            `conversions.parquet`); duplicate_order_events is how many purchase or subscription
            events that dedupe dropped.
        push_roles, assist_kinds: the expected counts of each push role and assist kind.
        push_opened_sessions: sessions that started within the push-open window after a push
            open of the same person; push_opened_direct_sessions: those that carried no utm.
        rows_by_format: rows written as jsonl, csv and parquet.
    """

    seed: int
    start: date
    days: int
    landing_root: Path
    truth_dir: Path
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

    @property
    def events_path(self) -> Path:
        return self.truth_dir / "events.parquet"

    @property
    def conversions_path(self) -> Path:
        return self.truth_dir / "conversions.parquet"

    @property
    def push_as_direct_rate(self) -> float:
        """Share of push-opened sessions that carried no utm (and so were recorded as Direct)."""
        if not self.push_opened_sessions:
            return 0.0
        return self.push_opened_direct_sessions / self.push_opened_sessions


@dataclass
class _Device:
    device_id: str
    platform: str
    # When the user first logged in on the device (0: before the month began, so every event
    # carries the user id); None until then, and events carry only the device id.
    login_at: int | None
    anonymous_sessions: list[tuple[str, int]] = field(default_factory=list)


@dataclass
class _Person:
    key: str
    user_id: str | None
    cookie: str | None
    devices: list[_Device]
    app_push: bool
    web_push: bool
    holdout: str | None
    currency: str
    activity: float
    open_rate: float
    sub_prospect: bool
    renews_at: int | None
    opt_out_at: int | None
    junk: tuple[str, str] | None
    web_login_at: int | None = None
    subscribed: bool = False
    web_anonymous_sessions: list[tuple[str, int]] = field(default_factory=list)


def _iso(ts: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _pick(rng: random.Random, weighted):
    values = [v for v, _ in weighted]
    weights = [w for _, w in weighted]
    return rng.choices(values, weights)[0]


def _traffic(rng: random.Random, channel: str, web: bool) -> dict:
    """utm, referrer and landing url of a session from `channel`, in the shapes tools write.

    Sessions with an empty utm but a referrer are classified by the referrer (as GA4 does):
    a Google or Bing referrer is Organic Search, Instagram is Organic Social, any other site is
    Referral. Direct is `(direct)/(none)` or everything empty.
    """
    home = "https://shop.example.com" if web else "app://shop"
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
            "click_id": f"gclid_{rng.getrandbits(64):016x}",
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
    elif channel == DIRECT:
        if web and rng.random() < 0.5:
            out = {"utm_source": "(direct)", "utm_medium": "(none)"}
    else:
        raise ValueError(f"no traffic shape for channel {channel!r}")
    query = "&".join(
        f"{k}={out[k]}" for k in ("utm_source", "utm_medium", "utm_campaign") if k in out
    )
    out["landing_url"] = home + path + (f"?{query}" if query else "")
    return out


class _Builder:
    """Simulates people one at a time and collects their events with the true person of each."""

    def __init__(self, seed: int, start: date, days: int):
        self.rng = random.Random(seed)
        self.start_ts = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
        self.days = days
        self.end_ts = self.start_ts + days * DAY
        self.events: list[dict] = []
        self._ids: set[str] = set()
        self._session_n = 0
        self._order_n = 0
        self._message_n = 0
        self.broadcasts = self._schedule_broadcasts()

    # -- ids ---------------------------------------------------------------------------------

    def event_id(self) -> str:
        while True:
            eid = f"evt_{self.rng.getrandbits(80):020x}"
            if eid not in self._ids:
                self._ids.add(eid)
                return eid

    def session_id(self) -> str:
        self._session_n += 1
        return f"sess_{self._session_n:07d}"

    def order_id(self, prefix: str = "ord") -> str:
        self._order_n += 1
        return f"{prefix}_{self._order_n:07d}"

    def message_id(self) -> str:
        self._message_n += 1
        return f"msg_{self._message_n:07d}"

    # -- events ------------------------------------------------------------------------------

    def emit(self, person: str, ts: int, name: str, fields: dict, *, eid: str | None = None):
        """Record one event; events after the end of the demo period never happened."""
        if ts >= self.end_ts or ts < self.start_ts:
            return None
        event = {k: v for k, v in fields.items() if v is not None}
        event["event_id"] = eid or self.event_id()
        if eid:
            self._ids.add(eid)
        event["event_name"] = name
        event["_p"] = person
        event["_t"] = ts
        self.events.append(event)
        return event

    def ids(self, p: _Person, surface: int | str, ts: int) -> dict:
        """Identifiers an event of `p` carries on a surface (`web` or a device index) at `ts`."""
        if surface == "web":
            out = {"anonymous_id": p.cookie, "platform": "web"}
            logged_in = p.web_login_at is not None and ts >= p.web_login_at
            junk_column = "device_id"
        else:
            dev = p.devices[surface]
            out = {"device_id": dev.device_id, "platform": dev.platform}
            logged_in = dev.login_at is not None and ts >= dev.login_at
            junk_column = "anonymous_id"
        if p.user_id and logged_in:
            out["user_id"] = p.user_id
            # A buggy SDK version writes a placeholder id next to the real ones: it must link
            # nobody, and the user id still tells whose event it is.
            if p.junk and p.junk[0] == junk_column:
                out[junk_column] = p.junk[1]
        return out

    # -- people ------------------------------------------------------------------------------

    def _schedule_broadcasts(self) -> list[tuple[int, str, str, float]]:
        """Push campaigns of the month: app most days, web every few days."""
        rng = self.rng
        out = []
        for d in range(self.days):
            day0 = self.start_ts + d * DAY
            for _ in range(1 + (rng.random() < 0.25)):
                if rng.random() < 0.85:
                    at = day0 + rng.randint(8 * 3600, 20 * 3600)
                    out.append((at, rng.choice(APP_CAMPAIGNS), "app", rng.uniform(0.3, 0.6)))
            if d % 3 == 1:
                at = day0 + rng.randint(9 * 3600, 19 * 3600)
                out.append((at, rng.choice(WEB_CAMPAIGNS), "web", rng.uniform(0.4, 0.7)))
        return out

    def make_person(self, n: int) -> _Person:
        """A random person: an anonymous visitor, or a user on app, web or both."""
        rng = self.rng
        key = f"person_{n:05d}"
        hexid = f"{rng.getrandbits(48):012x}"
        if rng.random() < 0.06:
            # An anonymous visitor who never logs in: a person of their own, web only.
            return _Person(
                key=key,
                user_id=None,
                cookie=f"anon_{hexid}",
                devices=[],
                app_push=False,
                web_push=False,
                holdout=None,
                currency="USD",
                activity=min(rng.expovariate(1 / 0.15), 1.5),
                open_rate=0.0,
                sub_prospect=False,
                renews_at=None,
                opt_out_at=None,
                junk=None,
            )
        surfaces = _pick(rng, (("app", 40), ("web", 30), ("both", 30)))
        devices: list[_Device] = []
        if surfaces in ("app", "both"):
            devices.append(_Device(f"dev_{hexid}", rng.choice(["ios", "android"]), 0))
            if rng.random() < 0.2:
                # A second device (a tablet) used before its first login: cross-device case.
                second = f"dev_{rng.getrandbits(48):012x}"
                devices.append(_Device(second, rng.choice(["ios", "android"]), None))
        cookie = f"anon_{rng.getrandbits(48):012x}" if surfaces in ("web", "both") else None
        app_push = bool(devices) and rng.random() < 0.7
        web_push = cookie is not None and rng.random() < 0.35
        junk = None
        if n % 20 == 0:
            # Every 20th person, so each placeholder value is shared by several people even in
            # a small run: the identity stage must not link them through it.
            junk = ("anonymous_id" if devices else "device_id", JUNK_IDS[n // 20 % 3])
        period = self.end_ts - self.start_ts
        return _Person(
            key=key,
            user_id=f"u_{100000 + n}",
            cookie=cookie,
            devices=devices,
            app_push=app_push,
            web_push=web_push,
            holdout="control" if rng.random() < 0.1 else "treatment",
            currency="EUR" if rng.random() < 0.2 else "USD",
            # People with a placeholder id are kept active so that the id is actually seen.
            activity=min(rng.expovariate(1 / 0.3), 3.0) + (0.5 if junk else 0.0),
            open_rate=min(rng.expovariate(1 / 0.1), 0.6),
            sub_prospect=rng.random() < 0.12,
            renews_at=self.start_ts + rng.randrange(period) if rng.random() < 0.1 else None,
            opt_out_at=(
                self.start_ts + rng.randrange(period)
                if (app_push or web_push) and rng.random() < 0.03
                else None
            ),
            junk=junk,
        )

    def surfaces(self, p: _Person) -> list[int | str]:
        """Where the person shows up: an index into their devices, or `web`."""
        out: list[int | str] = list(range(len(p.devices)))
        if p.cookie:
            out.append("web")
        return out

    def simulate(self, p: _Person) -> None:
        """All events of one person: planned visits and pushes, processed in time order."""
        rng = self.rng
        heap: list[tuple[int, int, str, tuple]] = []
        seq = 0

        def plan(ts: int, kind: str, payload: tuple) -> None:
            nonlocal seq
            seq += 1
            heapq.heappush(heap, (ts, seq, kind, payload))

        if p.holdout:
            ts = self.start_ts + rng.randint(0, 3600)
            props = json.dumps({"experiment": "global_push_holdout", "control_share": 0.1})
            fields = {"user_id": p.user_id, "platform": "unknown", "holdout_group": p.holdout}
            self.emit(p.key, ts, "holdout_assigned", {**fields, "properties": props})
        surfaces = self.surfaces(p)
        rate = p.activity / DAY / _MEAN_HOURLY
        ts = float(self.start_ts)
        while True:
            ts += rng.expovariate(rate)
            if ts >= self.end_ts:
                break
            if rng.random() < _HOURLY[int(ts) // 3600 % 24]:
                surface = rng.choice(surfaces)
                mix = _WEB_MIX if surface == "web" else _APP_MIX
                plan(int(ts), "visit", (surface, _pick(rng, mix), "organic"))
        if p.user_id is None and not heap:
            # Every anonymous visitor in the data has at least one visit.
            at = self.start_ts + rng.randrange(self.end_ts - self.start_ts)
            plan(at, "visit", ("web", _pick(rng, _WEB_MIX), "organic"))
        if p.holdout == "treatment":
            for at, campaign, kind, share in self.broadcasts:
                if ((kind == "app" and p.app_push) or (kind == "web" and p.web_push)) and (
                    rng.random() < share
                ):
                    plan(at + rng.randint(0, 600), "message", (campaign, kind))
        if p.renews_at is not None:
            plan(p.renews_at, "renewal", ())
        if p.opt_out_at is not None:
            surface = 0 if p.app_push else "web"
            # Like the push events, an opt-out comes from the push provider, which knows the user.
            fields = {**self.ids(p, surface, p.opt_out_at), "user_id": p.user_id}
            self.emit(p.key, p.opt_out_at, "push_opt_out", fields)
        while heap:
            ts, _, kind, payload = heapq.heappop(heap)
            if ts >= self.end_ts:
                continue
            if kind == "visit":
                self.visit(p, ts, *payload, plan=plan)
            elif kind == "message":
                if p.opt_out_at is None or ts < p.opt_out_at:
                    self.message(p, ts, *payload, plan=plan)
            elif kind == "renewal":
                self.renewal(p, ts, plan)
        self.force_logins(p)

    def message(self, p: _Person, t0: int, campaign: str, kind: str, *, plan) -> None:
        """One push message: sent, then bounced or delivered, then perhaps opened or ignored."""
        rng = self.rng
        surface = 0 if kind == "app" else "web"
        common = {
            **self.ids(p, surface, t0),
            "user_id": p.user_id,
            "campaign_id": campaign,
            "message_id": self.message_id(),
            "push_kind": kind,
        }
        title = campaign.removeprefix("cmp_").replace("_", " ").title()
        self.emit(p.key, t0, "push_sent", {**common, "properties": json.dumps({"title": title})})
        if rng.random() < 0.03:
            props = json.dumps({"reason": rng.choice(["invalid_token", "unregistered"])})
            bounced = {**common, "properties": props}
            self.emit(p.key, t0 + rng.randint(1, 20), "push_bounced", bounced)
            return
        delivered = t0 + rng.randint(1, 40)
        if rng.random() < 0.04:
            # The provider reported the send only: a send without a bounce counts as delivered.
            strength, touch_at = "impression", t0
        else:
            self.emit(p.key, delivered, "push_delivered", common)
            strength, touch_at = "impression", delivered
            if rng.random() < p.open_rate:
                strength = "click"
                touch_at = delivered + 5 + int(min(rng.expovariate(1 / 2700), 20 * 3600))
                self.emit(p.key, touch_at, "push_opened", common)
                self.after_open(p, touch_at, surface, campaign, kind, plan)
            elif rng.random() < 0.06:
                strength = "influenced"
                touch_at = delivered + rng.randint(600, 6 * 3600)
                self.emit(p.key, touch_at, "push_influenced_open", common)
            elif rng.random() < 0.2:
                self.emit(p.key, delivered + rng.randint(30, 7200), "push_dismissed", common)
        if rng.random() < _RETURN_CHANCE[strength]:
            later = touch_at + 3600 + int(rng.expovariate(1 / (30 * 3600)))
            choices = self.surfaces(p)
            plan(later, "visit", (rng.choice(choices), _pick(rng, _RETURN_MIX), "return"))

    def after_open(self, p, opened: int, surface, campaign: str, kind: str, plan) -> None:
        """The session a push open starts: usually seconds later, sometimes without any utm."""
        rng = self.rng
        r = rng.random()
        if r < 0.05:
            return
        utm_campaign = campaign.removeprefix("cmp_")
        if r < 0.08:
            # Opened, then came back some minutes later: outside the open's window, its own touch.
            at = opened + rng.randint(180, 600)
            if rng.random() < 0.5:
                traffic = {"utm_source": "firebase", "utm_medium": "push"}
                channel = PUSH_CHANNEL
            else:
                traffic, channel = {}, DIRECT
        else:
            at = opened + rng.randint(5, 90)
            if rng.random() < _PUSH_OPEN_DIRECT_SHARE:
                # The deep link dropped its utm: the session is recorded as Direct.
                traffic, channel = {}, DIRECT
            else:
                source, medium = _pick(rng, _APP_PUSH_UTM if kind == "app" else _WEB_PUSH_UTM)
                traffic = {"utm_source": source, "utm_medium": medium}
                traffic["utm_campaign"] = utm_campaign
                channel = "Unassigned" if medium == "notif" else PUSH_CHANNEL
        home = "app://shop" if kind == "app" else "https://shop.example.com"
        traffic["landing_url"] = f"{home}/promo/{utm_campaign}"
        self.visit(p, at, surface, channel, "push_open", plan=plan, traffic=traffic)

    def visit(self, p, t0, surface, channel, kind, *, plan, traffic=None, renewal=False) -> None:
        """One session with its views, perhaps a cart, a login and a conversion."""
        rng = self.rng
        web = surface == "web"
        if traffic is None:
            traffic = _traffic(rng, channel, web)
        known = p.user_id is not None
        buys = rng.random() < (_PURCHASE_CHANCE[kind] if known else 0.015)
        subscribes = known and p.sub_prospect and not p.subscribed
        subscribes = subscribes and rng.random() < _SUB_CHANCE[kind]
        leads = web and rng.random() < (0.012 if known else 0.05)
        sid = self.session_id()
        # Converting needs an account, so a known person logs in on this surface first.
        needs_login = buys or subscribes or renewal or rng.random() < 0.3
        login_at = None
        if known and needs_login:
            if web and p.web_login_at is None:
                p.web_login_at = login_at = t0 + 3
            elif not web and p.devices[surface].login_at is None:
                p.devices[surface].login_at = login_at = t0 + 3
        start_ids = self.ids(p, surface, t0)
        if "user_id" not in start_ids and known and login_at is None:
            anon = p.web_anonymous_sessions if web else p.devices[surface].anonymous_sessions
            anon.append((sid, t0))
        props = None if web else json.dumps({"app_version": rng.choice(["5.2.1", "5.3.0"])})
        fields = {**start_ids, "session_id": sid, **traffic, "properties": props}
        event = self.emit(p.key, t0, "session_start", fields)
        if event is not None:
            event["_ch"] = channel
        ts = t0
        if login_at is not None:
            ts = login_at
            ids = {**self.ids(p, surface, ts), "session_id": sid}
            self.emit(p.key, ts, "identify", {**ids, "properties": '{"method": "login"}'})

        def step(name: str, props: dict | None = None, **extra) -> None:
            nonlocal ts
            ts += rng.randint(8, 90)
            fields = {**self.ids(p, surface, ts), "session_id": sid, **extra}
            if props:
                fields["properties"] = json.dumps(props)
            self.emit(p.key, ts, name, fields)

        view = "page_view" if web else "screen_view"
        for _ in range(rng.randint(1, 4)):
            where = rng.choice(["home", "sale", "new", "shoes", "bags", "account"])
            step(view, {"page_path": f"/{where}"} if web else {"screen_name": where})
        product = f"sku_{rng.randint(1000, 9999)}"
        carts = buys or rng.random() < 0.2
        if carts or rng.random() < 0.4:
            step("product_view", {"product_id": product})
        if carts:
            step("add_to_cart", {"product_id": product, "quantity": rng.randint(1, 3)})
        if buys:
            step("checkout_start")
            ts += rng.randint(20, 240)
            self.purchase(p, surface, sid, ts)
        elif carts and p.app_push and p.holdout == "treatment" and rng.random() < 0.5:
            plan(ts + rng.randint(3600, 3 * 3600), "message", (CART_CAMPAIGN, "app"))
        if subscribes:
            p.subscribed = True
            plan_name, cents = rng.choice([("monthly", 999), ("yearly", 9900)])
            step(
                "subscription_start",
                {"plan": plan_name},
                currency=p.currency,
                order_id=self.order_id("sub"),
                _cents=cents,
            )
        if renewal:
            step(
                "subscription_renewal",
                {"plan": "monthly"},
                currency=p.currency,
                order_id=self.order_id("sub"),
                _cents=999,
            )
        if leads:
            form = rng.choice(["newsletter_signup", "store_appointment", "b2b_quote"])
            step("lead_submit", {"form": form}, _cents=0 if rng.random() < 0.5 else None)

    def purchase(self, p: _Person, surface, sid: str, ts: int) -> None:
        """A purchase, now and then reported a second time under the same order id."""
        rng = self.rng
        cents = max(499, int(rng.lognormvariate(8.4, 0.6)))
        items = rng.randint(1, 4)
        fields = {
            **self.ids(p, surface, ts),
            "session_id": sid,
            "currency": p.currency,
            "order_id": self.order_id(),
            "_cents": cents,
            "properties": json.dumps({"items": items, "shipping": 4.99}),
        }
        if self.emit(p.key, ts, "purchase", fields) is None:
            return
        if rng.random() < 0.02:
            # The server reports the same order again under another event id; only the first
            # purchase event of an order counts.
            later = ts + rng.randint(2, 40)
            props = json.dumps({"items": items, "shipping": 4.99, "reported_by": "server"})
            self.emit(p.key, later, "purchase", {**fields, "properties": props})

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
                "properties": json.dumps({"plan": "monthly", "charged_by": "server"}),
            }
            self.emit(p.key, ts, "subscription_renewal", fields)
            return
        surface = rng.choice(self.surfaces(p))
        channel = _pick(rng, (((DIRECT, 60), ("Email", 40))))
        self.visit(p, ts, surface, channel, "renewal", plan=plan, renewal=True)

    def unknown_events(self, persons: list[_Person]) -> int:
        """A few events whose name is outside the canonical vocabulary: valid rows, which the
        pipeline keeps as `other`."""
        app_users = [p for p in persons if p.devices and p.user_id]
        written = 0
        for p in self.rng.sample(app_users, min(3, len(app_users))):
            ts = self.start_ts + self.rng.randrange(self.days * DAY)
            props = json.dumps({"rating": self.rng.randint(1, 5), "store": "app_store"})
            fields = {**self.ids(p, 0, ts), "properties": props}
            written += self.emit(p.key, ts, UNKNOWN_EVENT_NAME, fields) is not None
        return written

    def force_logins(self, p: _Person) -> None:
        """Log a known person in on every surface that otherwise stays anonymous.

        Without a login an anonymous cookie or device would look like a different person, and
        the truth would ask the identity stage for something no rule can recover.
        """
        if p.user_id is None:
            return
        pending = []
        if p.web_login_at is None and p.web_anonymous_sessions:
            pending.append(("web", p.web_anonymous_sessions))
        for i, dev in enumerate(p.devices):
            if dev.login_at is None and dev.anonymous_sessions:
                pending.append((i, dev.anonymous_sessions))
        for surface, sessions in pending:
            sid, started = sessions[-1]
            at = min(started + 1, self.end_ts - 1)
            fields = self.ids(p, surface, at)
            fields.update(user_id=p.user_id, session_id=sid, properties='{"method": "login"}')
            self.emit(p.key, at, "identify", fields)

    # -- scripted stories --------------------------------------------------------------------

    def stories(self) -> None:
        """Hand-written people whose expected attribution is stated in the tests."""
        for key, rows in _story_scripts(self.start_ts).items():
            for n, (ts, name, fields) in enumerate(rows):
                fields = dict(fields)
                eid = fields.pop("event_id", None) or f"story_{key.split('_', 2)[2]}_{n:02d}"
                channel = fields.pop("_channel_label", None)
                event = self.emit(key, ts, name, fields, eid=eid)
                if event is not None and channel is not None:
                    event["_ch"] = channel


def _story_scripts(t0: int) -> dict[str, list[tuple[int, str, dict]]]:
    """The story people's events; times are `day N, HH:MM:SS` after the demo's first midnight."""

    def at(day: int, hms: str) -> int:
        h, m, s = (int(x) for x in hms.split(":"))
        return t0 + day * DAY + h * 3600 + m * 60 + s

    def holdout(user: str) -> tuple[int, str, dict]:
        return (
            at(0, "00:00:00"),
            "holdout_assigned",
            {"user_id": user, "platform": "unknown", "holdout_group": "treatment"},
        )

    def push(ids: dict, campaign: str, message: str, kind: str = "app") -> dict:
        return {**ids, "campaign_id": campaign, "message_id": message, "push_kind": kind}

    def session(ids: dict, sid: str, label: str, **traffic) -> dict:
        return {**ids, "session_id": sid, **traffic, "_channel_label": label}

    def pays(ids: dict, sid: str, order: str | None, cents: int | None, eid: str, cur="USD"):
        fields = {**ids, "session_id": sid, "order_id": order, "_cents": cents, "event_id": eid}
        return {**fields, "currency": cur} if cents else fields

    s1 = {"user_id": "u_story_1", "device_id": "dev_story_1", "platform": "ios"}
    s2_anon = {"anonymous_id": "anon_story_2", "platform": "web"}
    s2 = {**s2_anon, "user_id": "u_story_2"}
    s3 = {"user_id": "u_story_3", "device_id": "dev_story_3", "platform": "android"}
    s4 = {"user_id": "u_story_4", "device_id": "dev_story_4", "platform": "ios"}
    s5_app = {"user_id": "u_story_5", "device_id": "dev_story_5", "platform": "android"}
    s5_web = {"user_id": "u_story_5", "anonymous_id": "anon_story_5", "platform": "web"}
    x_phone = {"user_id": "u_story_x", "device_id": "dev_story_x", "platform": "ios"}
    tablet = {"device_id": "dev_story_tablet", "platform": "android"}
    y_web = {"user_id": "u_story_y", "anonymous_id": "anon_story_y", "platform": "web"}
    firebase = {"utm_source": "firebase", "utm_medium": "push"}
    m1 = push(s1, "cmp_app_spring_sale", "msg_story_1")
    m2 = push(s2_anon, "cmp_web_new_arrivals", "msg_story_2", "web")
    m3a = push(s3, "cmp_app_flash_sale", "msg_story_3a")
    m3b = push(s3, "cmp_app_daily_deals", "msg_story_3b")
    m4 = push(s4, "cmp_app_new_arrivals", "msg_story_4")
    m5 = push(s5_app, "cmp_app_weekend_picks", "msg_story_5")
    mx = push(x_phone, "cmp_app_price_drop", "msg_story_x")
    return {
        # A push click on day 1, then a purchase through an email on day 2: a click assist.
        # The server reports the order twice; the first purchase event is the conversion.
        "person_story_click_assist": [
            holdout("u_story_1"),
            (at(1, "10:00:00"), "push_sent", m1),
            (at(1, "10:00:05"), "push_delivered", m1),
            (at(1, "10:20:00"), "push_opened", m1),
            (
                at(1, "10:20:30"),
                "session_start",
                session(s1, "sess_story_1a", PUSH_CHANNEL, **firebase),
            ),
            (at(1, "10:21:10"), "screen_view", {**s1, "session_id": "sess_story_1a"}),
            (
                at(2, "19:00:00"),
                "session_start",
                session(s1, "sess_story_1b", "Email", utm_source="newsletter", utm_medium="email"),
            ),
            (at(2, "19:03:00"), "product_view", {**s1, "session_id": "sess_story_1b"}),
            (
                at(2, "19:06:00"),
                "purchase",
                pays(s1, "sess_story_1b", "ord_story_1", 5990, "story_click_assist_purchase"),
            ),
            (
                at(2, "19:06:20"),
                "purchase",
                pays(s1, "sess_story_1b", "ord_story_1", 5990, "story_click_assist_purchase_again"),
            ),
        ],
        # A web push delivered but never opened, then an anonymous Google visit that logs in
        # and buys: an impression-only assist that exists only through backward stitching.
        "person_story_impression_assist": [
            holdout("u_story_2"),
            (at(3, "09:00:00"), "push_sent", m2),
            (at(3, "09:00:02"), "push_delivered", m2),
            (
                at(4, "12:00:00"),
                "session_start",
                session(
                    s2_anon, "sess_story_2", "Organic Search", referrer="https://www.google.com/"
                ),
            ),
            (at(4, "12:02:00"), "page_view", {**s2_anon, "session_id": "sess_story_2"}),
            (at(4, "12:07:00"), "identify", {**s2, "session_id": "sess_story_2"}),
            (
                at(4, "12:10:00"),
                "purchase",
                pays(
                    s2,
                    "sess_story_2",
                    "ord_story_2",
                    12000,
                    "story_impression_assist_purchase",
                    "EUR",
                ),
            ),
        ],
        # A push open that starts a session without utm (recorded as Direct): the session is
        # the open's touch, so push is the last touch of the subscription. The next day an open
        # followed 5 minutes later by a Direct session: two touches, and last non-direct picks
        # the push click for the lead.
        "person_story_push_direct": [
            holdout("u_story_3"),
            (at(4, "20:00:00"), "session_start", session(s3, "sess_story_3a", DIRECT)),
            (at(5, "18:00:00"), "push_sent", m3a),
            (at(5, "18:00:03"), "push_delivered", m3a),
            (at(5, "18:30:00"), "push_opened", m3a),
            (at(5, "18:30:40"), "session_start", session(s3, "sess_story_3b", DIRECT)),
            (
                at(5, "18:35:00"),
                "subscription_start",
                pays(s3, "sess_story_3b", "sub_story_3", 999, "story_push_direct_subscription"),
            ),
            (at(6, "08:00:00"), "push_sent", m3b),
            (at(6, "08:00:02"), "push_delivered", m3b),
            (at(6, "08:01:00"), "push_opened", m3b),
            (at(6, "08:06:00"), "session_start", session(s3, "sess_story_3c", DIRECT)),
            (
                at(6, "08:10:00"),
                "lead_submit",
                pays(s3, "sess_story_3c", None, None, "story_push_direct_lead"),
            ),
        ],
        # A push click one second older than the 7-day purchase lookback: no push in the path.
        "person_story_outside_lookback": [
            holdout("u_story_4"),
            (at(0, "08:00:00"), "push_sent", m4),
            (at(0, "08:00:01"), "push_delivered", m4),
            (at(0, "08:05:00"), "push_opened", m4),
            (
                at(0, "08:05:20"),
                "session_start",
                session(s4, "sess_story_4a", PUSH_CHANNEL, **firebase),
            ),
            (
                at(7, "08:00:00"),
                "session_start",
                session(s4, "sess_story_4b", DIRECT, utm_source="(direct)", utm_medium="(none)"),
            ),
            (
                at(7, "08:05:01"),
                "purchase",
                pays(s4, "sess_story_4b", "ord_story_4", 3500, "story_outside_lookback_purchase"),
            ),
        ],
        # An influenced open exactly 7 days before a paid-search purchase on the web: the
        # window is inclusive, so it is an influenced assist (and a cross-device one).
        "person_story_boundary_influenced": [
            holdout("u_story_5"),
            (at(1, "07:00:00"), "push_sent", m5),
            (at(1, "07:00:02"), "push_delivered", m5),
            (at(1, "09:00:00"), "push_influenced_open", m5),
            (
                at(8, "08:55:00"),
                "session_start",
                session(
                    s5_web,
                    "sess_story_5",
                    "Paid Search",
                    utm_source="google",
                    utm_medium="cpc",
                    click_id="gclid_story_5",
                ),
            ),
            (
                at(8, "09:00:00"),
                "purchase",
                pays(
                    s5_web,
                    "sess_story_5",
                    "ord_story_5",
                    8000,
                    "story_boundary_influenced_purchase",
                ),
            ),
        ],
        # X and Y share a tablet. Tablet events carry only the device id; each belongs to the
        # user whose login on the tablet most recently preceded it. X got a push the evening
        # before Y's purchase: crediting Y's purchase to X would wrongly show an assist.
        "person_story_shared_x": [
            holdout("u_story_x"),
            (at(2, "10:00:00"), "identify", {**tablet, "user_id": "u_story_x"}),
            (at(2, "10:00:30"), "session_start", session(tablet, "sess_story_xa", DIRECT)),
            (at(2, "10:02:00"), "screen_view", {**tablet, "session_id": "sess_story_xa"}),
            (
                at(2, "10:05:00"),
                "purchase",
                pays(tablet, "sess_story_xa", "ord_story_x", 3000, "story_shared_x_purchase"),
            ),
            (at(3, "19:00:00"), "push_sent", mx),
            (at(3, "19:00:04"), "push_delivered", mx),
        ],
        "person_story_shared_y": [
            holdout("u_story_y"),
            (at(3, "20:00:00"), "identify", {**tablet, "user_id": "u_story_y"}),
            (
                at(3, "20:00:30"),
                "session_start",
                session(
                    tablet,
                    "sess_story_ya",
                    "Organic Social",
                    utm_source="facebook",
                    utm_medium="social",
                ),
            ),
            (
                at(3, "20:04:00"),
                "purchase",
                pays(tablet, "sess_story_ya", "ord_story_y", 4500, "story_shared_y_purchase"),
            ),
            (
                at(4, "11:00:00"),
                "session_start",
                session(
                    y_web,
                    "sess_story_yb",
                    "Organic Search",
                    utm_source="google",
                    utm_medium="organic",
                ),
            ),
            (at(4, "11:01:00"), "page_view", {**y_web, "session_id": "sess_story_yb"}),
        ],
    }


# -- the expected answer ---------------------------------------------------------------------


@dataclass(frozen=True)
class _Touch:
    ts: int
    touch_id: str
    kind: str  # session, click, influenced or impression
    channel: str
    is_push: bool


def _person_touches(events: list[dict], window_s: float) -> tuple[list[_Touch], int, int]:
    """One person's touches, plus how many sessions a push open started and how many of those
    carried no utm. `events` must be sorted by time."""
    opens = [e["_t"] for e in events if e["event_name"] == "push_opened"]
    touches: list[_Touch] = []
    messages: dict[str, dict[str, tuple[int, str]]] = {}
    opened_sessions = opened_direct = 0
    for e in events:
        name = e["event_name"]
        if name == "session_start":
            i = bisect.bisect_right(opens, e["_t"])
            if i and e["_t"] - opens[i - 1] <= window_s:
                # The session the open started: the open's touch, whatever its utm says.
                opened_sessions += 1
                opened_direct += not (e.get("utm_source") or e.get("utm_medium"))
                continue
            channel = e["_ch"]
            touches.append(
                _Touch(e["_t"], e["event_id"], "session", channel, channel == PUSH_CHANNEL)
            )
        elif name.startswith("push_") and e.get("message_id"):
            messages.setdefault(e["message_id"], {}).setdefault(name, (e["_t"], e["event_id"]))
    for seen in messages.values():
        for name, kind in (
            ("push_opened", "click"),
            ("push_influenced_open", "influenced"),
            ("push_delivered", "impression"),
        ):
            if name in seen:
                ts, eid = seen[name]
                touches.append(_Touch(ts, eid, kind, PUSH_CHANNEL, True))
                break
        else:
            # A send without a bounce counts as delivered, at the send.
            if "push_sent" in seen and "push_bounced" not in seen:
                ts, eid = seen["push_sent"]
                touches.append(_Touch(ts, eid, "impression", PUSH_CHANNEL, True))
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
    window_s = settings.attribution.push_open_session_window_minutes * 60
    type_of = {ev: name for name, d in settings.conversions.items() for ev in d.events}
    by_person: dict[str, list[dict]] = {}
    for e in sorted(events, key=lambda e: (e["_t"], e["event_id"])):
        by_person.setdefault(e["_p"], []).append(e)
    touches: dict[str, list[_Touch]] = {}
    opened = opened_direct = 0
    for person, person_events in by_person.items():
        touches[person], n, n_direct = _person_touches(person_events, window_s)
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
            lookback = definition.lookback_days
            rows.append(
                {
                    "conversion_event_id": e["event_id"],
                    "conversion_type": ctype,
                    "event_name": e["event_name"],
                    "true_person": person,
                    "conversion_time": e["_t"],
                    "order_id": e.get("order_id"),
                    "value": (cents or 0) / 100,
                    "currency": e.get("currency"),
                    "lookback_days": lookback,
                    **_role(touches[person], e["_t"] - lookback * DAY, e["_t"]),
                }
            )
    rows.sort(key=lambda r: (r["conversion_time"], r["conversion_event_id"]))
    return _Truth(rows, opened, opened_direct, repeated_orders)


# -- writing ---------------------------------------------------------------------------------

_FILE_NAME = re.compile(r"events_\d{4}-\d{2}-\d{2}\.(jsonl|csv|parquet)")
_IDENTIFIERS = ("user_id", "anonymous_id", "device_id")
_JSON_REST = tuple(
    c for c in FILE_COLUMNS if c not in ("event_id", "source", "event_time", "revenue")
)


def _day_format(day_index: int) -> str:
    """Most days arrive as JSON lines; some as CSV and some as Parquet, as exports drift."""
    return {2: "csv", 5: "parquet"}.get(day_index % 7, "jsonl")


def _revenue_text(cents: int) -> str:
    return f"{'-' if cents < 0 else ''}{abs(cents) // 100}.{abs(cents) % 100:02d}"


def _json_line(row: dict) -> str:
    if "_raw" in row:
        return row["_raw"]
    out = {"event_id": row.get("event_id"), "source": SOURCE}
    if out["event_id"] is None:
        del out["event_id"]
    out["event_time"] = row.get("_time_text") or _iso(row["_t"])
    # Absent keys stand for nulls, as most exporters write them.
    out.update({c: row[c] for c in _JSON_REST if c in row})
    cents = row.get("_cents")
    if cents is None:
        return json.dumps(out)
    # JSON numbers keep their two decimals only when written by hand.
    out["revenue"] = "__REVENUE__"
    return json.dumps(out).replace('"__REVENUE__"', _revenue_text(cents))


def _csv_values(row: dict) -> list[str]:
    values = []
    for col in FILE_COLUMNS:
        if col == "event_time":
            values.append(row.get("_time_text") or _iso(row["_t"]))
        elif col == "source":
            values.append(SOURCE)
        elif col == "revenue":
            cents = row.get("_cents")
            values.append("" if cents is None else _revenue_text(cents))
        else:
            value = row.get(col)
            values.append("" if value is None else str(value))
    return values


def _parquet_table(rows: list[dict]) -> pa.Table:
    arrays = []
    schema = []
    for col in FILE_COLUMNS:
        if col == "event_time":
            typ = pa.timestamp("us", tz="UTC")
            values = [r["_t"] * 1_000_000 for r in rows]
        elif col == "revenue":
            typ = pa.decimal128(18, 2)
            values = [
                None if r.get("_cents") is None else Decimal(r["_cents"]).scaleb(-2) for r in rows
            ]
        elif col == "source":
            typ, values = pa.string(), [SOURCE] * len(rows)
        else:
            typ, values = pa.string(), [r.get(col) for r in rows]
        arrays.append(pa.array(values, type=typ))
        schema.append(pa.field(col, typ))
    return pa.Table.from_arrays(arrays, schema=pa.schema(schema))


def _write_file(path: Path, fmt: str, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        path.write_text("".join(_json_line(r) + "\n" for r in rows), encoding="utf-8")
    elif fmt == "csv":
        with path.open("w", newline="", encoding="utf-8") as handle:
            writer = csv.writer(handle)
            writer.writerow(FILE_COLUMNS)
            writer.writerows(_csv_values(r) for r in rows)
    else:
        pq.write_table(_parquet_table(rows), path)


# Rows the ingest must quarantine, with the file format each goes to: Parquet cannot hold a
# bad timestamp or a line that is not JSON, so those go to the text formats.
_BROKEN = (
    ("invalid_json", "jsonl"),
    ("invalid_json", "jsonl"),
    ("missing_event_id", "jsonl"),
    ("missing_event_id", "csv"),
    ("bad_timestamp", "jsonl"),
    ("bad_timestamp", "csv"),
    ("no_identifier", "jsonl"),
    ("no_identifier", "parquet"),
)


def _break(reason: str, fmt: str, template: dict, event_id: str) -> dict:
    """A copy of a real event, with a new id, broken in one way."""
    row = {k: v for k, v in template.items() if k != "_ch"}
    row["event_id"] = event_id
    if reason == "invalid_json":
        line = _json_line(row)
        return {"_raw": line[: len(line) // 2], "_t": row["_t"]}
    if reason == "missing_event_id":
        del row["event_id"]
    elif reason == "bad_timestamp":
        row["_time_text"] = "2024-13-45T99:00:00Z" if fmt == "jsonl" else "yesterday 10am"
    elif reason == "no_identifier":
        for key in _IDENTIFIERS:
            row.pop(key, None)
    return row


def _remove_old_demo_files(canonical: Path) -> None:
    """Files of an earlier run would otherwise mix with this one's; only the demo's own
    `canonical/YYYY/MM/events_YYYY-MM-DD.*` names are removed."""
    if not canonical.is_dir():
        return
    for path in sorted(canonical.glob("*/*/events_*")):
        if path.is_file() and _FILE_NAME.fullmatch(path.name):
            path.unlink()


def _write_truth(truth_dir: Path, events: list[dict], conversions: list[dict]) -> None:
    truth_dir.mkdir(parents=True, exist_ok=True)
    ordered = sorted(events, key=lambda e: (e["_t"], e["event_id"]))
    ts_type = pa.timestamp("us", tz="UTC")
    events_table = pa.table(
        {
            "event_id": pa.array([e["event_id"] for e in ordered], pa.string()),
            "true_person": pa.array([e["_p"] for e in ordered], pa.string()),
            "event_name": pa.array([e["event_name"] for e in ordered], pa.string()),
            "event_time": pa.array([e["_t"] * 1_000_000 for e in ordered], ts_type),
        }
    )
    pq.write_table(events_table, truth_dir / "events.parquet")
    conv_types = {
        "conversion_event_id": pa.string(),
        "conversion_type": pa.string(),
        "event_name": pa.string(),
        "true_person": pa.string(),
        "conversion_time": ts_type,
        "order_id": pa.string(),
        "value": pa.float64(),
        "currency": pa.string(),
        "lookback_days": pa.int32(),
        "push_role": pa.string(),
        "assist_kind": pa.string(),
        "last_touch_channel": pa.string(),
        "push_touch_count": pa.int32(),
        "ga_assist": pa.bool_(),
    }
    columns = {}
    for name, typ in conv_types.items():
        values = [r[name] for r in conversions]
        if name == "conversion_time":
            values = [v * 1_000_000 for v in values]
        columns[name] = pa.array(values, typ)
    pq.write_table(pa.table(columns), truth_dir / "conversions.parquet")


def _lay_out(b: _Builder, events: list[dict]) -> tuple[dict[int, list[dict]], int, int, dict]:
    """Rows of each daily file: a few events arrive a day late, a few twice, a few broken.

    Returns the rows by day index, and the late, duplicate and broken (by reason) counts.
    """
    rng, days = b.rng, b.days

    def day_of(e: dict) -> int:
        return (e["_t"] - b.start_ts) // DAY

    files: dict[int, list[dict]] = {d: [] for d in range(days)}
    late: dict[int, list[dict]] = {d: [] for d in range(days)}
    views: dict[int, list[dict]] = {d: [] for d in range(days)}
    late_rows = 0
    for e in events:
        d = day_of(e)
        if e["event_name"] in ("page_view", "screen_view"):
            views[d].append(e)
        if d + 1 < days and not e["event_id"].startswith("story_") and rng.random() < 0.01:
            late[d + 1].append(e)
            late_rows += 1
        else:
            files[d].append(e)
    for d in range(days):
        # Late arrivals come at the end of the next day's export.
        files[d].extend(late[d])
    randoms = [e for e in events if not e["event_id"].startswith("story_")]
    duplicates = rng.sample(randoms, max(1, len(randoms) // 250))
    for e in duplicates:
        d = min(day_of(e) + rng.randint(0, 1), days - 1)
        files[d].insert(rng.randint(0, len(files[d])), e)
    broken: dict[str, int] = {}
    for reason, fmt in _BROKEN:
        candidates = [d for d in range(days) if _day_format(d) == fmt]
        if not candidates:
            fmt = "jsonl"
            candidates = [d for d in range(days) if _day_format(d) == fmt]
        d = rng.choice(candidates)
        # The broken row copies an event of the file's own day, so its time fits the file.
        template = rng.choice(views[d] or randoms)
        files[d].insert(rng.randint(0, len(files[d])), _break(reason, fmt, template, b.event_id()))
        broken[reason] = broken.get(reason, 0) + 1
    return files, late_rows, len(duplicates), dict(sorted(broken.items()))


def generate_demo(
    landing_root: Path,
    *,
    seed: int = 7,
    start: date = date(2024, 1, 1),
    days: int = 31,
    people: int = 3000,
    truth_dir: Path | None = None,
) -> DemoSummary:
    """Write a seeded month of canonical events under `landing_root/canonical/` and the truth.

    The truth goes to `truth_dir` (default `landing_root.parent / "demo_truth"`), outside the
    landing root so the pipeline never ingests it. The same arguments always write the same
    bytes. Story people need at least 10 days and are left out of shorter runs.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    if people < MIN_PEOPLE:
        raise ValueError(f"people must be at least {MIN_PEOPLE}, got {people}")
    landing_root = Path(landing_root)
    truth_dir = Path(truth_dir) if truth_dir is not None else landing_root.parent / TRUTH_DIR_NAME
    if truth_dir.resolve().is_relative_to(landing_root.resolve()):
        raise ValueError(f"the truth folder {truth_dir} must be outside the landing root")
    settings = Settings()
    clock = time.perf_counter()
    b = _Builder(seed, start, days)
    n_stories = len(_story_scripts(b.start_ts)) if days >= STORY_MIN_DAYS else 0
    if n_stories:
        b.stories()
    persons = [b.make_person(n) for n in range(1, people - n_stories + 1)]
    for p in persons:
        b.simulate(p)
    unknown_rows = b.unknown_events(persons)
    events = sorted(b.events, key=lambda e: (e["_t"], e["event_id"]))
    names = {e["event_name"] for e in events} - {UNKNOWN_EVENT_NAME}
    if not names <= set(EVENT_NAMES):
        raise AssertionError(f"demo wrote non-canonical names {sorted(names - set(EVENT_NAMES))}")
    truth = expected_results(events, settings)
    conversions = truth.conversions

    files, late_rows, duplicates, broken = _lay_out(b, events)
    canonical = landing_root / "canonical"
    _remove_old_demo_files(canonical)
    written: list[str] = []
    by_format: dict[str, int] = {}
    for d in range(days):
        day = start + timedelta(days=d)
        fmt = _day_format(d)
        rel = Path("canonical", f"{day:%Y}", f"{day:%m}", f"events_{day:%Y-%m-%d}.{fmt}")
        _write_file(landing_root / rel, fmt, files[d])
        written.append(rel.as_posix())
        by_format[fmt] = by_format.get(fmt, 0) + len(files[d])
    _write_truth(truth_dir, events, conversions)

    def counts(key: str) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in conversions:
            if r[key] is not None:
                out[r[key]] = out.get(r[key], 0) + 1
        return dict(sorted(out.items()))

    summary = DemoSummary(
        seed=seed,
        start=start,
        days=days,
        landing_root=landing_root,
        truth_dir=truth_dir,
        files=tuple(written),
        rows_written=sum(by_format.values()),
        events=len(events),
        duplicate_rows=duplicates,
        broken_rows=broken,
        unknown_event_rows=unknown_rows,
        late_rows=late_rows,
        people=len({e["_p"] for e in events}),
        conversions=counts("conversion_type"),
        duplicate_order_events=truth.duplicate_order_events,
        push_roles=counts("push_role"),
        assist_kinds=counts("assist_kind"),
        push_opened_sessions=truth.push_opened_sessions,
        push_opened_direct_sessions=truth.push_opened_direct_sessions,
        rows_by_format=dict(sorted(by_format.items())),
    )
    logger.info(
        "demo: wrote %d rows (%d events, %d duplicates, %d broken) for %d people in %d files "
        "under %s in %.1fs; truth in %s",
        summary.rows_written,
        summary.events,
        summary.duplicate_rows,
        sum(summary.broken_rows.values()),
        summary.people,
        len(written),
        canonical,
        time.perf_counter() - clock,
        truth_dir,
    )
    logger.info(
        "demo: conversions %s, push roles %s, assist kinds %s, push-opened sessions recorded "
        "as Direct %d of %d (%.1f%%)",
        summary.conversions,
        summary.push_roles,
        summary.assist_kinds,
        summary.push_opened_direct_sessions,
        summary.push_opened_sessions,
        100 * summary.push_as_direct_rate,
    )
    return summary


def main(argv: list[str] | None = None) -> int:
    """Command line: write the demo month into a landing root."""
    parser = argparse.ArgumentParser(
        prog="python -m pipeline.demo",
        description="Write seeded demo events under LANDING/canonical and the truth beside it.",
    )
    parser.add_argument("--landing", type=Path, required=True, help="landing root to write to")
    parser.add_argument(
        "--truth", type=Path, default=None, help="truth folder (default: LANDING/../demo_truth)"
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
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
