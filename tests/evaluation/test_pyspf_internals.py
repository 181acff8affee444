"""Guards for the pyspf internals spfpolicy leans on: each failure names what changed, and who.

spfpolicy subclasses spf.query (check1, dns), reads its counters and attributes (lookups,
void_lookups, i, s, o, h, mechanism, prob, perm_error), and answers its DNS through the module
global spf.DNSLookup. None of that is pyspf's documented API, so a pyspf upgrade must pass here.
Only pyspf is exercised: DNS comes from a data-only zone installed as spf.DNSLookup for one test.
"""

from __future__ import annotations

import ast
import importlib.metadata
import inspect
import re
import tomllib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import spf

pytestmark = pytest.mark.unit

PROJECT_DIR = Path(__file__).resolve().parents[2]


def _module_importing_pyspf() -> str:
    """The spfpolicy module that imports pyspf (DESIGN.md §4: one, under evaluation/)."""
    for path in sorted((PROJECT_DIR / "spfpolicy" / "evaluation").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import) and any(a.name == "spf" for a in node.names):
                return ".".join(path.relative_to(PROJECT_DIR).with_suffix("").parts)
    return "spfpolicy.evaluation"


USER = _module_importing_pyspf()


def changed(what: str, use: str) -> str:
    """The failure message: which pyspf internal changed and what of ours relies on it."""
    return f"pyspf's {what} changed; {USER} relies on it: {use}"


# DNS as pyspf's hook sees it: name -> type -> values, in the shapes pyspf works with
# (A/AAAA/PTR/CNAME: text; MX: (preference, exchange); TXT: a tuple of character-strings).
Zone = Mapping[str, Mapping[str, Sequence[Any]]]


@dataclass
class FakeDns:
    """A data-only DNSLookup: answers from zone, raises TempError for failing names, notes calls.

    An answer holds the CNAME of the name asked, if any, and the target's records, as a stub
    resolver's answer section does."""

    zone: Zone
    failing: frozenset[str] = frozenset()
    calls: list[tuple[tuple[Any, ...], dict[str, Any]]] = field(default_factory=list)

    def __call__(self, *args: Any, **kwargs: Any) -> Iterator[tuple[tuple[str, str], Any]]:
        self.calls.append((args, kwargs))
        name, qtype = args[0], args[1]
        if name in self.failing:
            raise spf.TempError(f"DNS timeout for {name} {qtype}")
        answer = []
        for target in self.zone.get(name, {}).get("CNAME", []):
            answer.append(((name, "CNAME"), target))
            name = target
        answer.extend(((name, qtype), value) for value in self.zone.get(name, {}).get(qtype, []))
        return iter(answer)  # the hook returns an iterator, as spfpolicy's does

    @property
    def questions(self) -> list[tuple[str, str]]:
        return [(args[0], args[1]) for args, _ in self.calls]


@pytest.fixture
def fake_dns(monkeypatch: pytest.MonkeyPatch) -> Callable[..., FakeDns]:
    """A factory: fake_dns(zone, failing=()) installs a FakeDns as spf.DNSLookup for this test."""

    def install(zone: Zone, failing: Sequence[str] = ()) -> FakeDns:
        fake = FakeDns(zone, frozenset(failing))
        monkeypatch.setattr(spf, "DNSLookup", fake)
        return fake

    return install


def new_query(
    cls: type[Any] = spf.query, *, i: str = "192.0.2.1", s: str = "user@example.test"
) -> Any:
    """A query built the way spfpolicy builds one."""
    return cls(
        i=i, s=s, h="mail.example.test", receiver="mx.example.test", strict=True, querytime=0
    )


def txt(record: str) -> dict[str, list[tuple[bytes, ...]]]:
    return {"TXT": [(record.encode(),)]}


# Module globals.


def test_dns_hook_is_a_module_global(fake_dns: Callable[..., FakeDns]) -> None:
    assert callable(getattr(spf, "DNSLookup", None)), changed(
        "module global DNSLookup", "install_dns_hook() sets spf.DNSLookup to route DNS to us"
    )
    fake = fake_dns({"example.test": txt("v=spf1 -all")})
    new_query().check()
    assert fake.calls, changed(
        "DNS hook", "query.dns() must look spf.DNSLookup up at call time, so setting it works"
    )


