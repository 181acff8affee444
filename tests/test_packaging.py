"""Packaging: the man pages, the default config and the package metadata match the program.

spfpolicy.toml(5) and /etc/spfpolicy/spfpolicy.toml (packaging/spfpolicy.toml) are written by
hand; these tests hold them to spfpolicy.config.config_keys() in both directions, so a new key
without documentation, or documentation of a key that is gone, fails here. Building and
installing the packages is CI's job (packaging/ci-packages.sh), not pytest's.
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import tomllib
import typing
from collections.abc import Mapping
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from spfpolicy import __version__, cli
from spfpolicy.config.settings import Config, config_keys, parse_config
from tests.conftest import require_tool

ROOT = Path(__file__).parent.parent
PACKAGING = ROOT / "packaging"
DEFAULT_CONFIG = PACKAGING / "spfpolicy.toml"
CONFIG_PAGE = PACKAGING / "man" / "spfpolicy.toml.5"
COMMAND_PAGE = PACKAGING / "man" / "spfpolicy.8"
MAN_PAGES = (COMMAND_PAGE, CONFIG_PAGE)

# A disabled setting in the default config is "#key = value" or "#[table]"; prose is "# text".
_DISABLED = re.compile(r"^#(?=\[|[a-z0-9_]+ = )", re.MULTILINE)
# The config page: ".SS "[table]"" or ".SS "[[table]]"", then ".TP" entries tagged
# "\fBkey\fR = default" or "\fBkey\fR (required)".
_TABLE = re.compile(r'^\.SS "(\[\[?)([a-z_.]+)\]\]?"$')
_ENTRY = re.compile(r"^\\fB([a-z0-9_]+)\\fR(?: = (.+)| \(required\))$")
_ROFF_ESCAPES = {r"\-": "-", r"\(dq": '"', r"\e": "\\", r"\&": "", r"\ ": " ", r"\%": ""}
_FONT = re.compile(r"\\f[BIRP]")


@dataclasses.dataclass(frozen=True)
class ManEntry:
    """One key of spfpolicy.toml(5): its default as TOML text (None: required), its first line."""

    default: str | None
    summary: str


def documented_keys() -> dict[str, Any]:
    """config_keys() without the keys that a list of tables repeats from a top-level table.

    recipient[].actions.helo.fail is [actions.helo] fail again, inside a [[recipient]] rule:
    both documents describe it once, at the top level, and say that the rule repeats it.
    """
    keys = dict(config_keys())
    return {key: default for key, default in keys.items() if key.partition("[].")[2] not in keys}


def unroff(text: str) -> str:
    """Roff source text as a reader sees it (the escapes these pages use)."""
    for escape, plain in _ROFF_ESCAPES.items():
        text = text.replace(escape, plain)
    return _FONT.sub("", text)


def flatten(table: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """A TOML document as {dotted.key: value}; a list of tables reads "name[].key"."""
    keys: dict[str, Any] = {}
    for name, value in table.items():
        if isinstance(value, Mapping):
            keys.update(flatten(value, f"{prefix}{name}."))
        elif isinstance(value, list) and value and all(isinstance(v, Mapping) for v in value):
            for element in value:
                keys.update(flatten(element, f"{prefix}{name}[]."))
        else:
            keys[prefix + name] = value
    return keys


def value_at(config: Any, key: str) -> Any:
    """The value of a dotted key in a Config (the first element of a list of tables)."""
    value = config
    for part in key.split("."):
        name = part.removesuffix("[]")
        value = getattr(value, name if hasattr(value, name) else name + "_")
        if part.endswith("[]"):
            value = value[0]
    return value


def field_type(key: str) -> tuple[Any, Mapping[str, Any]]:
    """The type hint and the metadata of the dataclass field behind a dotted key."""
    cls: Any = Config
    for part in key.split("."):
        fields = {item.name.rstrip("_"): item for item in dataclasses.fields(cls)}
        item = fields[part.removesuffix("[]")]
        hint = typing.get_type_hints(cls)[item.name]
        cls = typing.get_args(hint)[0] if part.endswith("[]") else hint
    return hint, item.metadata


def default_config_enabled() -> str:
    """The default config with every disabled setting enabled."""
    return _DISABLED.sub("", DEFAULT_CONFIG.read_text())


def man_entries() -> dict[str, ManEntry]:
    """The keys documented in spfpolicy.toml(5)."""
    entries: dict[str, ManEntry] = {}
    prefix = ""
    lines = CONFIG_PAGE.read_text().splitlines()
    for number, line in enumerate(lines):
        if line.startswith(".SH"):
            prefix = ""
        elif table := _TABLE.match(line):
            prefix = table[2] + ("[]." if table[1] == "[[" else ".")
        elif prefix and line == ".TP" and (entry := _ENTRY.match(lines[number + 1])):
            summary = unroff(lines[number + 2])
            default = unroff(entry[2]) if entry[2] is not None else None
            entries[prefix + entry[1]] = ManEntry(default, summary)
    return entries


def type_words(hint: Any, metadata: Mapping[str, Any]) -> list[str]:
    """What the first line of a key's description must say about its type."""
    if hint is bool:
        return ["Boolean"]
    if isinstance(hint, type) and issubclass(hint, Enum):
        return ["One of", *(f'"{member.value}"' for member in hint)]
    if hint is int or hint is float:
        low, high = metadata.get("range", (None, None))
        number = [f"from {_number(low)} to {_number(high)}"] if low is not None else []
        return ["Integer" if hint is int else "Number", *number]
    if typing.get_origin(hint) is tuple:
        return ["List"]
    return ["String"]


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def test_the_default_config_is_all_comments() -> None:
    text = DEFAULT_CONFIG.read_text()
    assert flatten(tomllib.loads(text)) == {}, "every setting must be commented out"
    assert parse_config(text, str(DEFAULT_CONFIG)) == Config()


