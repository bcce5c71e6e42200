"""Channel classification: ordered rules in a readable YAML file, compiled to one DuckDB query.

The rules file (default `pipeline/channel_rules.yaml`, set by `channel_rules_file`) reproduces
GA4's default channel group; its header explains the rule format, the first-match order, the
case-insensitive comparisons and how a session's source and medium are derived when it has no
utm parameters. This module validates the file (`load_rules`), loads GA4's source categories into
DuckDB (`register_source_categories`) and writes the classification as a single statement
(`classify_sql`), so millions of sessions are classified inside DuckDB with hash joins on a
small table, never row by row in Python.

`ga4_source_categories.csv` is Google's source-category list as redistributed in
github.com/Velir/dbt-ga4 (seeds/ga4_source_categories.csv, commit 2d7b1f1c), MIT licence,
Copyright (c) 2022 Adam Ribaudo; see `ga4_source_categories.NOTICE`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

from pipeline.settings import DEFAULT_CHANNEL_RULES
from pipeline.tables import PUSH_CHANNEL

SOURCE_CATEGORIES_FILE = Path(__file__).resolve().parent / "ga4_source_categories.csv"
SOURCE_CATEGORIES_TABLE = "source_categories"
UNASSIGNED_CHANNEL = "Unassigned"
UNASSIGNED_RULE = "unassigned"

# Columns classify_sql reads, by their canonical names (see pipeline.tables).
INPUT_COLUMNS = ("utm_source", "utm_medium", "utm_campaign", "referrer", "landing_url", "click_id")
FIELDS = (
    "source",
    "medium",
    "campaign",
    "referrer_host",
    "landing_url",
    "click_id",
    "source_category",
)
LIST_TESTS = ("in", "contains", "ends_with")
FLAG_TESTS = ("is_empty", "not_empty")
TESTS = (*LIST_TESTS, "regex", *FLAG_TESTS)
SOURCE_CATEGORIES = ("search", "social", "shopping", "video")

_RULE_NAME = re.compile(r"[a-z][a-z0-9_]*")
# `www.`, `www2.` ... in front of a host, dropped to name the site.
_WWW = r"'^www\d*\.'"
# The name part of a site's home domain (google.com, google.co.uk, bing.com -> google, bing):
# GA4's list names the big search engines this way rather than by host.
_SITE_NAME_REGEX = r"^([a-z0-9-]+)\.(?:[a-z]{2,3}|com?\.[a-z]{2})$"
_GOOGLE_ADS_CLICK_ID = r"^(gclid|gbraid|wbraid)"
_GOOGLE_ADS_URL_PARAM = r"[?&#](gclid|gbraid|wbraid)="


class ChannelRulesError(ValueError):
    """The channel rules file is unreadable or a rule in it is malformed."""


@dataclass(frozen=True)
class Condition:
    """One test on one field, e.g. medium ends_with ('push',). Values are lower-cased."""

    field: str
    test: str
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Rule:
    """A named channel rule: it matches when any clause holds; a clause, when all its tests do."""

    name: str
    channel: str
    when: tuple[tuple[Condition, ...], ...]


@dataclass(frozen=True)
class ChannelRules:
    """Validated rules in the order they are tested, and the file they came from."""

    rules: tuple[Rule, ...]
    origin: str

    @property
    def channels(self) -> list[str]:
        """Every channel the rules can assign, in rule order, `Unassigned` last."""
        names = [r.channel for r in self.rules] + [UNASSIGNED_CHANNEL]
        return list(dict.fromkeys(names))


def _invalid_regex(pattern: str) -> str | None:
    """DuckDB's (RE2's) complaint about a pattern, or None when it compiles.

    Checked with DuckDB itself because RE2 and Python's `re` accept different syntax.
    """
    try:
        with duckdb.connect() as con:
            con.execute("select regexp_full_match('', $1, 'i')", [pattern])
    except duckdb.Error as exc:
        return str(exc).removeprefix("Invalid Input Error: ")
    return None


def _parse_condition(field: str, test: str, value: object, where: str) -> Condition:
    where = f"{where}.{test}"
    if test in FLAG_TESTS:
        if value is not True:
            raise ChannelRulesError(f"{where}: must be `true`, got {value!r}")
        return Condition(field, test)
    if test == "regex":
        if not isinstance(value, str):
            raise ChannelRulesError(f"{where}: must be a quoted pattern, got {value!r}")
        problem = _invalid_regex(value)
        if problem:
            raise ChannelRulesError(f"{where}: bad regex {value!r}: {problem}")
        return Condition(field, test, (value,))
    if not isinstance(value, list) or not value:
        raise ChannelRulesError(f"{where}: must be a non-empty list, got {value!r}")
    for item in value:
        if not isinstance(item, str):
            raise ChannelRulesError(f"{where}: {item!r} is not text; quote it")
    values = tuple(v.lower() for v in value)
    if field == "source_category" and test == "in":
        unknown = [v for v in values if v not in SOURCE_CATEGORIES]
        if unknown:
            raise ChannelRulesError(
                f"{where}: unknown source categories {unknown}; expected {list(SOURCE_CATEGORIES)}"
            )
    return Condition(field, test, values)


def _parse_clause(clause: object, where: str) -> tuple[Condition, ...]:
    if not isinstance(clause, dict) or not clause:
        raise ChannelRulesError(f"{where}: must map fields to tests, got {clause!r}")
    conditions = []
    for field, tests in clause.items():
        if field not in FIELDS:
            raise ChannelRulesError(f"{where}: unknown field {field!r}; expected one of {FIELDS}")
        if not isinstance(tests, dict) or not tests:
            raise ChannelRulesError(f"{where}.{field}: must map tests to values, got {tests!r}")
        for test, value in tests.items():
            if test not in TESTS:
                raise ChannelRulesError(
                    f"{where}.{field}: unknown test {test!r}; expected one of {TESTS}"
                )
            conditions.append(_parse_condition(field, test, value, f"{where}.{field}"))
    return tuple(conditions)


def _parse_rule(index: int, raw: object, origin: str) -> Rule:
    name = raw.get("name") if isinstance(raw, dict) else None
    where = f"{origin}: rule {index} ({name if isinstance(name, str) else 'unnamed'})"
    if not isinstance(raw, dict):
        raise ChannelRulesError(f"{where}: must be a mapping with name, channel and when")
    unknown = sorted(set(raw) - {"name", "channel", "when"})
    if unknown:
        raise ChannelRulesError(f"{where}: unknown keys {unknown}; expected name, channel, when")
    if not isinstance(name, str) or not _RULE_NAME.fullmatch(name):
        raise ChannelRulesError(f"{where}: name must be snake_case text, got {name!r}")
    if name == UNASSIGNED_RULE:
        raise ChannelRulesError(f"{where}: {UNASSIGNED_RULE!r} is reserved for no match")
    channel = raw.get("channel")
    if not isinstance(channel, str) or not channel.strip():
        raise ChannelRulesError(f"{where}: missing channel (the channel name to assign)")
    when = raw.get("when")
    if not isinstance(when, list) or not when:
        raise ChannelRulesError(f"{where}: `when` must be a non-empty list of clauses")
    clauses = tuple(_parse_clause(c, f"{where}: when[{i}]") for i, c in enumerate(when))
    return Rule(name, channel.strip(), clauses)


def parse_rules(data: object, origin: str = "channel rules") -> ChannelRules:
    """Validate parsed YAML; errors name the rule (1-based index and name) and field and test."""
    if not isinstance(data, dict) or "rules" not in data:
        raise ChannelRulesError(f"{origin}: must be a mapping with a `rules` list")
    unknown = sorted(set(data) - {"rules", "definitions"})
    if unknown:
        raise ChannelRulesError(f"{origin}: unknown top-level keys {unknown}")
    raw_rules = data["rules"]
    if not isinstance(raw_rules, list) or not raw_rules:
        raise ChannelRulesError(f"{origin}: `rules` must be a non-empty list")
    rules = tuple(_parse_rule(i, raw, origin) for i, raw in enumerate(raw_rules, start=1))
    seen: set[str] = set()
    for index, rule in enumerate(rules, start=1):
        if rule.name in seen:
            raise ChannelRulesError(f"{origin}: rule {index} ({rule.name}): duplicate name")
        seen.add(rule.name)
    # Push measurement compares channels with this exact name; a file without it would report
    # no push traffic at all rather than fail.
    if PUSH_CHANNEL not in {r.channel for r in rules}:
        raise ChannelRulesError(f"{origin}: no rule assigns the channel {PUSH_CHANNEL!r}")
    return ChannelRules(rules, origin)


def load_rules(path: str | Path | None = None) -> ChannelRules:
    """Load and validate a channel rules file (default: the GA4 rule set shipped here)."""
    path = Path(path) if path is not None else DEFAULT_CHANNEL_RULES
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ChannelRulesError(f"cannot read channel rules file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ChannelRulesError(f"{path} is not valid YAML: {exc}") from None
    return parse_rules(data, str(path))


def _literal(value: str) -> str:
    """A SQL string literal; doubling quotes is all DuckDB needs (no backslash escapes)."""
    return "'" + value.replace("'", "''") + "'"


def _identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def register_source_categories(
    con: duckdb.DuckDBPyConnection, path: str | Path = SOURCE_CATEGORIES_FILE
) -> None:
    """Create (or replace) the temp table `source_categories(source, category)` from the CSV.

    Sources are lower-cased and deduplicated so the classification's left joins never multiply
    rows; categories lose their `SOURCE_CATEGORY_` prefix (search, social, shopping, video).
    """
    con.execute(
        f"""