def test_limits_are_the_rfc_limits() -> None:
    use = "MAX_DNS_MECHANISMS and the default void lookup limit come from them (RFC 7208 §4.6.4)"
    assert getattr(spf, "MAX_LOOKUP", None) == 10, changed("MAX_LOOKUP", use)
    assert getattr(spf, "MAX_VOID_LOOKUPS", None) == 2, changed("MAX_VOID_LOOKUPS", use)


@pytest.mark.parametrize("name", ["TempError", "PermError"])
def test_error_classes(name: str) -> None:
    use = f"the DNS hook and query.dns() raise spf.{name}(message); check() reads .msg"
    error_class = getattr(spf, name, None)
    assert isinstance(error_class, type), changed(name, use)
    assert issubclass(error_class, Exception), changed(name, use)
    assert getattr(error_class("a message"), "msg", None) == "a message", changed(
        f"{name}.msg", use
    )


# The methods spfpolicy overrides or calls, and how it calls them.

METHOD_SIGNATURES = [
    # method, its signature, what of ours depends on it
    (
        "check1",
        "(self, spf, domain, recursion)",
        "PyspfQuery.check1(record, domain, recursion) overrides it and calls super().check1",
    ),
    (
        "dns",
        "(self, name, qtype, cnames=None, ignore_void=False)",
        "PyspfQuery.dns(name, qtype, cnames=None, ignore_void=False) overrides it and calls "
        "super().dns(name, qtype, cnames=..., ignore_void=True)",
    ),
    ("check", "(self, spf=None)", "query.check() runs check_host()"),
    (
        "validated_ptrs",
        "(self)",
        "PyspfQuery.validated_ptrs() overrides it so that a DNS error inside skips the name",
    ),
    (
        "validate_mechanism",
        "(self, mech)",
        "PyspfQuery.validate_mechanism(mech) overrides it, blanking self.d around super()'s "
        "call so that a self-include is not refused at parse time",
    ),
    ("cidrmatch", "(self, ipaddrs, n)", "evaluation.tracing watches cidrmatch(ipaddrs, n)"),
    ("dns_a", "(self, domainname, A='A')", "evaluation.tracing watches dns_a(domainname, A)"),
    ("dns_mx", "(self, domainname)", "evaluation.tracing watches dns_mx(domainname)"),
    ("dns_spf", "(self, domain)", "evaluation.tracing watches dns_spf(domain)"),
    ("expand_domain", "(self, arg)", "evaluation.termparser reads a modifier's domain-spec"),
    (
        "set_default_explanation",
        "(self, exp)",
        'set_default_explanation("") tells a domain\'s own exp= text apart',
    ),
]


@pytest.mark.parametrize(
    ("method", "signature", "use"), METHOD_SIGNATURES, ids=[m for m, _, _ in METHOD_SIGNATURES]
)
def test_method_signature(method: str, signature: str, use: str) -> None:
    function = getattr(spf.query, method, None)
    assert callable(function), changed(f"query.{method}", use)
    found = str(inspect.signature(function))
    assert found == signature, changed(f"query.{method}{signature}, now {found}", use)


def test_dns_hook_is_called_as_spfpolicy_hook_expects(fake_dns: Callable[..., FakeDns]) -> None:
    def spfpolicy_hook(
        name: str, qtype: str, strict: object = True, timeout: object = None
    ) -> None:
        """The signature of spfpolicy's DNSLookup replacement."""

    fake = fake_dns({"example.test": txt("v=spf1 a -all"), "mail.example.test": {}})
    new_query().check()
    for args, kwargs in fake.calls:
        try:
            inspect.signature(spfpolicy_hook).bind(*args, **kwargs)
        except TypeError as error:
            use = "its hook takes (name, qtype, strict=True, timeout=None)"
            pytest.fail(changed(f"call of DNSLookup{args, kwargs} ({error})", use))
        assert isinstance(args[0], str), changed("DNSLookup's name argument", "it is a str")
        assert args[1] in {"A", "AAAA", "MX", "PTR", "TXT", "SPF"}, changed("qtype", "a type name")


