"""What each policyd-spf option becomes in spfpolicy's configuration, pure.

Each mapper reads the options of one concern from a parsed policyd-spf.conf and returns the
spfpolicy keys to write plus a note for every option it covers: how it maps, or why it maps
differently or not at all. The lists (networks, domains) are in migratelists.py, what
spfpolicy answers (headers, reply texts, the pass restriction) in migratereplies.py.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spfpolicy.config.settings import ActionTable, LogConfig, LogLevel, SpfConfig
from spfpolicy.migrate.policydspf import PolicydSpfFile, is_true
from spfpolicy.migrate.tomlwriter import Outcome, Setting
from spfpolicy.model import SpfResult, Verdict

# The HELO_reject / Mail_From_reject values that reject, and the results they reject.
REJECTED = {
    "Fail": (SpfResult.FAIL,),
    "Softfail": (SpfResult.FAIL, SpfResult.SOFTFAIL),
    "SPF_Not_Pass": (SpfResult.FAIL, SpfResult.SOFTFAIL, SpfResult.NEUTRAL),
}
FLAGS = {SpfResult.TEMPERROR: "TempError_Defer", SpfResult.PERMERROR: "PermError_reject"}
VERBS = {Verdict.ACCEPT: "accepts", Verdict.REJECT: "rejects", Verdict.DEFER: "defers"}
KNOWN_POLICIES = "Fail, Softfail, SPF_Not_Pass, Null, False, No_Check"
IDENTITY_OPTION = {"helo": "HELO_reject", "mailfrom": "Mail_From_reject"}


def field_range(cls: type[Any], name: str) -> tuple[float, float]:
    """The inclusive range config.py allows for a numeric field."""
    item = next(item for item in dataclasses.fields(cls) if item.name == name)
    low, high = item.metadata["range"]
    return low, high


def verdicts(policy: str, file: PolicydSpfFile) -> dict[SpfResult, Verdict]:
    """What policyd-spf does with each result of an identity whose *_reject is policy."""
    table = dict.fromkeys(SpfResult, Verdict.ACCEPT)
    if policy in ("False", "No_Check"):
        return table  # a header only: TempError_Defer and PermError_reject do not apply
    for result in REJECTED.get(policy, ()):
        table[result] = Verdict.REJECT
    if is_true(file.value("TempError_Defer")):
        table[SpfResult.TEMPERROR] = Verdict.DEFER
    if is_true(file.value("PermError_reject")):
        table[SpfResult.PERMERROR] = Verdict.REJECT
    return table


def map_actions(file: PolicydSpfFile) -> Outcome:
    """HELO_reject, Mail_From_reject, PermError_reject, TempError_Defer -> [actions.*]."""
    settings: list[Setting] = []
    helo = file.value("HELO_reject")
    if helo in ("Null", "No_Check"):
        why = f"{file.cite('HELO_reject')}: the HELO identity is not checked on its own"
        settings.append(Setting("spf", "check_helo", False, why))
    else:
        settings += _table_settings("helo", helo, file)
    settings += _table_settings("mailfrom", file.value("Mail_From_reject"), file)
    notes = {
        "HELO_reject": _helo_note(helo, file),
        "Mail_From_reject": _mailfrom_note(file.value("Mail_From_reject")),
        "PermError_reject": _flag_note(
            file, "PermError_reject", 'permerror = "reject"', 'permerror = "accept"'
        ),
        "TempError_Defer": _flag_note(
            file, "TempError_Defer", 'temperror = "defer"', 'temperror = "accept"'
        )
        + ("" if is_true(file.value("TempError_Defer")) else "; spfpolicy's default defers"),
    }
    return Outcome(notes, tuple(settings))


def _table_settings(identity: str, policy: str, file: PolicydSpfFile) -> list[Setting]:
    default = ActionTable()
    option = IDENTITY_OPTION[identity]
    settings = []
    for result, verdict in verdicts(policy, file).items():
        if verdict is default.verdict(result):
            continue
        cites = file.cite(option)
        if result in FLAGS and policy not in ("False", "No_Check"):
            cites = f"{file.cite(FLAGS[result])}, {cites}"
        why = (
            f"{cites}: policyd-spf {VERBS[verdict]} {result}; spfpolicy's default is "
            f"{default.verdict(result)}"
        )
        settings.append(Setting(f"actions.{identity}", result.value, verdict.value, why))
    return settings


def _rejects(policy: str) -> str:
    results = REJECTED.get(policy, ())
    return "reject " + ", ".join(result.value for result in results)


def _helo_note(policy: str, file: PolicydSpfFile) -> str:
    if policy in REJECTED:
        extra = ""
        if policy == "SPF_Not_Pass":
            extra = (
                " (its man page also names permerror, but spf-engine rejects permerror only "
                "with PermError_reject = True)"
            )
        return f"[actions.helo]: {_rejects(policy)}{extra}"
    if policy == "Null":
        note = (
            "[spf] check_helo = false: policyd-spf rejected a HELO fail only for the null "
            "sender, and spfpolicy checks the null sender's MAIL FROM identity as "
            "postmaster@HELO (RFC 7208 §2.4), the same check, under [actions.mailfrom]"
        )
        if file.value("Mail_From_reject") != "Fail":
            note += ", which rejects what Mail_From_reject rejects, not only fail"
        return note
    if policy == "No_Check":
        return (
            "[spf] check_helo = false; for the null sender spfpolicy still checks "
            "postmaster@HELO as the MAIL FROM identity (RFC 7208 §2.4), which policyd-spf "
            "did not check at all"
        )
    if policy == "False":
        return "[actions.helo] accepts every result: a header only, as policyd-spf"
    return _unknown_policy(policy, "HELO")


def _mailfrom_note(policy: str) -> str:
    if policy in REJECTED:
        return f"[actions.mailfrom]: {_rejects(policy)}"
    if policy == "False":
        return "[actions.mailfrom] accepts every result: a header only, as policyd-spf"
    if policy == "No_Check":
        return (
            "cannot be expressed: spfpolicy always checks MAIL FROM; [actions.mailfrom] "
            "accepts every result instead, so it never rejects on it (but adds its header)"
        )
    return _unknown_policy(policy, "MAIL FROM")


def _unknown_policy(policy: str, identity: str) -> str:
    return (
        f"{policy!r} is not one of policyd-spf's values ({KNOWN_POLICIES}; case-sensitive): "
        f"it rejects no {identity} result then, only TempError_Defer and PermError_reject "
        "apply; mapped so"
    )


def _flag_note(file: PolicydSpfFile, option: str, on: str, off: str) -> str:
    value = file.value(option)
    if is_true(value):
        return (
            f"{on} in [actions.helo] and [actions.mailfrom], except for an identity whose "
            "*_reject is False (or No_Check), as in policyd-spf"
        )
    note = f"{off} in both tables"
    if value.lower() in ("true", "yes", "1", "on"):
        note += f" (policyd-spf takes only the exact text 'True': {value!r} left it off)"
    return note


def map_log(file: PolicydSpfFile) -> Outcome:
    """debugLevel -> [log] level."""
    level = file.number("debugLevel")
    if level < 0:
        chosen, how = LogLevel.ERROR, "policyd-spf logs nothing at -1; spfpolicy's quietest"
    elif level == 0:
        chosen, how = LogLevel.WARNING, "errors only (malformed requests are warnings)"
    elif level <= 2:
        chosen, how = LogLevel.INFO, "one line per decision with each identity's result"
    else:
        chosen, how = LogLevel.DEBUG, "adds connection and DNS details"
    default = chosen is LogConfig().level
    note = f'[log] level = "{chosen}"{" (the default)" if default else ""}: {how}'
    settings = () if default else (Setting("log", "level", chosen.value, file.cite("debugLevel")),)
    return Outcome({"debugLevel": note}, settings)


def map_test_mode(file: PolicydSpfFile) -> Outcome:
    """TestOnly (and its old name defaultSeedOnly) -> [policy] dry_run."""
    notes = {
        "defaultSeedOnly": (
            "TestOnly's old name: spf-engine 3.0.4 only logs a warning and uses TestOnly, so it "
            "has no effect; not migrated"
        )
    }
    if file.number("TestOnly") != 0:
        notes["TestOnly"] = (
            "normal operation (policyd-spf's test mode is TestOnly = 0); [policy] dry_run "
            "stays false"
        )
        return Outcome(notes)
    notes["TestOnly"] = (
        "[policy] dry_run = true. policyd-spf answered DUNNO instead of a reject or defer (no "
        'header); spfpolicy answers "warn": it adds the header and logs what it would have done'
    )
    why = f"{file.cite('TestOnly')}: policyd-spf's test mode"
    return Outcome(notes, (Setting("policy", "dry_run", True, why),))


def map_no_mail(file: PolicydSpfFile) -> Outcome:
    """No_Mail -> [policy] reject_only_no_mail."""
    value = file.value("No_Mail")
    if not is_true(value):
        note = "off, as spfpolicy's [policy] reject_only_no_mail = false"
        if value.lower() in ("true", "yes", "1", "on"):
            note += f" (policyd-spf takes only the exact text 'True': {value!r} left it off)"
        return Outcome({"No_Mail": note})
    note = (
        '[policy] reject_only_no_mail = true: only a "v=spf1 -all" domain is rejected; other '
        'would-be rejects become "warn" (header and log line), in policyd-spf a header'
    )
    setting = Setting("policy", "reject_only_no_mail", True, file.cite("No_Mail"))
    return Outcome({"No_Mail": note}, (setting,))


def map_timing(file: PolicydSpfFile) -> Outcome:
    """Lookup_Time, Whitelist_Lookup_Time, Void_Limit -> [spf]."""
    budget, budget_note = _time_budget(file.number("Lookup_Time"))
    limit, limit_note = _void_lookup_limit(file.number("Void_Limit"))
    notes = {
        "Lookup_Time": budget_note,
        "Void_Limit": limit_note,
        "Whitelist_Lookup_Time": (
            "no separate limit: spfpolicy's allow-list lookups share [spf] time_budget and "
            "[dns] query_timeout with the SPF checks"
        ),
    }
    default = SpfConfig()
    settings = []
    if budget != default.time_budget:
        settings.append(Setting("spf", "time_budget", budget, file.cite("Lookup_Time")))
    if limit != default.void_lookup_limit:
        settings.append(Setting("spf", "void_lookup_limit", limit, file.cite("Void_Limit")))
    return Outcome(notes, tuple(settings))


def _time_budget(seconds: int) -> tuple[float, str]:
    """[spf] time_budget for Lookup_Time, which pyspf reads as: 0 no limit, < 0 no time at all."""
    low, high = field_range(SpfConfig, "time_budget")
    if seconds < 0:
        default = SpfConfig().time_budget
        return default, (
            "not migrated: with a negative time every check of policyd-spf is a temperror; "
            f"spfpolicy's default {default:g} s kept"
        )
    budget = float(min(max(seconds, low), high)) if seconds else high  # int: may be huge
    note = (
        f"[spf] time_budget = {budget:g}: one budget for the whole request (HELO, MAIL FROM "
        "and allow-lists), where policyd-spf gave HELO and MAIL FROM Lookup_Time each"
    )
    if budget != seconds:
        had = f"{seconds} s" if seconds else "no overall limit"
        note += f" (policyd-spf had {had}; spfpolicy allows {low:g} to {high:g} s)"
    return budget, note


def _void_lookup_limit(limit: int) -> tuple[int, str]:
    """[spf] void_lookup_limit for Void_Limit, within spfpolicy's range."""
    low, high = field_range(SpfConfig, "void_lookup_limit")
    kept = int(min(max(limit, low), high))
    note = f"[spf] void_lookup_limit = {kept} (RFC 7208 §4.6.4)"
    if kept != limit:
        note += f": spfpolicy allows {low:g} to {high:g}"
    return kept, note
