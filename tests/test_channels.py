"""Channel classification, run through DuckDB on a small table of sessions.

Every expected value below was worked out by hand from GA4's rule table
(../shared/reference-data/README.md) and Google's source categories, not from the code.
"""

from __future__ import annotations

import duckdb
import pytest

from pipeline.channels import (
    ChannelRulesError,
    classify_sql,
    load_rules,
    parse_rules,
    register_source_categories,
)
from pipeline.tables import PUSH_CHANNEL

INPUTS = ("utm_source", "utm_medium", "utm_campaign", "referrer", "landing_url", "click_id")


def session(source=None, medium=None, campaign=None, referrer=None, landing=None, click=None):
    return (source, medium, campaign, referrer, landing, click)


GOOGLE = "https://www.google.com/"

# (id, session, expected channel, expected rule)
CASES = [
    # 1. Direct: (direct) with (none) or (not set); both empty or missing mean the same.
    ("direct_none", session("(direct)", "(none)"), "Direct", "direct"),
    ("direct_not_set", session("(direct)", "(not set)"), "Direct", "direct"),
    ("direct_upper", session("(DIRECT)", "(None)"), "Direct", "direct"),
    ("empty_empty", session("", ""), "Direct", "direct"),
    ("null_null", session(), "Direct", "direct"),
    # GA4 does not read fbclid: with no utm and no referrer the session stays direct.
    ("fbclid_alone", session(click="fbclid:IwAR0abc"), "Direct", "direct"),
    # A referral from the site itself (with or without www.) is not a referral.
    (
        "self_referral",
        session(referrer="https://shop.example.com/cart", landing="https://www.shop.example.com/"),
        "Direct",
        "direct",
    ),
    # 2. Cross-network, before Paid Search.
    (
        "cross_network",
        session("google", "cpc", "PMax_Cross-Network_Q3"),
        "Cross-network",
        "cross_network",
    ),
    # 3. Paid Shopping: shopping source or shopping campaign, and a paid medium.
    ("paid_shopping_source", session("amazon", "cpc"), "Paid Shopping", "paid_shopping"),
    (
        "paid_shopping_campaign",
        session("partner", "ppc", "spring_shop"),
        "Paid Shopping",
        "paid_shopping",
    ),
    # `e` is the one letter the regex allows before `shop`.
    ("paid_shopping_eshop", session("partner", "cpc", "eshop"), "Paid Shopping", "paid_shopping"),
    (
        "shopping_campaign_google",
        session("google", "cpc", "Shopping - Brand"),
        "Paid Shopping",
        "paid_shopping",
    ),
    # `workshop` is not a shopping campaign: `k` before `shop`.
    ("workshop_is_not_shopping", session("partner", "cpc", "workshop"), "Paid Other", "paid_other"),
    # 4. Paid Search: search source and a paid medium.
    ("paid_search", session("google", "cpc"), "Paid Search", "paid_search"),
    ("paid_search_bing_ppc", session("bing", "ppc"), "Paid Search", "paid_search"),
    ("paid_search_upper", session("Google", "CPC"), "Paid Search", "paid_search"),
    # cpm contains `cp`, so google / cpm is Paid Search before Display.
    ("google_cpm", session("google", "cpm"), "Paid Search", "paid_search"),
    # Google Ads auto-tagging without utm is google / cpc.
    ("gclid_no_utm", session(click="gclid:Cj0KCQjw"), "Paid Search", "paid_search"),
    ("gbraid_no_utm", session(click="gbraid:0AAAAA"), "Paid Search", "paid_search"),
    (
        "gclid_in_url",
        session(landing="https://shop.example.com/?gclid=Cj0K"),
        "Paid Search",
        "paid_search",
    ),
    # 5. Paid Social.
    ("paid_social", session("facebook", "paid_social"), "Paid Social", "paid_social"),
    ("paid_social_host", session("instagram.com", "cpc"), "Paid Social", "paid_social"),
    # 6. Paid Video.
    ("paid_video", session("youtube", "cpv"), "Paid Video", "paid_video"),
    # 7. Display.
    ("display", session("dv360", "display"), "Display", "display"),
    ("display_cpm", session("adnetwork", "cpm"), "Display", "display"),
    ("display_banner", session("adnetwork", "Banner"), "Display", "display"),
    ("display_interstitial", session("adnetwork", "interstitial"), "Display", "display"),
    # 8. Paid Other.
    ("paid_other", session("partner", "retargeting"), "Paid Other", "paid_other"),
    ("paid_push", session("braze", "paid_push"), "Paid Other", "paid_other"),
    # 9. Organic Shopping.
    (
        "organic_shopping",
        session("walmart.com", "referral"),
        "Organic Shopping",
        "organic_shopping",
    ),
    (
        "organic_shopping_campaign",
        session("partner", None, "Holiday_Shopping"),
        "Organic Shopping",
        "organic_shopping",
    ),
    # 10. Organic Social.
    ("organic_social", session("t.co", "referral"), "Organic Social", "organic_social"),
    ("social_medium", session("partner", "social-network"), "Organic Social", "organic_social"),
    ("social_medium_space", session("forum", "Social Media"), "Organic Social", "organic_social"),
    ("social_sm", session("forum", "sm"), "Organic Social", "organic_social"),
    (
        "facebook_referrer",
        session(referrer="https://l.facebook.com/l.php?u=x", click="fbclid:IwAR0abc"),
        "Organic Social",
        "organic_social",
    ),
    # A social source wins over a push medium: rule 10 comes before rule 18.
    ("facebook_push", session("facebook", "push"), "Organic Social", "organic_social"),
    # 11. Organic Video.
    ("organic_video", session("youtube", "referral"), "Organic Video", "organic_video"),
    ("push_video", session("braze", "push_video"), "Organic Video", "organic_video"),
    # 12. Organic Search.
    ("organic_search", session("google", "organic"), "Organic Search", "organic_search"),
    ("organic_medium", session("ecosia", "organic"), "Organic Search", "organic_search"),
    ("google_referrer", session("", "", referrer=GOOGLE), "Organic Search", "organic_search"),
    ("google_referrer_null", session(referrer=GOOGLE), "Organic Search", "organic_search"),
    (
        "google_uk_referrer",
        session(referrer="https://www.google.co.uk/search?q=shoes"),
        "Organic Search",
        "organic_search",
    ),
    (
        "duckduckgo_referrer",
        session(referrer="https://duckduckgo.com/"),
        "Organic Search",
        "organic_search",
    ),
    (
        "yahoo_search_referrer",
        session(referrer="https://us.search.yahoo.com/"),
        "Organic Search",
        "organic_search",
    ),
    # 13. Referral.
    ("referral", session("example.com", "referral"), "Referral", "referral"),
    ("referral_app", session("partner", "app"), "Referral", "referral"),
    ("referral_link", session("partner", "link"), "Referral", "referral"),
    ("referrer_site", session(referrer="https://blog.example.org/post/1"), "Referral", "referral"),
    # Webmail is not a search engine, even on a google.com host.
    (
        "gmail_referrer",
        session(referrer="https://mail.google.com/mail/u/0/"),
        "Referral",
        "referral",
    ),
    # 14. Email: source or medium.
    ("email", session("newsletter", "email"), "Email", "email"),
    ("email_upper", session("newsletter", "EMAIL"), "Email", "email"),
    ("email_source", session("e-mail", "newsletter"), "Email", "email"),
    ("email_space", session("crm", "e mail"), "Email", "email"),
    ("email_underscore", session("crm", "e_mail"), "Email", "email"),
    # 15. Affiliates.
    ("affiliates", session("partner", "affiliate"), "Affiliates", "affiliates"),
    # 16. Audio.
    ("audio", session("spotify", "audio"), "Audio", "audio"),
    # 17. SMS: source or medium.
    ("sms_source", session("sms", None), "SMS", "sms"),
    ("sms_medium", session("twilio", "SMS"), "SMS", "sms"),
    # 18. Mobile Push Notifications.
    ("push", session("braze", "push"), PUSH_CHANNEL, "mobile_push_notifications"),
    ("web_push", session("onesignal", "web_push"), PUSH_CHANNEL, "mobile_push_notifications"),
    ("mobile_push", session("braze", "mobile_push"), PUSH_CHANNEL, "mobile_push_notifications"),
    ("push_upper", session("braze", "Push"), PUSH_CHANNEL, "mobile_push_notifications"),
    ("push_padded", session("braze", " push "), PUSH_CHANNEL, "mobile_push_notifications"),
    ("mobile", session("braze", "mobile"), PUSH_CHANNEL, "mobile_push_notifications"),
    (
        "notification",
        session("braze", "in_app_notification"),
        PUSH_CHANNEL,
        "mobile_push_notifications",
    ),
    ("firebase", session("firebase", None), PUSH_CHANNEL, "mobile_push_notifications"),
    ("firebase_notif", session("Firebase", "notif"), PUSH_CHANNEL, "mobile_push_notifications"),
    # Unassigned: push-like mediums GA4 does not know, and unknown pairs.
    ("notif", session("braze", "notif"), "Unassigned", "unassigned"),
    ("fcm", session("braze", "fcm"), "Unassigned", "unassigned"),
    ("apns", session("braze", "apns"), "Unassigned", "unassigned"),
    ("not_set", session("(not set)", "(not set)"), "Unassigned", "unassigned"),
    ("source_only", session("newsletter", None), "Unassigned", "unassigned"),
]

