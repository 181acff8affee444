"""policyd-spf's network and domain lists -> spfpolicy's [skip], [allow] and [policy] lists, pure.

spf-engine splits a list at every comma and strips nothing, so " 10.0.0.0/8" or " example.com"
never matched anything. A network list ends at the first entry that is not a network: the
entries from there on were never used. The migration keeps what policyd-spf used and names
what it drops, so the administrator can add back what was meant.
"""

from __future__ import annotations

import ipaddress

from spfpolicy.config.settings import SkipConfig
from spfpolicy.migrate.options import verdicts
from spfpolicy.migrate.policydspf import PolicydSpfFile, items
from spfpolicy.migrate.tomlwriter import Outcome, Setting, refusal
from spfpolicy.model import SpfResult, Verdict

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# option -> (table, key, what spfpolicy does with it)
DOMAIN_LISTS = {
    "HELO_Whitelist": (
        "allow",
        "helo_names",
        "[allow] helo_names: no SPF check when the HELO name is listed and the client is among "
        "its A/AAAA records, as in policyd-spf",
    ),
    "Domain_Whitelist": (
        "allow",
        "forwarder_domains",
        "[allow] forwarder_domains: no SPF check when the client passes SPF for one of them, "
        "as in policyd-spf",
    ),
    "Domain_Whitelist_PTR": (
        "allow",
        "ptr_domains",
        "[allow] ptr_domains, stricter: spfpolicy takes a PTR name only when it forward-confirms "
        "(its A/AAAA records hold the client) and matches at a label boundary; policyd-spf took "
        "the first PTR name unconfirmed and matched any suffix ('yahoo.com' matched "
        "'evilyahoo.com')",
    ),
    "Reject_Not_Pass_Domains": (
        "policy",
        "reject_not_pass_domains",
        "[policy] reject_not_pass_domains, stricter: for these sender domains spfpolicy treats "
        "every MAIL FROM result but pass as fail (none, temperror and permerror too, where "
        "policyd-spf rejected neutral, softfail and fail); it does not apply the list to HELO "
        "names as policyd-spf did",
    ),
}
EVERY_PTR = (
    "an empty entry (a stray comma) made policyd-spf skip SPF for every client with a PTR record "
    "(every name ends in ''); spfpolicy cannot express it"
)
NETWORK_LISTS = {
    "skip_addresses": (
        "skip",
        "networks",
        "[skip] networks: answered DUNNO without a header, where policyd-spf prepended one "
        "saying it skipped the check",
    ),
    "Whitelist": (
        "allow",
        "networks",
        "[allow] networks: answered DUNNO without a header, where policyd-spf prepended one "
        "saying it skipped the check",
    ),
}


def policyd_network(entry: str) -> IPNetwork:
    """An entry as spf-engine reads it: IPv4 first, IPv6 when that is no IPv4 address."""
    try:
        return ipaddress.IPv4Network(entry)
    except ipaddress.AddressValueError:
        return ipaddress.IPv6Network(entry)


def networks(value: str) -> tuple[tuple[str, ...], str]:
    """(the networks policyd-spf used, as written, without repeats; what it never used, why)."""
    kept: list[str] = []
    seen: set[IPNetwork] = set()
    entries = items(value)
    for position, entry in enumerate(entries):
        try:
            network = policyd_network(entry)
        except ValueError as error:
            rest = entries[position:]
            if not any(rest):
                break  # a comma at the end: nothing is lost
            dropped = ", ".join(repr(item) for item in rest)
            why = "it does not strip spaces" if entry != entry.strip() else str(error)
            return tuple(kept), (
                f"Dropped {dropped}: policyd-spf stops at {entry!r} ({why}) and never used the "
                "rest of the list; add what you meant"
            )
        if network not in seen:
            seen.add(network)
            kept.append(entry)  # as written: spfpolicy reads it as policyd-spf did
    return tuple(kept), ""


def map_networks(file: PolicydSpfFile) -> Outcome:
    """skip_addresses -> [skip] networks, Whitelist -> [allow] networks."""
    notes: dict[str, str] = {}
    settings: list[Setting] = []
    default = set(SkipConfig().networks)
    for option, (table, key, meaning) in NETWORK_LISTS.items():
        kept, dropped = networks(file.value(option))
        note = meaning
        if option == "skip_addresses" and {policyd_network(item) for item in kept} == default:
            note += "; the same networks as spfpolicy's default, not written"
        elif option == "skip_addresses" or kept:
            settings.append(Setting(table, key, kept, file.cite(option)))
        notes[option] = note + (f". {dropped}" if dropped else "")
    return Outcome(notes, tuple(settings))


def domains(option: str, value: str) -> tuple[tuple[str, ...], list[str]]:
    """(the names policyd-spf could match, lower case, no repeats; the dropped ones and why)."""
    table, key, _ = DOMAIN_LISTS[option]
    kept: list[str] = []
    dropped: list[str] = []
    for entry in items(value):
        refused = refusal(table, key, (entry,)) if entry.strip() else ""
        if not entry:
            if option == "Domain_Whitelist_PTR" and EVERY_PTR not in dropped:
                dropped.append(EVERY_PTR)
        elif entry != entry.strip() or len(entry.split()) != 1:
            dropped.append(
                f"{entry!r}: policyd-spf never matched it, as it does not strip spaces; add "
                f"{entry.strip()!r} if you meant it"
            )
        elif option == "HELO_Whitelist" and entry != entry.lower():
            dropped.append(
                f"{entry!r}: policyd-spf compared it with the HELO name in lower case, so it "
                f"never matched; add {entry.lower()!r} if you meant it"
            )
        elif refused:
            dropped.append(f"{entry!r}: {refused}")
        elif entry.rstrip(".").lower() not in kept:
            kept.append(entry.rstrip(".").lower())
    return tuple(kept), dropped


def map_domains(file: PolicydSpfFile) -> Outcome:
    """HELO_Whitelist, Domain_Whitelist, Domain_Whitelist_PTR, Reject_Not_Pass_Domains."""
    notes: dict[str, str] = {}
    settings: list[Setting] = []
    for option, (table, key, meaning) in DOMAIN_LISTS.items():
        kept, dropped = domains(option, file.value(option))
        note = meaning
        if kept:
            settings.append(Setting(table, key, kept, file.cite(option)))
        if dropped:
            note += ". Dropped: " + "; ".join(dropped)
        notes[option] = note
    mailfrom = verdicts(file.value("Mail_From_reject"), file)
    if file.value("Reject_Not_Pass_Domains") and mailfrom[SpfResult.FAIL] is not Verdict.REJECT:
        notes["Reject_Not_Pass_Domains"] += (
            ". With this Mail_From_reject, [actions.mailfrom] accepts fail, so the list rejects "
            "nothing in spfpolicy; policyd-spf rejected whatever Mail_From_reject said"
        )
    return Outcome(notes, tuple(settings))
