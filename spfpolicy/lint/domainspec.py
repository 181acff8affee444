"""A domain-spec and its macros (RFC 7208 §7.1), checked with the column of each problem.

Pure functions on text. Columns are 1-based positions in the whole record, so that a message
can point at the character an administrator has to change.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from spfpolicy.lint.rules import Code

# RFC 7208 §7.1: the letters a term's macros may use; c, r and t belong to explanations alone.
MACRO_LETTERS = frozenset("slodiphv")
EXPLANATION_ONLY_LETTERS = frozenset("crt")
DELIMITERS = frozenset(".-+,/_=")
ESCAPES = frozenset("%_-")  # %% %_ %-
# RFC 1035 §2.3.4 and §3.1: label and name lengths a lookup can have (253: no final dot).
MAX_LABEL = 63
MAX_NAME = 253

# toplabel = ( *alphanum ALPHA *alphanum ) / ( 1*alphanum "-" *( alphanum / "-" ) alphanum )
_TOPLABEL = re.compile(
    r"[a-z0-9]*[a-z][a-z0-9]*|[a-z0-9]+-[a-z0-9-]*[a-z0-9]", re.IGNORECASE | re.ASCII
)
_MACRO_BODY = re.compile(r"(?P<letter>.)(?P<digits>[0-9]*)(?P<reverse>[rR]?)(?P<delimiters>[^}]*)")


@dataclass(frozen=True, slots=True)
class Problem:
    """One syntax problem in a record: what is wrong, and the column where it is."""

    code: Code
    column: int
    message: str


def macro_problems(text: str, column: int) -> list[Problem]:
    """The problems of a macro-string that starts at column (§7.1: macro-expand, macro-literal)."""
    problems: list[Problem] = []
    index = 0
    while index < len(text):
        char = text[index]
        if char != "%":
            index += 1
            continue
        here = column + index
        following = text[index + 1 : index + 2]
        if following in ESCAPES and following:
            index += 2
            continue
        if following != "{":
            shown = f'"%{following}"' if following else 'a "%" at the end'
            problems.append(
                Problem(Code.BAD_MACRO, here, f'{shown}: a "%" starts %{{...}}, %%, %_ or %-')
            )
            index += 1
            continue
        end = text.find("}", index)
        if end < 0:
            problems.append(Problem(Code.BAD_MACRO, here, 'a macro "%{" without its "}"'))
            return problems
        problem = _macro_expand_problem(text[index + 2 : end], here)
        if problem is not None:
            problems.append(problem)
        index = end + 1
    return problems


def _macro_expand_problem(body: str, column: int) -> Problem | None:
    """What is wrong with one %{body}, or None (§7.1: letter, transformers, delimiters)."""
    shown = f'"%{{{body}}}"'
    match = _MACRO_BODY.fullmatch(body)
    if match is None:
        return Problem(Code.BAD_MACRO, column, f"{shown}: a macro needs a letter")
    letter = match["letter"].lower()
    if letter in EXPLANATION_ONLY_LETTERS:
        return Problem(
            Code.BAD_MACRO, column, f"{shown}: %{{{letter}}} is allowed in explanation text only"
        )
    if letter not in MACRO_LETTERS:
        return Problem(Code.BAD_MACRO, column, f"{shown}: {letter!r} is no macro letter")
    if match["digits"] and int(match["digits"]) == 0:
        return Problem(Code.BAD_MACRO, column, f"{shown}: the number of parts must not be 0")
    wrong = sorted(set(match["delimiters"]) - DELIMITERS)
    if wrong:
        return Problem(
            Code.BAD_MACRO, column, f"{shown}: {''.join(wrong)!r} is no delimiter (. - + , / _ =)"
        )
    return None


def has_macro(text: str) -> bool:
    """Whether a domain-spec is expanded per message: its target cannot be looked up ahead."""
    return "%" in text


def domain_spec_problems(text: str, column: int) -> list[Problem]:
    """The problems of a domain-spec that starts at column (§7.1), macros included.

    Without macros the name must also be one DNS can look up: no empty label, labels of at
    most 63 octets, at most 253 in all.
    """
    if not text:
        return [Problem(Code.BAD_DOMAIN_SPEC, column, "the domain is empty")]
    problems = [
        Problem(Code.BAD_CHARACTER, column + index, f"{char!r} is not a visible ASCII character")
        for index, char in enumerate(text)
        if not "\x21" <= char <= "\x7e"
    ]
    if problems:
        return problems
    problems = macro_problems(text, column)
    if problems:
        return problems
    if text.endswith("}") and has_macro(text):
        return []  # domain-end = macro-expand
    return _name_problems(text, column)


def _name_problems(text: str, column: int) -> list[Problem]:
    """A domain-end of "." toplabel, and, without macros, the lengths DNS allows."""
    name = text.removesuffix(".")
    _, dot, toplabel = name.rpartition(".")
    if not dot or not _TOPLABEL.fullmatch(toplabel):
        hint = ""
        if re.fullmatch(r"[0-9.]+", name):
            hint = ": an address goes in ip4:, not in a domain"
        elif not dot:
            hint = ": a fully qualified name has a dot"
        return [Problem(Code.BAD_DOMAIN_SPEC, column, f"{text!r} is not a domain name{hint}")]
    if has_macro(name):
        return []
    labels = name.split(".")
    offset = 0
    for label in labels:
        if not label:
            return [Problem(Code.BAD_DOMAIN_SPEC, column + offset, f"{text!r} has an empty label")]
        if len(label) > MAX_LABEL:
            return [
                Problem(
                    Code.BAD_DOMAIN_SPEC,
                    column + offset,
                    f"a label of {len(label)} characters (at most {MAX_LABEL})",
                )
            ]
        offset += len(label) + 1
    if len(name) > MAX_NAME:
        return [
            Problem(
                Code.BAD_DOMAIN_SPEC,
                column,
                f"the name has {len(name)} characters (at most {MAX_NAME})",
            )
        ]
    return []