# The query's attributes, as constructed and after check().

CONSTRUCTED = [
    # sender, attribute, its value
    ("user@example.test", "i", "192.0.2.1"),  # the include: cache's key has the client in it
    ("user@example.test", "s", "user@example.test"),
    ("user@example.test", "o", "example.test"),
    ("user@example.test", "h", "mail.example.test"),
    ("user@example.test", "lookups", 0),
    ("user@example.test", "void_lookups", 0),
    ("", "s", "postmaster@mail.example.test"),  # the null sender (RFC 7208 §2.4)
    ("", "o", "mail.example.test"),
]


@pytest.mark.parametrize(
    ("sender", "attribute", "value"),
    CONSTRUCTED,
    ids=[f"{a}{'-null-sender' * (not s)}" for s, a, _ in CONSTRUCTED],
)
def test_attribute_as_constructed(sender: str, attribute: str, value: object) -> None:
    query = new_query(s=sender)
    use = "SpfOutcome's domain and sender, the include: cache key and the limits read it"
    assert getattr(query, attribute, "<missing>") == value, changed(f"query.{attribute}", use)


def test_attributes_after_check(fake_dns: Callable[..., FakeDns]) -> None:
    fake_dns({"example.test": txt("v=spf1 ip4:198.51.100.0/24 -all")})
    query = new_query()
    query.set_default_explanation("")
    result = query.check()
    assert result == ("fail", 550, ""), changed(
        "check()'s (result, code, explanation) or set_default_explanation",
        "it unpacks three values and tells an empty default explanation apart",
    )
    assert query.mechanism == "-all", changed("query.mechanism", "SpfOutcome.mechanism is it")
    assert query.perm_error is None, changed("query.perm_error", "it is reset after check()")


RESULTS = [
    # record (None: no SPF record), result name, problem (query.prob), explanation prefix
    ("v=spf1 +all", "pass", None, ""),
    ("v=spf1 -all", "fail", None, ""),
    ("v=spf1 ~all", "softfail", None, ""),
    ("v=spf1 ?all", "neutral", None, ""),
    (None, "none", None, ""),
    ("v=spf1 moo -all", "permerror", "Unknown mechanism found", "SPF Permanent Error: "),
    (
        "v=spf1 a:down.test -all",
        "temperror",
        "DNS timeout for down.test A",
        "SPF Temporary Error: ",
    ),
]


@pytest.mark.parametrize(
    ("record", "name", "problem", "prefix"), RESULTS, ids=[r[1] for r in RESULTS]
)
def test_result_names(
    fake_dns: Callable[..., FakeDns],
    record: str | None,
    name: str,
    problem: str | None,
    prefix: str,
) -> None:
    fake_dns({"example.test": txt(record) if record else {}}, failing=["down.test"])
    query = new_query()
    query.set_default_explanation("")
    result, _code, explanation = query.check()
    use = "_RESULTS maps pyspf's result names; problem= is query.prob, prefixes stripped"
    assert result == name, changed(f"result name for {record!r} (now {result!r})", use)
    assert explanation.startswith(prefix), changed(f"error text {explanation!r}", use)
    if problem is not None:
        assert problem in str(getattr(query, "prob", "")), changed("query.prob", use)


# Counters and limits (RFC 7208 §4.6.4).

COUNTING_ZONE: Zone = {
    "example.test": {
        "TXT": [(b"v=spf1 a mx include:b.test -all",)],
        "A": ["198.51.100.1"],
        "MX": [(10, "mx.example.test")],
    },
    "mx.example.test": {"A": ["198.51.100.2"]},
    "b.test": {"TXT": [(b"v=spf1 ", b"?all")]},  # two character-strings: pyspf joins them
}


