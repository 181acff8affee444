"""The package layout's rules (DESIGN.md §4), checked by reading every module's source with ast.

Arrows mean "may import"; imports within a layer are always fine and nothing imports upward.
The third-party libraries with a single home (pyspf, dnspython, prometheus_client) stay in it.
Nothing of the package is imported here: the rules hold even for a module that cannot load.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

PACKAGE = "spfpolicy"
PACKAGE_DIR = Path(__file__).resolve().parent.parent / PACKAGE

ROOT = PACKAGE  # the package root: it holds only __version__, and anyone but model may import it
TOP_LEVEL_LAYERS = frozenset({"cli", "daemon", "model", "__main__"})
FOLDER_LAYERS = frozenset(
    {"config", "wire", "resolver", "evaluation", "decision", "service", "ops", "migrate", "lint"}
)
EVERYTHING = TOP_LEVEL_LAYERS | FOLDER_LAYERS

# Which layers each layer may import besides its own (and the package root).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "__main__": EVERYTHING,
    "cli": EVERYTHING - {"__main__"},
    "daemon": EVERYTHING - {"cli", "__main__"},
    "service": frozenset({"evaluation", "decision", "resolver", "config", "model"}),
    "evaluation": frozenset({"resolver", "model"}),
    "decision": frozenset({"config", "model"}),
    "wire": frozenset({"model"}),
    "ops": frozenset({"config", "model"}),
    "migrate": frozenset({"config", "model"}),
    "lint": frozenset({"evaluation", "resolver", "config", "model"}),
    "config": frozenset({"model"}),
    "resolver": frozenset({"model"}),
    "model": frozenset(),
    ROOT: frozenset(),
}

# Where a layer may see only part of another: (importer, imported) -> the one module it may use.
NARROW_IMPORTS = {
    ("service", "resolver"): f"{PACKAGE}.resolver.answers",
    ("lint", "resolver"): f"{PACKAGE}.resolver.answers",
}

# Imported by nobody but cli, and there only inside a function body (DESIGN.md §4).
LAZY_ONLY = "migrate"
LAZY_IMPORTER = "cli"
# Commands other than the daemon's: imported by nobody but cli (DESIGN.md §6: lint).
CLI_ONLY = frozenset({"lint"})

# Third-party top-level modules with a single home: module -> the only layer that imports it.
THIRD_PARTY_HOMES = {"spf": "evaluation", "dns": "resolver", "prometheus_client": "ops"}

# "Keep modules under ~300 lines" (STYLE.md 1): the "~" allows a little slack, hence 330.
MAX_MODULE_LINES = 330


@dataclass(frozen=True)
class Import:
    """One imported module, resolved to its absolute dotted name."""

    target: str  # "spfpolicy.resolver.cache", "dns.resolver", "spf"
    line: int
    lazy: bool  # inside a function body, so it runs only when that function is called


@dataclass(frozen=True)
class Violation:
    """One import that breaks a rule."""

    line: int
    target: str
    rule: str


def module_name(path: Path) -> str:
    """spfpolicy/wire/protocol.py -> spfpolicy.wire.protocol; spfpolicy/wire/__init__.py ->
    spfpolicy.wire."""
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> str | None:
    """The layer a module of ours belongs to, or None when DESIGN.md §4 has no place for it."""
    parts = module.split(".")
    if len(parts) == 1:
        return ROOT
    if parts[1] in EVERYTHING:
        return parts[1]
    return None


def _walk(node: ast.AST, lazy: bool = False) -> Iterator[tuple[ast.AST, bool]]:
    """Every node below node, with whether it sits inside a function body."""
    for child in ast.iter_child_nodes(node):
        yield child, lazy
        inside = lazy or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda)
        yield from _walk(child, inside)


def _base_of_from(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module a `from X import ...` names, relative imports resolved."""
    if not node.level:
        return node.module or ""
    package = module.split(".") if is_package else module.split(".")[:-1]
    anchor = package[: len(package) - (node.level - 1)]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def bound_names(source: str) -> frozenset[str]:
    """The names a module binds at its top level (also under if/try/with), not in functions."""
    names: set[str] = set()
    pending = list(ast.parse(source).body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.AugAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name))
        else:  # if, try, with, for: their bodies run at import time too
            pending.extend(c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt))
    return frozenset(names)


