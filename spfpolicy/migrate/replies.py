"""policyd-spf's options for what it answers -> spfpolicy's [headers], [policy], [actions], pure.

Header_Type, Authserv_Id, Hide_Receiver: which trace header accepted mail gets and what it
names. Reason_Message, SPF_Enhanced_Status_Codes: the text and codes of rejects and defers.
HELO_pass_restriction, Mail_From_pass_restriction: the restriction class answered on pass.
"""

from __future__ import annotations

import string

from spfpolicy.config.settings import HeadersConfig, HeaderType
from spfpolicy.migrate.policydspf import DEFAULT_REASON, PolicydSpfFile
from spfpolicy.migrate.tomlwriter import Outcome, Setting, refusal

# Reason_Message's placeholders (spf-engine's _rejectmessage) and what stands for them.
REASON_FIELDS = ("rejectdefer", "spf", "url")


def header_type(value: str) -> tuple[HeaderType | None, str]:
    """(the header spf-engine writes for a Header_Type value, or None when it fails; a note).

    spf-engine looks for "AR" and "SPF" inside the value, case-sensitively, and compares the
    whole value with "None".
    """
    if value == "None":
        return HeaderType.NONE, '[headers] type = "none"'
    if "AR" in value and "SPF" in value:
        return None, (
            "not migrated: policyd-spf failed every checked request with a value naming both "
            "SPF and AR; spfpolicy's default received-spf kept"
        )
    if "AR" in value:
        return HeaderType.AUTHENTICATION_RESULTS, '[headers] type = "authentication-results"'
    note = '[headers] type = "received-spf", the default'
    if value != "SPF":
        note += f" (policyd-spf reads {value!r} as SPF: it has no 'AR', case-sensitive)"
    return HeaderType.RECEIVED_SPF, note


def map_headers(file: PolicydSpfFile) -> Outcome:
    """Header_Type, Authserv_Id, Hide_Receiver -> [headers]."""
    settings: list[Setting] = []
    chosen, type_note = header_type(file.value("Header_Type"))
    if chosen is not None and chosen is not HeadersConfig().type:
        settings.append(Setting("headers", "type", chosen.value, file.cite("Header_Type")))
    authserv_id = file.value("Authserv_Id")
    if authserv_id == "HOSTNAME":
        id_note = (
            '[headers] authserv_id = "", the default: this host\'s name (spfpolicy takes the '
            "fully qualified name, policyd-spf the short one of gethostname())"
        )
    elif not authserv_id:
        id_note = (
            '[headers] authserv_id = "", this host\'s name: policyd-spf failed every request '
            "with an Authentication-Results header when it was empty"
        )
    else:
        id_note = "[headers] authserv_id"
        if chosen is not HeaderType.AUTHENTICATION_RESULTS:
            id_note += ', used only with type = "authentication-results"'
        settings.append(Setting("headers", "authserv_id", authserv_id, file.cite("Authserv_Id")))
    notes = {
        "Header_Type": type_note,
        "Authserv_Id": id_note,
        "Hide_Receiver": _hide_receiver(file),
    }
    return Outcome(notes, tuple(settings))


def _hide_receiver(file: PolicydSpfFile) -> str:
    if file.value("Per_User"):
        return "no effect in policyd-spf when Per_User is set; nothing to migrate"
    if file.value("Hide_Receiver") != "No":
        return (
            "nothing to set: spfpolicy's headers name this host as receiver (RFC 7208 §9.1), "
            "never a recipient"
        )
    return (
        "cannot be expressed: policyd-spf named the first recipient's domain as receiver; "
        "spfpolicy's headers name this host there (RFC 7208 §9.1), which discloses no recipient"
    )


def map_reason(file: PolicydSpfFile) -> Outcome:
    """Reason_Message -> [policy] reject_reason and defer_reason."""
    message = file.value("Reason_Message")
    if message == DEFAULT_REASON:
        note = "spfpolicy's built-in reply text; policyd-spf's default linked openspf.net, gone"
        return Outcome({"Reason_Message": note})
    try:
        fields = list(string.Formatter().parse(message))
    except ValueError as error:
        return Outcome({"Reason_Message": f"not migrated: {error}; policyd-spf failed on it"})
    reject, defer, problem = _templates(fields)
    if problem or not reject:
        problem = problem or "no text"
        note = f"not migrated: {problem}; spfpolicy's built-in reply text is used"
        return Outcome({"Reason_Message": note})
    note = (
        "[policy] reject_reason and defer_reason: {rejectdefer} is written out, {spf} is "
        "{explanation}" + ("; {url} (openspf.net, gone) is dropped" if "{url}" in message else "")
    )
    why = file.cite("Reason_Message")
    settings = (
        Setting("policy", "reject_reason", reject, why),
        Setting("policy", "defer_reason", defer, why),
    )
    return Outcome({"Reason_Message": note}, settings)


