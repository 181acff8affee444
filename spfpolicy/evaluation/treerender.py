"""An evaluation tree (evaluation.tracing) for a terminal, or as JSON for tools.

The text form is a tree drawn with box characters: each record with where it came from and its
DNS answer, each term with what it did and the running counts against RFC 7208 §4.6.4's limits
(10 DNS-querying terms, 2 void lookups), includes and redirects as subtrees. Colour (status
words only) is for a terminal; the JSON form holds the same content.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from spfpolicy.evaluation.tracing import DNS_TERMS, DnsNote, RecordNode, TermNode

LOOKUP_LIMIT = 10
_COLOURS = {
    "matched": "\033[32m",
    "no match": "\033[33m",
    "error": "\033[31m",
    "not reached": "\033[2m",
    "skipped": "\033[2m",
}
_RESET = "\033[0m"


def tree_document(node: RecordNode | None) -> dict[str, Any] | None:
    """The tree as plain data, for json.dumps."""
    return None if node is None else dataclasses.asdict(node)


def tree_text(node: RecordNode, *, void_limit: int = 2, colour: bool = False) -> list[str]:
    """The tree as lines of text, the record at the top."""
    return _Renderer(void_limit, colour).record(node, "")


class _Renderer:
    def __init__(self, void_limit: int, colour: bool) -> None:
        self.void_limit = void_limit
        self.colour = colour

    def paint(self, status: str) -> str:
        if not self.colour or status not in _COLOURS:
            return status
        return f"{_COLOURS[status]}{status}{_RESET}"

    def record(self, node: RecordNode, indent: str) -> list[str]:
        """The record's lines: the first one without indent (the caller places it)."""
        ending = f"error: {node.error}" if node.error else f"result {node.result or '-'}"
        via = "" if node.via == "top" else f"{node.via} "
        lines = [f"{via}{node.domain}: {ending}"]
        lines += [f"{indent}  {_dns(note)}" for note in node.dns]
        lines.append(f'{indent}  record: "{node.text}"' if node.text else f"{indent}  no record")
        if node.refused:
            lines.append(f"{indent}  (refused as a whole: no term is evaluated, RFC 7208 §4.6)")
        items: list[tuple[str, Any]] = [("term", term) for term in node.terms]
        if node.redirect is not None or node.redirect_dns:
            items.append(("redirect", node))
        for position, (kind, item) in enumerate(items):
            last = position == len(items) - 1
            branch, below = ("└─ ", "   ") if last else ("├─ ", "│  ")
            child = indent + "  " + below
            if kind == "term":
                lines += self.term(item, indent + "  " + branch, child)
            else:
                target = (
                    item.redirect.domain
                    if item.redirect is not None
                    else next((note.name for note in item.redirect_dns), "?")
                )
                lines.append(
                    f"{indent}  {branch}redirect={target}  (a DNS-querying term, counted when "
                    "the record was read)"
                )
                lines += [f"{child}{_dns(note)}" for note in item.redirect_dns]
                if item.redirect is not None:
                    nested = self.record(item.redirect, child)
                    lines += [child + nested[0], *nested[1:]]
        return lines

    def term(self, term: TermNode, first: str, indent: str) -> list[str]:
        text = f"{first}{term.text}  {self.paint(term.status)}"
        if term.detail:
            text += f": {term.detail}"
        if term.kind in DNS_TERMS and term.lookups is not None:
            text += f"  [DNS-querying terms {term.lookups}/{LOOKUP_LIMIT}"
            text += f", void lookups {term.voids}/{self.void_limit}]"
        lines = [text]
        lines += [f"{indent}{_dns(note)}" for note in term.dns]
        if term.child is not None:
            nested = self.record(term.child, indent)
            lines += [indent + nested[0], *nested[1:]]
        return lines


def _dns(note: DnsNote) -> str:
    where = "stale, upstream failing" if note.stale else "cached" if note.cached else "asked"
    ttl = "" if note.ttl is None else f", ttl {note.ttl}s"
    # A record's own TXT answer is shown as the record line below it.
    shown = "" if note.rdtype == "TXT" else "; ".join(note.records[:4])
    shown += "; ..." if shown and len(note.records) > 4 else ""
    answer = f" = {shown}" if shown else ""
    return f"dns {note.name} {note.rdtype}: {note.found}{answer} ({where}{ttl})"