def test_lookups_count_dns_querying_terms(fake_dns: Callable[..., FakeDns]) -> None:
    fake = fake_dns(COUNTING_ZONE)
    query = new_query()
    assert query.check()[0] == "fail"
    assert fake.questions == [
        ("example.test", "TXT"),
        ("example.test", "A"),
        ("example.test", "MX"),
        ("mx.example.test", "A"),
        ("b.test", "TXT"),
    ], changed("DNS questions for a mx include:", "one question per name and type, in order")
    assert query.lookups == 3, changed(
        f"query.lookups (now {query.lookups} for a, mx, include:)",
        "it counts DNS-querying terms, not DNS questions; the include: cache adds to it",
    )


@pytest.mark.parametrize(("terms", "result"), [(10, "neutral"), (11, "permerror")])
def test_lookup_limit(fake_dns: Callable[..., FakeDns], terms: int, result: str) -> None:
    names = [f"h{n}.example.test" for n in range(terms)]
    record = " ".join(["v=spf1", *(f"a:{name}" for name in names), "?all"])
    zone = {"example.test": txt(record)} | {name: {"A": ["198.51.100.9"]} for name in names}
    fake_dns(zone)
    query = new_query()
    found = query.check()[0]
    assert found == result, changed(
        f"limit of 10 DNS-querying terms ({terms} terms gave {found})",
        "the include: cache reuses results within MAX_LOOKUP only",
    )


@pytest.mark.parametrize(("voids", "result"), [(2, "fail"), (3, "permerror")])
def test_void_lookup_limit(fake_dns: Callable[..., FakeDns], voids: int, result: str) -> None:
    record = " ".join(["v=spf1", *(f"a:void{n}.test" for n in range(voids)), "-all"])
    fake_dns({"example.test": txt(record)})
    query = new_query()
    use = "PyspfQuery.dns counts void lookups itself, against its own limit"
    assert query.check()[0] == result, changed(f"void lookup limit with {voids} voids", use)
    assert query.void_lookups == voids, changed("query.void_lookups", use)
    if result == "permerror":
        assert query.prob == "Void lookup limit of 2 exceeded", changed("query.prob", use)


def test_ignore_void_does_not_count(fake_dns: Callable[..., FakeDns]) -> None:
    fake_dns({})
    query = new_query()
    use = "PyspfQuery.dns calls super().dns(..., ignore_void=True) and counts void lookups itself"
    assert query.dns("nothing.test", "A", ignore_void=True) == [], changed("dns()", use)
    assert query.void_lookups == 0, changed("dns(ignore_void=True)", use)
    assert query.dns("nothing.test", "A") == [], changed("dns()", use)
    assert query.void_lookups == 1, changed("dns()'s void lookup count", use)


# The overrides: what pyspf calls them with, and what it does with what they raise.