def collect_imports(
    source: str, module: str, *, is_package: bool, ours: Mapping[str, frozenset[str]]
) -> list[Import]:
    """Every module the source imports, at any depth.

    ours maps each module of the package to the names it binds (bound_names). `from P import n`
    imports the module P.n, unless P is a module of ours that binds n (n is then a name in P)
    or a module not of ours (dns, typing: P is all that matters).
    """
    imports: list[Import] = []
    for node, lazy in _walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imports.extend(Import(alias.name, node.lineno, lazy) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _base_of_from(node, module, is_package)
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                is_name = base not in ours or alias.name in ours[base]
                is_module = submodule in ours or (_is_within(base, PACKAGE) and not is_name)
                imports.append(Import(submodule if is_module else base, node.lineno, lazy))
    return imports


def _is_within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def layer_violations(importer: str, imports: Sequence[Import]) -> list[Violation]:
    """The imports of spfpolicy modules that break the layer rules, for a module of ours."""
    own = layer_of(importer)
    found = []
    for imported in imports:
        if not _is_within(imported.target, PACKAGE):
            continue
        rule = _broken_layer_rule(own, imported)
        if rule is not None:
            found.append(Violation(imported.line, imported.target, rule))
    return found


def _broken_layer_rule(own: str | None, imported: Import) -> str | None:
    target = layer_of(imported.target)
    if target is None:
        return f"{imported.target} belongs to no layer of DESIGN.md §4"
    if own is None or target == own:
        return None  # a module in no layer is reported once, by test_module_belongs_to_a_layer
    if target == LAZY_ONLY:
        return _lazy_only_rule(own, imported)
    if target in CLI_ONLY and own != LAZY_IMPORTER:
        return f"{target} is imported by nobody but {LAZY_IMPORTER}"
    if target == ROOT:
        return (
            "model imports nothing of ours, not even the package root" if own == "model" else None
        )
    return _arrow_rule(own, target, imported.target)


def _lazy_only_rule(own: str, imported: Import) -> str | None:
    if own != LAZY_IMPORTER:
        return f"{LAZY_ONLY} is imported by nobody but {LAZY_IMPORTER}"
    if not imported.lazy:
        return f"{LAZY_IMPORTER} imports {LAZY_ONLY} only lazily, inside a function body"
    return None


def _arrow_rule(own: str, target: str, module: str) -> str | None:
    allowed = MAY_IMPORT[own]
    if not allowed:
        return f"{'the package root' if own == ROOT else own} imports nothing of ours"
    if target not in allowed:
        return f"{own} may import only {', '.join(sorted(allowed))} (and itself), not {target}"
    narrow = NARROW_IMPORTS.get((own, target))
    if narrow is not None and not _is_within(module, narrow):
        return f"{own} may import of {target} only {narrow} (the protocol, answers and errors)"
    return None


def third_party_violations(importer: str, imports: Sequence[Import]) -> list[Violation]:
    """The imports of pyspf, dnspython or prometheus_client outside their one home layer."""
    own = layer_of(importer)
    found = []
    for imported in imports:
        top = imported.target.split(".")[0]
        home = THIRD_PARTY_HOMES.get(top)
        if home is not None and own != home:
            rule = f"only {PACKAGE}/{home}/ imports {top}"
            found.append(Violation(imported.line, imported.target, rule))
    return found


# The package as it is on disk.

MODULE_PATHS = sorted(path for path in PACKAGE_DIR.rglob("*.py") if "__pycache__" not in path.parts)
OURS = {module_name(path): bound_names(path.read_text(encoding="utf-8")) for path in MODULE_PATHS}


def _module_id(path: Path) -> str:
    return path.relative_to(PACKAGE_DIR).as_posix()


def _imports_of(path: Path) -> list[Import]:
    return collect_imports(
        path.read_text(encoding="utf-8"),
        module_name(path),
        is_package=path.name == "__init__.py",
        ours=OURS,
    )


def _report(path: Path, violations: Sequence[Violation]) -> None:
    if violations:
        shown = path.relative_to(PACKAGE_DIR.parent).as_posix()
        lines = [f"{shown}:{v.line}: imports {v.target}: {v.rule}" for v in violations]
        pytest.fail("\n".join(lines), pytrace=False)


modules = pytest.mark.parametrize("path", MODULE_PATHS, ids=_module_id)


def test_package_is_found() -> None:
    assert module_name(PACKAGE_DIR / "__init__.py") in OURS, f"nothing in {PACKAGE_DIR}"
    assert len(MODULE_PATHS) > 10


@modules
def test_module_belongs_to_a_layer(path: Path) -> None:
    module = module_name(path)
    if layer_of(module) is None:
        pytest.fail(
            f"{path.relative_to(PACKAGE_DIR.parent).as_posix()}: {module} belongs to no layer "
            "of DESIGN.md §4 (a top-level module cli, daemon, model, __main__, or a folder "
            f"{', '.join(sorted(FOLDER_LAYERS))})",
            pytrace=False,
        )


@modules
def test_imports_follow_the_layers(path: Path) -> None:
    _report(path, layer_violations(module_name(path), _imports_of(path)))


@modules
def test_third_party_stays_in_its_layer(path: Path) -> None:
    _report(path, third_party_violations(module_name(path), _imports_of(path)))


@modules
def test_docstring_says_what_the_module_is_for(path: Path) -> None:
    docstring = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8")))
    first_line = (
        docstring.strip().splitlines()[0].strip() if docstring and docstring.strip() else ""
    )
    assert first_line, f"{_module_id(path)}: no module docstring saying what it is for"


@modules
def test_module_stays_short(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_MODULE_LINES, (
        f"{_module_id(path)}: {lines} lines; modules stay under ~300 (limit {MAX_MODULE_LINES})"
    )


# The checker itself, on synthetic imports: it must report what breaks a rule, and only that.

LAYER_CASES = [
    # importer, imported module, lazy, a fragment of the rule reported (None: allowed)
    ("spfpolicy.wire.eventloop", "spfpolicy.service.x", False, "wire may import only model"),
    ("spfpolicy.decision.policy", "spfpolicy.resolver.cache", False, "decision may import only"),
    (
        "spfpolicy.service.policyservice",
        "spfpolicy.resolver.cache",
        False,
        "only spfpolicy.resolver.answers",
    ),
    (
        "spfpolicy.service.policyservice",
        "spfpolicy.resolver",
        False,
        "only spfpolicy.resolver.answers",
    ),
    ("spfpolicy.ops.metrics", "spfpolicy.migrate.translate", False, "imported by nobody but cli"),
    ("spfpolicy.daemon", "spfpolicy.migrate.translate", True, "imported by nobody but cli"),
    ("spfpolicy.cli", "spfpolicy.migrate.translate", False, "only lazily"),
    ("spfpolicy.daemon", "spfpolicy.lint.command", True, "imported by nobody but cli"),
    ("spfpolicy.service.memo", "spfpolicy.lint.record", False, "imported by nobody but cli"),
    ("spfpolicy.lint.fetch", "spfpolicy.resolver.cache", False, "only spfpolicy.resolver.answers"),
    ("spfpolicy.lint.tree", "spfpolicy.decision.actions", False, "lint may import only"),
    ("spfpolicy.lint.linter", "spfpolicy.evaluation.recordcheck", False, None),
    ("spfpolicy.lint.command", "spfpolicy.config.settings", False, None),
    ("spfpolicy.cli", "spfpolicy.lint.command", False, None),
    ("spfpolicy.model", "spfpolicy", False, "not even the package root"),
    ("spfpolicy.model", "spfpolicy.config.settings", False, "model imports nothing of ours"),
    ("spfpolicy.resolver.cache", "spfpolicy.evaluation.caches", False, "resolver may import only"),
    ("spfpolicy.config.settings", "spfpolicy.decision.policy", False, "config may import only"),
    ("spfpolicy.evaluation.evaluator", "spfpolicy.cacheonly", False, "belongs to no layer"),
    ("spfpolicy.daemon", "spfpolicy.cli", False, "daemon may import only"),
    ("spfpolicy", "spfpolicy.model", False, "the package root imports nothing of ours"),
    ("spfpolicy.service.policyservice", "spfpolicy.resolver.answers", False, None),
    ("spfpolicy.cli", "spfpolicy.migrate.translate", True, None),
    ("spfpolicy.migrate.translate", "spfpolicy.migrate.lists", False, None),
    ("spfpolicy.evaluation.evaluator", "spfpolicy.resolver.cache", False, None),
    ("spfpolicy.wire.server", "spfpolicy.wire.eventloop", False, None),
    ("spfpolicy.wire.server", "spfpolicy", False, None),
    ("spfpolicy.ops.metrics", "spfpolicy.config.settings", False, None),
    ("spfpolicy.cli", "spfpolicy.daemon", False, None),
    ("spfpolicy.__main__", "spfpolicy.cli", False, None),
    ("spfpolicy.model", "dataclasses", False, None),
]


@pytest.mark.parametrize(
    ("importer", "target", "lazy", "rule"),
    LAYER_CASES,
    ids=[f"{i.removeprefix('spfpolicy.')}->{t}{' lazily' * z}" for i, t, z, _ in LAYER_CASES],
)
def test_layer_checker(importer: str, target: str, lazy: bool, rule: str | None) -> None:
    violations = layer_violations(importer, [Import(target, 7, lazy)])
    if rule is None:
        assert violations == []
    else:
        assert [(v.line, v.target) for v in violations] == [(7, target)]
        assert rule in violations[0].rule


THIRD_PARTY_CASES = [
    ("spfpolicy.service.policyservice", "spf", "only spfpolicy/evaluation/ imports spf"),
    ("spfpolicy.evaluation.evaluator", "dns.resolver", "only spfpolicy/resolver/ imports dns"),
    ("spfpolicy.cli", "prometheus_client", "only spfpolicy/ops/ imports prometheus_client"),
    ("spfpolicy.evaluation.evaluator", "spf", None),
    ("spfpolicy.resolver.stub", "dns.rdatatype", None),
    ("spfpolicy.ops.metrics", "prometheus_client.core", None),
    ("spfpolicy.wire.protocol", "spfpolicy.model", None),  # spfpolicy is not spf
]


@pytest.mark.parametrize(
    ("importer", "target", "rule"),
    THIRD_PARTY_CASES,
    ids=[f"{i.removeprefix('spfpolicy.')}->{t}" for i, t, _ in THIRD_PARTY_CASES],
)
def test_third_party_checker(importer: str, target: str, rule: str | None) -> None:
    violations = third_party_violations(importer, [Import(target, 3, lazy=False)])
    assert [v.rule for v in violations] == ([] if rule is None else [rule])


SYNTHETIC_SOURCE = '''\
"""A module of the wire layer."""
import spfpolicy.service.x
from spfpolicy import __version__, model, cacheonly
from spfpolicy.resolver import answers, Resolver
from . import protocol
from ..decision.policy import Receiver
import dns.resolver as resolver
from dns import rdatatype


def serve():
    from spfpolicy.migrate.translate import migrate
    return migrate
'''

# The synthetic package: each module with the names it binds.
SYNTHETIC_PACKAGE = {
    "spfpolicy": frozenset({"__version__"}),
    "spfpolicy.model": frozenset({"SpfResult"}),
    "spfpolicy.resolver": frozenset({"Resolver"}),
    "spfpolicy.resolver.answers": frozenset({"Resolver"}),
    "spfpolicy.wire": frozenset(),
    "spfpolicy.wire.protocol": frozenset({"parse"}),
    "spfpolicy.decision.policy": frozenset({"Receiver"}),
}


def test_collect_imports() -> None:
    imports = collect_imports(
        SYNTHETIC_SOURCE, "spfpolicy.wire.server", is_package=False, ours=SYNTHETIC_PACKAGE
    )
    assert imports == [
        Import("spfpolicy.service.x", 2, lazy=False),
        Import("spfpolicy", 3, lazy=False),  # __version__ is a name in the package root
        Import("spfpolicy.model", 3, lazy=False),
        Import("spfpolicy.cacheonly", 3, lazy=False),  # not a name of the root: a module
        Import("spfpolicy.resolver.answers", 4, lazy=False),
        Import("spfpolicy.resolver", 4, lazy=False),  # a name the resolver package re-exports
        Import("spfpolicy.wire.protocol", 5, lazy=False),
        Import("spfpolicy.decision.policy", 6, lazy=False),
        Import("dns.resolver", 7, lazy=False),
        Import("dns", 8, lazy=False),
        Import("spfpolicy.migrate.translate", 12, lazy=True),
    ]


def test_relative_import_in_a_package_init() -> None:
    imports = collect_imports(
        "from .answers import Resolver\nfrom .. import model\n",
        "spfpolicy.resolver",
        is_package=True,
        ours=SYNTHETIC_PACKAGE,
    )
    assert imports == [
        Import("spfpolicy.resolver.answers", 1, lazy=False),
        Import("spfpolicy.model", 2, lazy=False),
    ]


def test_bound_names() -> None:
    source = (
        "import os.path\nfrom typing import Any as A\nX: int = 1\nY, Z = 2, 3\n"
        "def f():\n    inner = 1\nclass C:\n    attribute = 1\n"
        "try:\n    import tomllib\nexcept ImportError:\n    tomllib = None\n"
    )
    assert bound_names(source) == {"os", "A", "X", "Y", "Z", "f", "C", "tomllib"}