create or replace temp table {SOURCE_CATEGORIES_TABLE} as
select
    lower(trim(source)) as source,
    min(lower(replace(source_category, 'SOURCE_CATEGORY_', ''))) as category
from read_csv({_literal(str(path))}, header = true, all_varchar = true)
where coalesce(trim(source), '') <> ''
group by 1
"""
    )


def _host_sql(url: str) -> str:
    """Host of a URL (with or without a scheme), by string splits: twice as fast as a regex.

    Browsers strip user info from referrers, so `user@` is not handled.
    """
    rest = f"regexp_replace({url}, '^[a-z][a-z0-9+.-]*://', '')"
    for separator in ("/", "?", "#", ":"):
        rest = f"split_part({rest}, '{separator}', 1)"
    return rest


def _condition_sql(condition: Condition) -> str:
    column = f"f._cr_{condition.field}"
    values = [_literal(v) for v in condition.values]
    if condition.test == "is_empty":
        return f"{column} = ''"
    if condition.test == "not_empty":
        return f"{column} <> ''"
    if condition.test == "regex":
        return f"regexp_full_match({column}, {values[0]}, 'i')"
    if condition.test == "in":
        return f"{column} in ({', '.join(values)})"
    tests = [f"{condition.test}({column}, {v})" for v in values]
    return tests[0] if len(tests) == 1 else "(" + " or ".join(tests) + ")"


def _rule_sql(rule: Rule) -> str:
    clauses = []
    for clause in rule.when:
        sql = " and ".join(_condition_sql(c) for c in clause)
        clauses.append(f"({sql})" if len(clause) > 1 and len(rule.when) > 1 else sql)
    return "\n                or ".join(clauses)


def classify_sql(
    rules: ChannelRules, relation: str, columns: Mapping[str, str] | None = None
) -> str:
    """A query returning every column of `relation` plus `channel` and `channel_rule`.

    `relation` is SQL (a table name or a parenthesised subquery) and must have the columns
    utm_source, utm_medium, utm_campaign, referrer, landing_url and click_id; `columns` maps any
    of these canonical names to the relation's own column names. `register_source_categories`
    must have run on the connection. `channel_rule` is the name of the matching rule, or
    `unassigned`. Columns named `_cr_*` are used internally and must not be in the relation.
    """
    names = {c: c for c in INPUT_COLUMNS} | dict(columns or {})
    unknown = sorted(set(names) - set(INPUT_COLUMNS))
    if unknown:
        raise ValueError(f"unknown input columns {unknown}; expected some of {INPUT_COLUMNS}")

    def clean(column: str) -> str:
        return f"lower(trim(coalesce(t.{_identifier(names[column])}, '')))"

    internal = (
        "_cr_utm_source",
        "_cr_utm_medium",
        "_cr_campaign",
        "_cr_landing_url",
        "_cr_click_id",
        "_cr_referrer_host",
        "_cr_landing_site",
        "_cr_untagged",
        "_cr_google_ads",
        "_cr_external_site",
        "_cr_source",
        "_cr_medium",
        "_cr_source_category",
        "_cr_rule",
    )
    excluded = ",\n        ".join(internal)
    matches = "\n".join(
        f"            when {_rule_sql(rule)}\n                then {_literal(rule.name)}"
        for rule in rules.rules
    )
    channels = "\n".join(
        f"        when {_literal(rule.name)} then {_literal(rule.channel)}" for rule in rules.rules
    )
    referrer = f"lower(coalesce(t.{_identifier(names['referrer'])}, ''))"
    landing_url = f"lower(coalesce(t.{_identifier(names['landing_url'])}, ''))"
    referrer_site = f"regexp_replace(s._cr_referrer_host, {_WWW}, '')"
    # Each step is its own select so that DuckDB computes every derived value once per row.
    return f"""-- Normalise the inputs: lower case, trimmed utm values, missing = ''.