def test_the_default_config_shows_every_key_and_no_other() -> None:
    shown = set(flatten(tomllib.loads(default_config_enabled())))
    missing = sorted(set(documented_keys()) - shown)
    unknown = sorted(shown - set(dict(config_keys())))
    assert not missing, f"add to {DEFAULT_CONFIG.name}, commented out: {missing}"
    assert not unknown, f"{DEFAULT_CONFIG.name} shows keys that do not exist: {unknown}"


def test_the_default_config_shows_the_defaults() -> None:
    config = parse_config(default_config_enabled(), str(DEFAULT_CONFIG))
    for key, default in documented_keys().items():
        if default is not None:  # a required key of a list of tables shows an example
            assert value_at(config, key) == default, f"{DEFAULT_CONFIG.name}: {key}"
    lists = {key.partition("[]")[0] for key in documented_keys() if "[]" in key}
    assert dataclasses.replace(config, **{name: () for name in lists}) == Config()


def test_the_config_page_documents_every_key_and_no_other() -> None:
    entries = set(man_entries())
    missing = sorted(set(documented_keys()) - entries)
    unknown = sorted(entries - set(documented_keys()))
    assert not missing, f"document in {CONFIG_PAGE.name}: {missing}"
    assert not unknown, f"{CONFIG_PAGE.name} documents keys that do not exist: {unknown}"


def test_the_config_page_shows_the_defaults() -> None:
    shown = flatten(tomllib.loads(default_config_enabled()))
    defaults = documented_keys()
    for key, entry in man_entries().items():
        if defaults[key] is None:
            assert entry.default is None, f"{key} has no default: tag it (required)"
        else:
            assert entry.default is not None, f"{key} has a default: tag it {key} = ..."
            written = tomllib.loads(f"value = {entry.default}")["value"]
            assert written == shown[key], f"{CONFIG_PAGE.name}: {key} = {entry.default}"


def test_the_config_page_states_each_type() -> None:
    for key, entry in man_entries().items():
        for words in type_words(*field_type(key)):
            assert words in entry.summary, f"{CONFIG_PAGE.name}: {key}: say {words!r}"


def _help(capsys: pytest.CaptureFixture[str], *command: str) -> str:
    with pytest.raises(SystemExit):
        cli.main([*command, "--help"])
    return capsys.readouterr().out


def _commands(capsys: pytest.CaptureFixture[str], *command: str) -> list[tuple[str, ...]]:
    """Every command line path of the program, with argparse's help as the source."""
    text = _help(capsys, *command)
    subcommands = re.findall(r"^ {4}([a-z][a-z-]*)(?: |$)", text, re.MULTILINE)
    paths = [command] if not subcommands else []
    for name in subcommands:
        paths.extend(_commands(capsys, *command, name))
    return paths


def test_the_command_page_has_every_command_and_option(capsys: pytest.CaptureFixture[str]) -> None:
    page = unroff(COMMAND_PAGE.read_text())
    for path in _commands(capsys):
        assert f"spfpolicy {' '.join(path)}" in page, f"{COMMAND_PAGE.name}: {path}"
        for option in re.findall(r"--[a-z][a-z-]*", _help(capsys, *path)):
            assert f"{option}" in page, f"{COMMAND_PAGE.name}: {' '.join(path)} {option}"


def test_the_command_page_has_every_exit_code() -> None:
    exit_status = COMMAND_PAGE.read_text().partition(".SH EXIT STATUS")[2].partition(".SH")[0]
    codes = {value for name, value in vars(cli).items() if name.startswith("EXIT_")}
    assert codes
    for code in codes:
        assert f".TP\n.B {code}\n" in exit_status, f"{COMMAND_PAGE.name}: exit code {code}"


