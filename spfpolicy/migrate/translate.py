"""policyd-spf.conf in, an equivalent spfpolicy TOML file out: `spfpolicy migrate-policyd-spf`.

Pure: it reads text and returns text, no files, sockets or DNS. The file it writes asks
spfpolicy for what policyd-spf (spf-engine 3.0.4) did with the old file, sets only keys that
differ from spfpolicy's defaults, and says in a comment what became of every line: how it
maps, or why it maps differently or not at all.
"""

from __future__ import annotations

from collections.abc import Callable

from spfpolicy.migrate import lists, options, policydspf, replies
from spfpolicy.migrate.policydspf import Line, PolicydSpfFile
from spfpolicy.migrate.tomlwriter import Outcome, comment, tables

_NOT_A_MILTER = "spfpolicy is a Postfix policy service, not a milter"
# The options pyspf-milter reads from the same file; policyd-spf reads them and does nothing.
MILTER_ONLY = {
    "Socket": f"pyspf-milter only; {_NOT_A_MILTER}: its sockets are [server] listen",
    "PidFile": f"pyspf-milter only; {_NOT_A_MILTER}, run by systemd without a PID file",
    "UserID": f"pyspf-milter only; {_NOT_A_MILTER}: its systemd unit runs it as _spfpolicy",
    "UMask": f"pyspf-milter only; {_NOT_A_MILTER}: unix socket modes are [server] unix_mode",
    "InternalHosts": f"pyspf-milter only; {_NOT_A_MILTER}",
    "MacroList": f"pyspf-milter only; {_NOT_A_MILTER}",
    "IntHosts": "pyspf-milter's internal value, made from InternalHosts; not a setting",
}

SPFPOLICY_ONLY = (
    "spfpolicy settings policyd-spf has no counterpart for, left at their defaults:",
    "[server] listen: spfpolicy is one long-lived daemon (inet:127.0.0.1:10035, or the unix "
    "socket systemd passes), not a process Postfix spawns: remove policyd-spf from master.cf "
    'and point check_policy_service at spfpolicy (README.md, "Postfix setup").',
    "[skip] authenticated = true: SASL-authenticated clients are not checked; policyd-spf "
    "checked them unless permit_sasl_authenticated came first in main.cf.",
    '[skip] protocol_states = ["RCPT"]: policyd-spf checked at whatever stage main.cf called it.',
    "[dns], [spf] result_cache, [metrics]: a shared DNS cache, a result cache and a Prometheus "
    "exporter; [spf] ipv6_void_fairness; [skip] policy_contexts.",
    '"hold" in [actions.helo] and [actions.mailfrom] (Postfix\'s HOLD: the message waits in the '
    "hold queue for a person) and a restriction class for each result but pass "
    "([actions] softfail_restriction and the like): policyd-spf could only reject, defer, add "
    "its header or answer a class on pass.",
)

Mapper = Callable[[PolicydSpfFile], Outcome]


def migrate(text: str, source: str = "policyd-spf.conf") -> str:
    """The spfpolicy TOML file equivalent to a policyd-spf.conf's text; source names it."""
    file = policydspf.parse(text)
    outcomes = [mapper(file) for mapper in MAPPERS]
    notes = {option: note for outcome in outcomes for option, note in outcome.notes.items()}
    alerts = [alert for outcome in outcomes for alert in outcome.alerts]
    if file.refused():
        alerts.insert(
            0,
            "policyd-spf refuses to start with this file: an integer option is not an integer "
            "(see below); the migration keeps spfpolicy's default for it.",
        )
    lines = _header(source, alerts)
    lines += ["#", *comment(f"What became of each line of {source}:")]
    for line in file.lines:
        lines += comment(f"line {line.number}: {line.text}")
        lines += comment(_fate(line, file, notes), indent="  ")
    if not file.lines:
        lines += comment("  (no options: policyd-spf's defaults, mapped below)")
    lines += tables([setting for outcome in outcomes for setting in outcome.settings])
    lines.append("")
    for number, paragraph in enumerate(SPFPOLICY_ONLY):
        lines += comment(paragraph, indent="  " if number else "")
    return "\n".join(lines) + "\n"


def _header(source: str, alerts: list[str]) -> list[str]:
    lines = comment(
        f"spfpolicy configuration migrated from {source} by `spfpolicy migrate-policyd-spf`. "
        "It asks spfpolicy for what policyd-spf (spf-engine 3.0.4) did with that file; keys "
        "left at spfpolicy's defaults are not written. Check it with `spfpolicy config check "
        "FILE`; README.md describes every key."
    )
    for alert in alerts:
        lines += ["#", *comment("NOTE: " + alert)]
    return lines


def _fate(line: Line, file: PolicydSpfFile, notes: dict[str, str]) -> str:
    """What became of one line."""
    if line.problem:
        return f"{line.problem}; not migrated"
    if file.where[line.option] != line.number:
        return f"overridden by line {file.where[line.option]}"
    return notes[line.option]


def map_not_migrated(file: PolicydSpfFile) -> Outcome:
    """Prospective, Per_User and the milter's options: nothing spfpolicy can be told."""
    notes = dict(MILTER_ONLY)
    alerts = []
    prospective = file.value("Prospective")
    notes["Prospective"] = "empty: off; spfpolicy checks the connecting client"
    if prospective:
        notes["Prospective"] = "not migrated: see the note at the top"
        alerts.append(
            f"Prospective = {prospective}: this file sets up an outbound check; policyd-spf "
            f"checked every sender as if the mail came from {prospective} and added no header. "
            "spfpolicy checks the connecting client only; `spfpolicy check --ip "
            f"{prospective} --sender ADDRESS` answers that question for one sender."
        )
    per_user = file.value("Per_User")
    notes["Per_User"] = "empty: off; spfpolicy's [[recipient]] tables stay empty"
    if per_user:
        where = per_user.split(",", 1)[-1]
        notes["Per_User"] = (
            f"not migrated: the per-recipient settings are in {where}, which this tool does not "
            'read. Write one [[recipient]] table for each of its lines, with match = "user@'
            'example.com" and its HELO_reject, Mail_From_reject, PermError_reject and '
            "TempError_Defer as [recipient.actions.helo] and [recipient.actions.mailfrom] keys, "
            "mapped as above; spfpolicy has no per-recipient form of the other options"
        )
        alerts.append(f"Per_User is set: the per-recipient settings in {where} are not migrated.")
    return Outcome(notes, alerts=tuple(alerts))


def map_mock(file: PolicydSpfFile) -> Outcome:
    """Mock: a dummy instance that checks nothing; spfpolicy has no such mode."""
    value = file.value("Mock")
    if not policydspf.is_truthy(value):
        return Outcome({"Mock": "off; spfpolicy has no mock mode"})
    alert = (
        f"Mock = {value} turns Mock on (policyd-spf takes any non-empty value as true, 'False' "
        "too): this instance answered every request DUNNO and checked nothing. spfpolicy has "
        "no such mode: do not migrate this instance. For a first dummy header, let an access(5) "
        "table answer PREPEND before check_policy_service."
    )
    return Outcome({"Mock": "not migrated: see the note at the top"}, alerts=(alert,))


MAPPERS: tuple[Mapper, ...] = (
    options.map_log,
    options.map_test_mode,
    options.map_actions,
    replies.map_pass_restriction,
    options.map_no_mail,
    lists.map_networks,
    lists.map_domains,
    replies.map_headers,
    options.map_timing,
    replies.map_reason,
    replies.map_status_codes,
    map_not_migrated,
    map_mock,
)