with _cr_input as (
    select
        t.*,
        {clean("utm_source")} as _cr_utm_source,
        {clean("utm_medium")} as _cr_utm_medium,
        {clean("utm_campaign")} as _cr_campaign,
        {landing_url} as _cr_landing_url,
        lower(coalesce(t.{_identifier(names["click_id"])}, '')) as _cr_click_id,
        {_host_sql(referrer)} as _cr_referrer_host,
        regexp_replace({_host_sql(landing_url)}, {_WWW}, '') as _cr_landing_site
    from {relation} as t
),
-- What GA4 looks at when a session has no utm_source and no utm_medium: a Google Ads click id,
-- else a referrer from another site (a referral from the site itself is ignored).
_cr_traffic as (
    select
        s.*,
        s._cr_utm_source = '' and s._cr_utm_medium = '' as _cr_untagged,
        regexp_matches(s._cr_click_id, {_literal(_GOOGLE_ADS_CLICK_ID)})
            or regexp_matches(s._cr_landing_url, {_literal(_GOOGLE_ADS_URL_PARAM)})
            as _cr_google_ads,
        case
            when {referrer_site} not in ('', s._cr_landing_site) then {referrer_site}
            else ''
        end as _cr_external_site
    from _cr_input as s
),
-- Source and medium: the utm values, else google / cpc for a Google Ads click, else
-- <engine> / organic for a search engine's home domain, else <site> / referral, else empty.
_cr_fields as (
    select
        s.*,
        case
            when not s._cr_untagged then s._cr_utm_source
            when s._cr_google_ads then 'google'
            else coalesce(engine.source, s._cr_external_site)
        end as _cr_source,
        case
            when not s._cr_untagged then s._cr_utm_medium
            when s._cr_google_ads then 'cpc'
            when engine.source is not null then 'organic'
            when s._cr_external_site <> '' then 'referral'
            else ''
        end as _cr_medium
    from _cr_traffic as s
    left join {SOURCE_CATEGORIES_TABLE} as engine
        on engine.source = regexp_extract(s._cr_external_site, {_literal(_SITE_NAME_REGEX)}, 1)
        and engine.category = 'search'
),
_cr_matched as (
    select
        s.*,
        coalesce(category.category, '') as _cr_source_category
    from _cr_fields as s
    left join {SOURCE_CATEGORIES_TABLE} as category
        on category.source = s._cr_source
),
-- The rules, in order: the first that matches names the session's rule.
_cr_classified as (
    select
        f.*,
        case
{matches}
            else {_literal(UNASSIGNED_RULE)}
        end as _cr_rule
    from _cr_matched as f
)
select
    c.* exclude (
        {excluded}
    ),
    case c._cr_rule
{channels}
        else {_literal(UNASSIGNED_CHANNEL)}
    end as channel,
    c._cr_rule as channel_rule
from _cr_classified as c
"""