GA4_RULE_ORDER = [
    "direct",
    "cross_network",
    "paid_shopping",
    "paid_search",
    "paid_social",
    "paid_video",
    "display",
    "paid_other",
    "organic_shopping",
    "organic_social",
    "organic_video",
    "organic_search",
    "referral",
    "email",
    "affiliates",
    "audio",
    "sms",
    "mobile_push_notifications",
]


@pytest.fixture(scope="module")
def con():
    connection = duckdb.connect()
    register_source_categories(connection)
    yield connection
    connection.close()


def classify(con, rules, rows, columns=INPUTS, mapping=None):
    """Classify rows (tuples in `columns` order); returns (channel, rule) per row, in order."""
    ddl = ", ".join(f'"{c}" varchar' for c in columns)
    con.execute(f"create or replace temp table sessions (row_no integer, {ddl})")
    marks = ", ".join("?" for _ in range(len(columns) + 1))
    con.executemany(f"insert into sessions values ({marks})", [(i, *r) for i, r in enumerate(rows)])
    query = classify_sql(rules, "sessions", mapping)
    return con.execute(f"select channel, channel_rule from ({query}) order by row_no").fetchall()


@pytest.fixture(scope="module")
def results(con):
    found = classify(con, load_rules(), [case[1] for case in CASES])
    return {case[0]: row for case, row in zip(CASES, found, strict=True)}