class RecordingQuery(spf.query):  # type: ignore[misc]
    """spf.query overridden the way spfpolicy overrides it, noting each call."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.check1_calls: list[tuple[Any, ...]] = []
        self.dns_calls: list[tuple[str, str, Any, bool]] = []
        super().__init__(*args, **kwargs)

    def check1(self, record: str, domain: str, recursion: int) -> Any:
        self.check1_calls.append((record, domain, recursion))
        return super().check1(record, domain, recursion)

    def dns(
        self, name: str, qtype: str, cnames: dict[str, str] | None = None, ignore_void: bool = False
    ) -> Any:
        self.dns_calls.append((name, qtype, dict(cnames) if cnames else None, ignore_void))
        if name == "refused.example.test":
            raise spf.PermError("Void lookup limit of 1 exceeded")
        return super().dns(name, qtype, cnames=cnames, ignore_void=ignore_void)


SUBCLASS_ZONE: Zone = {
    "example.test": txt("v=spf1 include:b.test a:alias.example.test -all"),
    "b.test": txt("v=spf1 ?all"),
    "alias.example.test": {"CNAME": ["host.example.test"]},
    "host.example.test": {"A": ["192.0.2.1"]},
}


def test_check1_is_called_with_recursion_for_an_include(fake_dns: Callable[..., FakeDns]) -> None:
    fake_dns(SUBCLASS_ZONE)
    query = new_query(RecordingQuery)
    assert query.check()[0] == "pass"
    assert query.check1_calls == [
        ("v=spf1 include:b.test a:alias.example.test -all", "example.test", 0),
        ("v=spf1 ?all", "b.test", 1),
    ], changed(
        "calls of check1", "PyspfQuery.check1 caches an include: target's result when recursion > 0"
    )


def test_dns_override_sees_every_lookup(fake_dns: Callable[..., FakeDns]) -> None:
    fake = fake_dns(SUBCLASS_ZONE)
    query = new_query(RecordingQuery)
    query.check()
    asked = {(name, qtype) for name, qtype, _, _ in query.dns_calls}
    use = "PyspfQuery.dns counts void lookups, so every question must go through self.dns"
    assert set(fake.questions) <= asked, changed("the path of DNS questions", use)
    assert ("host.example.test", "A", {"alias.example.test": "host.example.test"}, False) in (
        query.dns_calls
    ), changed(
        "CNAME following",
        "PyspfQuery.dns counts a lookup once: pyspf follows a CNAME through self.dns(cnames=...)",
    )


def test_error_raised_in_dns_override_is_a_result(fake_dns: Callable[..., FakeDns]) -> None:
    fake_dns({"example.test": txt("v=spf1 a:refused.example.test -all")})
    query = new_query(RecordingQuery)
    use = "PyspfQuery.dns raises spf.PermError past its void lookup limit"
    assert query.check() == (
        "permerror",
        550,
        "SPF Permanent Error: Void lookup limit of 1 exceeded",
    ), changed("check()'s handling of PermError", use)
    assert query.prob == "Void lookup limit of 1 exceeded", changed("query.prob", use)


# The shapes of DNS values pyspf expects back from the hook.

ANSWER_SHAPES = [
    # id, client, record of example.test, the rest of the zone
    ("A-text", "192.0.2.1", "v=spf1 a -all", {"example.test": {"A": ["192.0.2.1"]}}),
    ("AAAA-text", "2001:db8::1", "v=spf1 a -all", {"example.test": {"AAAA": ["2001:db8::1"]}}),
    (
        "MX-preference-exchange",
        "192.0.2.1",
        "v=spf1 mx -all",
        {
            "example.test": {"MX": [(10, "mx.example.test")]},
            "mx.example.test": {"A": ["192.0.2.1"]},
        },
    ),
    (
        "PTR-text",
        "192.0.2.1",
        "v=spf1 ptr -all",
        {
            "1.2.0.192.in-addr.arpa": {"PTR": ["mail.example.test"]},
            "mail.example.test": {"A": ["192.0.2.1"]},
        },
    ),
    (
        "CNAME-text",
        "192.0.2.1",
        "v=spf1 a:alias.example.test -all",
        {
            "alias.example.test": {"CNAME": ["host.example.test"]},
            "host.example.test": {"A": ["192.0.2.1"]},
        },
    ),
    (
        "TXT-character-strings",
        "192.0.2.1",
        "v=spf1 include:b.test -all",
        {"b.test": {"TXT": [(b"v=spf1 ip4:192.0.2.0/24", b" -all")]}},
    ),
]


@pytest.mark.parametrize(
    ("client", "record", "zone"), [s[1:] for s in ANSWER_SHAPES], ids=[s[0] for s in ANSWER_SHAPES]
)
def test_answer_shapes(
    fake_dns: Callable[..., FakeDns], client: str, record: str, zone: Zone
) -> None:
    fake_dns({**zone, "example.test": {**zone.get("example.test", {}), **txt(record)}})
    query = new_query(i=client)
    result = query.check()
    assert result[0] == "pass", changed(
        f"reading of DNS values for {record!r} (got {result})",
        "resolver.answers.RecordValue gives A/AAAA/PTR/CNAME as text, MX as (preference, "
        "exchange), TXT as a tuple of bytes",
    )


# The installed pyspf against the bounds pyproject.toml allows.

Version = tuple[int, ...]
_SPECIFIER = re.compile(r"\s*(~=|==|!=|<=|>=|<|>)\s*(\d+(?:\.\d+)*)\s*")


def parse_version(text: str) -> Version:
    """The leading release numbers of a version: "2.0.14" -> (2, 0, 14)."""
    found = re.match(r"\d+(?:\.\d+)*", text.strip())
    assert found, f"not a version: {text!r}"
    return tuple(int(part) for part in found.group().split("."))


def _padded(a: Version, b: Version) -> tuple[Version, Version]:
    width = max(len(a), len(b))
    return a + (0,) * (width - len(a)), b + (0,) * (width - len(b))


def satisfies(version: Version, specifiers: str) -> bool:
    """Whether version meets every comma-separated specifier (">=2.0.14,<2.1")."""
    for specifier in filter(str.strip, specifiers.split(",")):
        found = _SPECIFIER.fullmatch(specifier)
        assert found, f"unsupported version specifier {specifier!r}"
        operator, bound_text = found.groups()
        bound = parse_version(bound_text)
        mine, theirs = _padded(version, bound)
        if operator == "~=":  # compatible release: >= bound, == bound without its last part
            ok = mine >= theirs and version[: len(bound) - 1] == bound[:-1]
        else:
            ok = {
                "==": mine == theirs,
                "!=": mine != theirs,
                "<=": mine <= theirs,
                ">=": mine >= theirs,
                "<": mine < theirs,
                ">": mine > theirs,
            }[operator]
        if not ok:
            return False
    return True


def pyspf_specifiers() -> str:
    """What pyproject.toml's dependencies allow of pyspf: ">=2.0.14,<2.1"."""
    project = tomllib.loads((PROJECT_DIR / "pyproject.toml").read_text(encoding="utf-8"))
    for dependency in project["project"]["dependencies"]:
        found = re.match(r"\s*([A-Za-z0-9._-]+)\s*(?:\[[^\]]*\])?\s*([^;]*)", dependency)
        if found and re.sub(r"[-_.]+", "-", found.group(1)).lower() == "pyspf":
            return found.group(2).strip()
    pytest.fail("pyproject.toml's dependencies do not name pyspf")


