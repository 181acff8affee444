"""Run Debian's policyd-spf with its DNS pointed at the benchmark's DNS server.

    /usr/bin/python3 policyd_spf_wrapper.py DNS_PORT CONFIG_FILE pydns|dnspython

This runs on Debian's own /usr/bin/python3 with python3-spf, exactly as policyd-spf would, one
process per connection (see spawner.py). Debian's python3-spf depends on "python3-dns |
python3-dnspython": pyspf resolves through dnspython when that is installed, through pydns
(`DNS`) otherwise, and either reads /etc/resolv.conf. Which one a machine has depends on what
else is installed, so the benchmark names it: for "pydns" this hides dnspython from pyspf's
import, as on a machine without python3-dnspython (what `apt-get install
postfix-policyd-spf-python` gives on a clean Debian 12). Then, rather than edit resolv.conf, it
points that library at 127.0.0.1:DNS_PORT and runs /usr/bin/policyd-spf unchanged.
Standard library only: it must not import anything from this repository's virtualenv.
"""

from __future__ import annotations

import runpy
import sys

POLICYD_SPF = "/usr/bin/policyd-spf"
SERVER = "127.0.0.1"
LOOKUPS = {"pydns": "DNSLookup_pydns", "dnspython": "DNSLookup_dnspython"}  # pyspf's names


def use_library(library: str) -> None:
    """Make pyspf resolve through `library`; exit with a message if it cannot."""
    if library == "pydns":
        sys.modules["dns"] = None  # type: ignore[assignment]  # `import dns` now fails
    import spf  # Debian's pyspf, /usr/lib/python3/dist-packages/spf.py

    if spf.DNSLookup.__name__ != LOOKUPS[library]:
        package = "python3-dns" if library == "pydns" else "python3-dnspython"
        sys.exit(f"pyspf does not use {library} here: apt-get install {package}")


def point_dns_at(library: str, port: int) -> None:
    """Send pyspf's DNS queries to SERVER:port."""
    if library == "pydns":
        import DNS  # pydns, Debian's python3-dns

        DNS.defaults["server"] = [SERVER]  # replaces what it read from resolv.conf
        DNS.defaults["port"] = port
        return
    import dns.resolver

    resolver = dns.resolver.get_default_resolver()
    resolver.nameservers = [SERVER]
    resolver.port = port
    if hasattr(resolver, "nameserver_ports"):
        resolver.nameserver_ports = {SERVER: port}


def main() -> None:
    """Choose and point the DNS library, then run policyd-spf with the config file."""
    if len(sys.argv) != 4 or sys.argv[3] not in LOOKUPS:
        sys.exit(f"usage: {sys.argv[0]} DNS_PORT CONFIG_FILE {'|'.join(LOOKUPS)}")
    port, config, library = int(sys.argv[1]), sys.argv[2], sys.argv[3]
    use_library(library)
    point_dns_at(library, port)
    sys.argv = [POLICYD_SPF, config]
    runpy.run_path(POLICYD_SPF, run_name="__main__")


if __name__ == "__main__":
    main()