@pytest.mark.parametrize(("case_id", "channel", "rule"), [(c[0], c[2], c[3]) for c in CASES])
def test_default_rules(results, case_id, channel, rule):
    assert results[case_id] == (channel, rule)


def test_default_file_has_ga4_rules_in_ga4_order():
    rules = load_rules()
    assert [r.name for r in rules.rules] == GA4_RULE_ORDER
    assert rules.channels[-1] == "Unassigned"


def test_every_ga4_rule_has_a_case():
    assert {c[3] for c in CASES} >= set(GA4_RULE_ORDER)


def test_source_categories_table(con):
    got = dict(con.execute("select source, category from source_categories").fetchall())
    assert len(got) == 819
    assert got["google"] == "search"
    assert got["google shopping"] == "shopping"
    assert got["m.youtube.com"] == "video"


def test_keeps_columns_and_rows_unchanged(con):
    rows = [session("Braze", "Push"), session()]
    classify(con, load_rules(), rows)
    query = classify_sql(load_rules(), "sessions")
    out = con.execute(f"select * from ({query}) order by row_no")
    assert [d[0] for d in out.description] == ["row_no", *INPUTS, "channel", "channel_rule"]
    assert out.fetchall()[0][1:3] == ("Braze", "Push")


def test_column_mapping(con):
    columns = ("src", "med", "camp", "ref", "url", "clid")
    rows = [("braze", "push", None, None, None, None), (None, None, None, GOOGLE, None, None)]
    mapping = dict(zip(INPUTS, columns, strict=True))
    assert classify(con, load_rules(), rows, columns, mapping) == [
        (PUSH_CHANNEL, "mobile_push_notifications"),
        ("Organic Search", "organic_search"),
    ]


def test_quotes_in_values_are_literals(con):
    rules = parse_rules(
        {
            "rules": [
                {"name": "odd", "channel": "It's odd", "when": [{"source": {"in": ["o'brien"]}}]},
                {"name": "push", "channel": PUSH_CHANNEL, "when": [{"medium": {"in": ["push"]}}]},
            ]
        }
    )
    rows = [session("O'Brien", "x"), session("x", "push"), session("x", "y")]
    assert classify(con, rules, rows) == [
        ("It's odd", "odd"),
        (PUSH_CHANNEL, "push"),
        ("Unassigned", "unassigned"),
    ]


def _rules_file(tmp_path, second_rule: str):
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n"
        "  - name: mobile_push_notifications\n"
        "    channel: Mobile Push Notifications\n"
        "    when:\n"
        "      - medium: {ends_with: [push]}\n" + second_rule
    )
    return path


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        (
            "  - name: shopping\n    channel: Shopping\n    when:\n"
            "      - campaign: {regex: '(shop'}\n",
            "rule 2 (shopping): when[0].campaign.regex: bad regex '(shop'",
        ),
        (
            "  - name: by_host\n    channel: Referral\n    when:\n      - referer: {in: [a.com]}\n",
            "rule 2 (by_host): when[0]: unknown field 'referer'",
        ),
        (
            "  - name: email\n    channel: Email\n    when:\n      - medium: {equals: [email]}\n",
            "rule 2 (email): when[0].medium: unknown test 'equals'",
        ),
        (
            "  - name: email\n    when:\n      - medium: {in: [email]}\n",
            "rule 2 (email): missing channel",
        ),
        (
            "  - name: email\n    channel: Email\n    when:\n"
            "      - medium: {is_empty: yes please}\n",
            "rule 2 (email): when[0].medium.is_empty: must be `true`",
        ),
        (
            "  - name: mobile_push_notifications\n    channel: Other\n    when:\n"
            "      - medium: {in: [x]}\n",
            "rule 2 (mobile_push_notifications): duplicate name",
        ),
    ],
)
def test_load_errors_name_the_rule(tmp_path, rule, message):
    path = _rules_file(tmp_path, rule)
    with pytest.raises(ChannelRulesError) as error:
        load_rules(path)
    assert message in str(error.value)
    assert str(path) in str(error.value)


def test_rules_without_push_channel_are_rejected():
    with pytest.raises(ChannelRulesError, match="Mobile Push Notifications"):
        parse_rules({"rules": [{"name": "a", "channel": "A", "when": [{"medium": {"in": ["a"]}}]}]})
