"""The world the smoke test's daemon meets: a DNS server and a Postfix instance on loopback.

Kept beside debian/tests/smoke, which imports it. Only .example names and documentation
addresses: sender.example publishes one SPF record, which PERMITTED_CLIENT passes and
FORBIDDEN_CLIENT fails; mail goes to receiver.example.
"""

from __future__ import annotations

import contextlib
import email
import pwd
import shutil
import smtplib
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

SENDER_DOMAIN = "sender.example"
ZONE = {(f"{SENDER_DOMAIN}.", "TXT"): '"v=spf1 ip4:192.0.2.0/24 -all"'}
PERMITTED_CLIENT = "192.0.2.10"  # in the record: pass
FORBIDDEN_CLIENT = "203.0.113.5"  # not in it: fail
RECEIVER_DOMAIN = "receiver.example"
SCRIPT = "/usr/bin/script"  # bsdutils
POSTFIX = "/usr/sbin/postfix"


class SmokeError(Exception):
    """A check failed; the message says which and what was seen."""


def say(text: str) -> None:
    print(f"smoke: {text}", flush=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class DnsServer:
    """An authoritative UDP server on 127.0.0.1 for ZONE; every other name is NXDOMAIN."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, name="smoke-dns", daemon=True)

    def __enter__(self) -> DnsServer:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.sock.close()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                wire, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            self.sock.sendto(self.answer(dns.message.from_wire(wire)).to_wire(), peer)

    @staticmethod
    def answer(query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        name = question.name.to_text().lower()
        text = ZONE.get((name, dns.rdatatype.to_text(question.rdtype)))
        if text is not None:
            response.answer.append(dns.rrset.from_text(name, 300, "IN", "TXT", text))
        elif name not in {known for known, _ in ZONE}:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response


POSTFIX_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
proxymap  unix  -       -       n       -       -       proxymap
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def transaction(smtp: smtplib.SMTP, client: str, *, data: bool) -> str:
    """MAIL, RCPT (and DATA) for client, presented with XCLIENT; the last reply."""
    smtp.ehlo("smoke-driver.example")
    code, text = smtp.docmd("XCLIENT", f"ADDR={client} NAME=[UNAVAILABLE]")
    if code != 220:
        raise SmokeError(f"XCLIENT refused: {code} {text!r}")
    smtp.ehlo(f"mail.{SENDER_DOMAIN}")
    smtp.mail(f"user@{SENDER_DOMAIN}")
    code, text = smtp.rcpt(f"postmaster@{RECEIVER_DOMAIN}")
    if data and code == 250:
        body = f"From: <user@{SENDER_DOMAIN}>\r\nSubject: smoke\r\n\r\nspfpolicy smoke test.\r\n"
        code, text = smtp.data(body.encode())
    return f"{code} {text.decode(errors='replace')}"


def delivered_header(maildir: Path, name: str) -> str:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for path in (maildir / "inbox" / "new").glob("*"):
            with path.open("rb") as handle:
                value = email.message_from_binary_file(handle).get(name)
            if value is not None:
                return " ".join(str(value).split())
        time.sleep(0.2)
    raise SmokeError(f"no delivered message with {name} within 30 s")


@contextlib.contextmanager
def postfix_instance(base: Path, policy_port: int) -> Iterator[tuple[int, Path]]:
    """Start a Postfix master of its own; yields its SMTP port and the maildir."""
    nobody = pwd.getpwnam("nobody")
    config, queue, data, maildir = (base / name for name in ("conf", "queue", "data", "mail"))
    for path in (config, queue, data, maildir):
        path.mkdir(parents=True)
    shutil.chown(data, "postfix")
    shutil.chown(maildir, nobody.pw_uid, nobody.pw_gid)
    smtp_port = free_port()
    (config / "main.cf").write_text(
        postfix_main_cf(base, policy_port, nobody.pw_uid, nobody.pw_gid)
    )
    (config / "master.cf").write_text(
        f"127.0.0.1:{smtp_port} inet n - n - - smtpd\n" + POSTFIX_SERVICES
    )
    postfix(config, "start", base / "maillog")
    try:
        wait_for_port(smtp_port, base / "maillog")
        say(f"Postfix listens on 127.0.0.1:{smtp_port}, policy inet:127.0.0.1:{policy_port}")
        yield smtp_port, maildir
    finally:
        postfix(config, "stop", base / "maillog")


def postfix_main_cf(base: Path, policy_port: int, uid: int, gid: int) -> str:
    return f"""\
compatibility_level = 3.6
queue_directory = {base / "queue"}
data_directory = {base / "data"}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {base / "maillog"}
maillog_file_prefixes = {base}
inet_interfaces = loopback-only
inet_protocols = ipv4
myhostname = mx.{RECEIVER_DOMAIN}
mydomain = {RECEIVER_DOMAIN}
myorigin = {RECEIVER_DOMAIN}
mydestination =
relay_domains =
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = {RECEIVER_DOMAIN}
virtual_mailbox_base = {base / "mail"}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{uid}
virtual_gid_maps = static:{gid}
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_recipient_restrictions = reject_unauth_destination,
    check_policy_service inet:127.0.0.1:{policy_port}
biff = no
smtputf8_enable = no
"""


def postfix(config: Path, command: str, maillog: Path) -> None:
    # Postfix reports start-up trouble only to syslog or a terminal: script(1) gives it one.
    done = subprocess.run(  # noqa: S603 (fixed programs; config is our own directory)
        [SCRIPT, "-qec", f"{POSTFIX} -c {config} {command}", "/dev/null"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if done.returncode != 0:
        log = maillog.read_text(errors="replace") if maillog.exists() else ""
        raise SmokeError(f"postfix {command} failed: {done.stdout}{done.stderr}\n{log}")


def wait_for_port(port: int, maillog: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        time.sleep(0.1)
    log = maillog.read_text(errors="replace") if maillog.exists() else ""
    raise SmokeError(f"Postfix's smtpd did not listen on {port}:\n{log}")