def test_installed_pyspf_is_within_pyproject_bounds() -> None:
    installed = importlib.metadata.version("pyspf")
    allowed = pyspf_specifiers()
    assert satisfies(parse_version(installed), allowed), (
        f"pyspf {installed} is installed, but pyproject.toml allows {allowed}: "
        f"{USER} leans on pyspf internals checked here for the allowed versions only"
    )


@pytest.mark.parametrize(
    ("version", "specifiers", "expected"),
    [
        ("2.0.14", ">=2.0.14,<2.1", True),
        ("2.0.13", ">=2.0.14,<2.1", False),
        ("2.1", ">=2.0.14,<2.1", False),
        ("2.1.0", ">=2.0.14, <2.1", False),
        ("2.0.99", ">=2.0.14,<2.1", True),
        ("2.0.14", ">=2.0.14", True),
        ("2.0.14", "", True),
        ("2.0.15", "~=2.0.14", True),
        ("2.1.0", "~=2.0.14", False),
        ("2.0.14", "!=2.0.14", False),
    ],
)
def test_version_bounds(version: str, specifiers: str, expected: bool) -> None:
    assert satisfies(parse_version(version), specifiers) is expected


def test_the_trivial_recursion_refusal_reads_self_d() -> None:
    """PyspfQuery.validate_mechanism relies on pyspf refusing include:<self.d> by comparing with
    self.d: with self.d set to the target it refuses, with it blank it parses the term."""
    query = spf.query(i="192.0.2.1", s="user@self.test", h="h.test", strict=True, querytime=0)
    query.d = "self.test"
    with pytest.raises(spf.PermError, match="trivial recursion"):
        query.validate_mechanism("include:self.test")
    query.d = ""
    parsed = query.validate_mechanism("include:self.test")
    assert parsed[1:3] == ("include", "self.test"), changed(
        f"validate_mechanism gives {parsed}", "spfpolicy/evaluation/query.py PyspfQuery"
    )
