"""pyspf's verdict on one record by itself: the permerror it gives before DNS can matter.

`spfpolicy lint` checks records with a parser of its own; this is its second opinion, from
the evaluator the daemon uses. The record is evaluated with every other DNS question failing:
pyspf checks the syntax of all terms before it looks anything up (RFC 7208 §4.6), so a
permerror here comes from the record itself, and any lookup ends the evaluation as temperror.
"""

from __future__ import annotations

from spfpolicy.evaluation.query import LookupContext, QuerySettings, check_host, install_dns_hook
from spfpolicy.evaluation.trace import LookupTrace
from spfpolicy.model import Identity, SpfResult
from spfpolicy.resolver.answers import DnsAnswer, DnsError, DnsFailure, DnsRecord

# The record is published here for the evaluation, not at its own domain: an include: or
# redirect= of its own domain then fails like any other lookup, instead of looping to pyspf's
# lookup limit, which is lint's to report as a loop, not a syntax error.
_DOMAIN = "record.lint.invalid"
# The client evaluated (RFC 5737's documentation range): any address does, since the verdict
# sought is reached before any term is tested.
_CLIENT = "192.0.2.1"


class _OnlyThisRecord:
    """A resolver that knows one TXT record and fails every other question."""

    def __init__(self, record: bytes) -> None:
        self.record = record

    def query(self, name: str, rdtype: str, deadline: float) -> DnsAnswer:
        """The record for _DOMAIN's TXT; DnsError (timeout) for anything else."""
        if rdtype == "TXT" and name.rstrip(".").lower() == _DOMAIN:
            return DnsAnswer((DnsRecord(_DOMAIN, "TXT", (self.record,)),), 0.0)
        raise DnsError(DnsFailure.TIMEOUT, f"{name} {rdtype}: not asked ahead by lint")


def pyspf_permerror(record: bytes) -> str | None:
    """pyspf's problem with record (its octets), or None when it finds none.

    None also when the evaluation needs DNS before it can tell (a %{p} macro): that is
    temperror here, not a verdict on the record.
    """
    install_dns_hook()
    context = LookupContext(_OnlyThisRecord(record), float("inf"), LookupTrace())
    outcome = check_host(
        context,
        Identity.MAILFROM,
        client=_CLIENT,
        sender=f"postmaster@{_DOMAIN}",
        helo=_DOMAIN,
        settings=QuerySettings(receiver=_DOMAIN),
    )
    if outcome.result is not SpfResult.PERMERROR:
        return None
    return outcome.problem or "permerror"
