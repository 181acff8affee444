"""Domain names as SPF meets them: the <domain> of an identity, IDN labels as A-labels.

Pure functions on text, shared by the evaluator and the allow-lists.
"""

from __future__ import annotations

from spfpolicy.model import Identity


def domain_text(sender: str, helo: str) -> str:
    """The <domain> check_host() starts from, spelled as pyspf spells it (split_email)."""
    if not sender:
        return helo
    _local, at, domain = sender.partition("@")
    return domain if at else sender


# RFC 1035 §2.3.4: no domain name is longer; a longer U-label string cannot become one.
MAX_DOMAIN_NAME = 255


def a_label(domain: str) -> str:
    """domain with its U-labels written as A-labels: "bücher.example" -> "xn--bcher-kva.example".

    RFC 7208 §4.3 looks domain names up as A-labels, and RFC 8616 §4 keeps that for SMTPUTF8
    senders and HELO names. pyspf hands names to DNS as it gets them and then looks for the
    answers under the name it asked for, so a U-label never finds the record published for it.
    The conversion is IDNA 2003 (Python's codec, as dnspython uses without the idna package). A
    name that is not a valid IDN comes back unchanged, and check_host() finds no record for it,
    as for any other malformed domain (§4.3: "none").
    """
    if domain.isascii() or len(domain) > MAX_DOMAIN_NAME:
        return domain
    try:
        return domain.encode("idna").decode("ascii")
    except UnicodeError:
        return domain


def a_label_mailbox(sender: str) -> str:
    """The sender with its domain as A-labels; a UTF-8 local-part stays as sent (RFC 8616 §4)."""
    local_part, at, domain = sender.partition("@")  # the first "@", as pyspf's split_email
    return f"{local_part}@{a_label(domain)}" if at else a_label(sender)


def checked_names(identity: Identity, sender: str, helo: str) -> tuple[str, str]:
    """The sender and HELO name check_host() sees: A-labels, no sender for the HELO identity."""
    if identity is Identity.HELO:
        return "", a_label(helo)
    return (a_label_mailbox(sender) if sender else ""), a_label(helo)