@pytest.mark.system
@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda page: page.name)
def test_man_renders_without_warnings(page: Path) -> None:
    man = require_tool("man", "man-db")
    done = subprocess.run(
        [man, "--warnings", "-E", "UTF-8", "-l", "-Tutf8", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"LC_ALL": "C.UTF-8", "MANROFFSEQ": "", "MANWIDTH": "80", "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert "SEE ALSO" in re.sub(".\x08", "", done.stdout)  # without the overstrike of bold


@pytest.mark.system
@pytest.mark.parametrize("page", MAN_PAGES, ids=lambda page: page.name)
def test_groff_finds_nothing_to_warn_about(page: Path) -> None:
    groff = require_tool("groff", "groff-base")
    done = subprocess.run(
        [groff, "-man", "-ww", "-z", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


# Where each package and page states the version it documents.
VERSION_PATTERNS = {
    "packaging/debian/changelog": r"^spfpolicy \(([^-)]+)-",
    "packaging/rpm/spfpolicy.spec": r"^Version: +(\S+)$",
    "packaging/man/spfpolicy.8": r'^\.TH .* "spfpolicy ([^"]+)"',
    "packaging/man/spfpolicy.toml.5": r'^\.TH .* "spfpolicy ([^"]+)"',
}


@pytest.mark.parametrize("path", VERSION_PATTERNS)
def test_packages_and_pages_carry_the_program_version(path: str) -> None:
    match = re.search(VERSION_PATTERNS[path], (ROOT / path).read_text(), re.MULTILINE)
    assert match, f"{path}: no version found"
    assert match[1] == __version__, f"{path} says {match[1]}, spfpolicy is {__version__}"


# Python distribution -> (Debian 12 package, Fedora package): the packages depend on these.
DISTRIBUTION_PACKAGES = {
    "pyspf": ("python3-spf", "python3-pyspf"),
    "dnspython": ("python3-dnspython", "python3-dns"),
    "cachetools": ("python3-cachetools", "python3-cachetools"),
    "prometheus-client": ("python3-prometheus-client", "python3-prometheus_client"),
}


def _requirements() -> list[tuple[str, str, str]]:
    """pyproject.toml's runtime dependencies as (distribution, lower bound, upper bound or "")."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pairs = [
        re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(?:,<([0-9.]+))?", item)
        for item in project["dependencies"]
    ]
    assert all(pairs), f"write each dependency as name>=version[,<version]: {project}"
    return [(pair[1], pair[2], pair[3] or "") for pair in pairs if pair]


def test_the_packages_depend_on_what_pyproject_requires() -> None:
    control = (PACKAGING / "debian" / "control").read_text()
    spec = (PACKAGING / "rpm" / "spfpolicy.spec").read_text()
    for distribution, lower, upper in _requirements():
        assert distribution in DISTRIBUTION_PACKAGES, f"name {distribution}'s packages here"
        debian, fedora = DISTRIBUTION_PACKAGES[distribution]
        assert f" {debian} (>= {lower})," in control, f"debian/control: Depends {debian}"
        assert re.search(rf"^Requires: +{fedora} >= {lower}$", spec, re.MULTILINE), fedora
        if upper:
            assert f" {debian} (<< {upper})," in control, f"debian/control: {debian} << {upper}"
            assert re.search(rf"^Requires: +{fedora} < {upper}$", spec, re.MULTILINE), fedora


def test_the_commands_the_units_run_come_with_the_deb() -> None:
    """/bin/kill (ExecReload) is procps's on Debian, which is not essential: a minimal Debian 13
    has none, and systemd-analyze verify fails the unit there."""
    providers = {"/usr/bin/spfpolicy": None, "/bin/kill": "procps"}
    control = (PACKAGING / "debian" / "control").read_text()
    unit = (ROOT / "systemd" / "spfpolicy.service").read_text()
    commands = {
        line.partition("=")[2].split()[0] for line in unit.splitlines() if line.startswith("Exec")
    }
    assert commands, "no Exec= line found"
    for command in commands:
        assert command in providers, f"{command}: which package provides it on Debian?"
        package = providers[command]
        assert package is None or f"\n {package},\n" in control, f"Depends: {package}"


def test_the_service_user_is_the_one_the_packages_create() -> None:
    unit = (ROOT / "systemd" / "spfpolicy.service").read_text()
    user = re.search(r"^User=(\S+)$", unit, re.MULTILINE)
    sysusers = (PACKAGING / "sysusers.d" / "spfpolicy.conf").read_text()
    assert user, "spfpolicy.service has no User="
    assert re.search(rf"^u {re.escape(user[1])} ", sysusers, re.MULTILINE), sysusers