def _templates(
    fields: list[tuple[str, str | None, str | None, str | None]],
) -> tuple[str, str, str]:
    """(reject template, defer template, problem) from a parsed Reason_Message."""
    reject, defer = [], []
    for literal, name, spec, conversion in fields:
        text = literal.replace("{", "{{").replace("}", "}}")
        reject.append(text)
        defer.append(text)
        if name is None:
            continue
        if name not in REASON_FIELDS:
            return "", "", f"{{{name}}} is not one of policyd-spf's placeholders: it failed on it"
        if spec or conversion:
            return "", "", f"spfpolicy's templates take no format ({{{name}...}})"
        if name == "rejectdefer":
            reject.append("rejected")
            defer.append("deferred")
        elif name == "spf":
            reject.append("{explanation}")
            defer.append("{explanation}")
    return "".join(reject).strip(), "".join(defer).strip(), ""


def map_status_codes(file: PolicydSpfFile) -> Outcome:
    """SPF_Enhanced_Status_Codes: spfpolicy always sends RFC 7372's codes."""
    if file.value("SPF_Enhanced_Status_Codes") == "No":
        note = (
            "cannot be expressed: spfpolicy always sends the RFC 7372 codes (5.7.23, 5.7.24, "
            "4.7.24); there is no key to leave them out"
        )
    else:
        note = "the RFC 7372 codes (5.7.23, 5.7.24, 4.7.24), which spfpolicy always sends"
    return Outcome({"SPF_Enhanced_Status_Codes": note})


PASS_RESTRICTION = {
    "Mail_From_pass_restriction": (
        "[actions] pass_restriction: answered when MAIL FROM passes (HELO for the null sender)"
    ),
    "HELO_pass_restriction": (
        "[actions] pass_restriction, spfpolicy's one class for pass: answered when MAIL FROM "
        "passes (HELO only for the null sender), where policyd-spf answered it whenever HELO "
        "passed, even when MAIL FROM failed"
    ),
}


def map_pass_restriction(file: PolicydSpfFile) -> Outcome:
    """HELO_pass_restriction and Mail_From_pass_restriction -> [actions] pass_restriction."""
    helo, mailfrom = file.value("HELO_pass_restriction"), file.value("Mail_From_pass_restriction")
    notes = dict.fromkeys(PASS_RESTRICTION, "empty: no restriction, spfpolicy's default")
    chosen = mailfrom or helo
    if not chosen:
        return Outcome(notes)
    option = "Mail_From_pass_restriction" if mailfrom else "HELO_pass_restriction"
    refused = refusal("actions", "pass_restriction", chosen)
    if file.number("TestOnly") == 0:
        drop = "not written: policyd-spf's test mode (TestOnly = 0) never answers it"
    elif refused:
        drop = (
            f"not written: {refused}. spfpolicy answers one restriction class: declare one in "
            f"main.cf (smtpd_restriction_classes = spf_pass, spf_pass = {chosen}) and set "
            '[actions] pass_restriction = "spf_pass"'
        )
    else:
        drop = ""
    notes[option] = drop or PASS_RESTRICTION[option]
    if helo and mailfrom:
        notes["HELO_pass_restriction"] = (
            "the same class as Mail_From_pass_restriction: spfpolicy has one [actions] "
            "pass_restriction"
            if helo == mailfrom
            else "spfpolicy has one [actions] pass_restriction and these differ: it keeps "
            f"Mail_From_pass_restriction's {mailfrom!r}, which policyd-spf answered when both "
            f"identities passed; {helo!r} is dropped"
        )
    if drop:
        return Outcome(notes)
    return Outcome(notes, (Setting("actions", "pass_restriction", chosen, file.cite(option)),))
