"""A real Postfix instance on loopback for end-to-end tests, in a directory of its own.

The instance has its own configuration directory, queue and data directories and maillog file,
listens only on 127.0.0.1, lets the test present any client address and HELO with XCLIENT,
and delivers every recipient of receiver.example to one maildir the test reads.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import json
import os
import pwd
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DOMAIN = "receiver.example"
HOSTNAME = "mx.receiver.example"
START_TIMEOUT = 30.0  # seconds for Postfix to accept SMTP connections
DELIVERY_TIMEOUT = 20.0  # seconds for an accepted message to reach the maildir

# The daemons Postfix needs for SMTP in and virtual delivery out; nothing chrooted, since the
# queue lives in a test directory.
MASTER_SERVICES = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


class PostfixError(RuntimeError):
    """Postfix did not start, stop or deliver as expected; the message quotes its log."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Reply:
    """One SMTP reply."""

    code: int
    text: str

    def __str__(self) -> str:
        return f"{self.code} {self.text}"


@dataclass(frozen=True)
class Transaction:
    """What happened to one SMTP transaction."""

    mail: Reply
    rcpts: tuple[Reply, ...]
    data: Reply | None  # None when no recipient was accepted

    @property
    def queue_id(self) -> str:
        """The queue id Postfix gave the message ("" when it was not queued)."""
        if self.data is None or self.data.code != 250:
            return ""
        return self.data.text.rsplit(" ", 1)[-1]


class Postfix:
    """A Postfix instance in its own directory; `policies` names each smtpd port's restriction.

    policies maps a label to a check_policy_service target ("unix:private/spfpolicy",
    "inet:127.0.0.1:PORT"); each label gets its own smtpd port (see `ports`). main_cf is added
    to main.cf as it is, for settings a test needs such as restriction classes.
    """

    def __init__(self, policies: Mapping[str, str], main_cf: str = "") -> None:
        self.base = Path(tempfile.mkdtemp(prefix="spfpolicy-postfix-"))
        self.base.chmod(0o755)  # the virtual delivery agent runs as nobody and must get in
        self.config = self.base / "conf"
        self.queue = self.base / "queue"
        self.maildir = self.base / "mail"
        self.maillog = self.base / "maillog"
        self.ports = {label: free_port() for label in policies}
        self._policies = dict(policies)
        self._extra_main_cf = main_cf
        self._nobody = pwd.getpwnam("nobody")

    @property
    def policy_socket(self) -> Path:
        """Where `unix:private/spfpolicy` points for this instance."""
        return self.queue / "private" / "spfpolicy"

    def start(self) -> None:
        """Write the configuration, start the master, wait until every smtpd port answers."""
        for directory in (self.config, self.queue, self.base / "data", self.maildir):
            directory.mkdir()
        shutil.chown(self.base / "data", "postfix")
        shutil.chown(self.maildir, self._nobody.pw_uid, self._nobody.pw_gid)
        (self.config / "main.cf").write_text(self._main_cf())
        (self.config / "master.cf").write_text(self._master_cf())
        self._postfix("start")
        # postfix start creates queue/private; the daemon's unix socket goes there.
        deadline = time.monotonic() + START_TIMEOUT
        for port in self.ports.values():
            self._wait_for_port(port, deadline)

    def stop(self) -> None:
        """Stop the master (and so every Postfix process), then remove the directory."""
        try:
            self._postfix("stop")
        finally:
            shutil.rmtree(self.base, ignore_errors=True)

    def log(self) -> str:
        """Postfix's maillog so far."""
        try:
            return self.maillog.read_text(errors="replace")
        except FileNotFoundError:
            return "(no maillog yet)"

    def send(
        self,
        label: str,
        *,
        client: str,
        helo: str,
        sender: str,
        recipients: Sequence[str],
        login: str = "",
        encoding: str = "ascii",
    ) -> Transaction:
        """One SMTP transaction on label's port, presenting client and helo with XCLIENT.

        encoding is how commands go on the wire: "latin-1" sends 8-bit envelope addresses as a
        client without SMTPUTF8 does.
        """
        with smtplib.SMTP("127.0.0.1", self.ports[label], timeout=120) as smtp:
            smtp.command_encoding = encoding
            smtp.ehlo("test-driver.example")
            address = f"IPV6:{client}" if ":" in client else client
            xclient = f"ADDR={address} NAME=[UNAVAILABLE]" + (f" LOGIN={login}" if login else "")
            code, text = smtp.docmd("XCLIENT", xclient)
            if code != 220:
                raise PostfixError(f"XCLIENT refused: {code} {text!r}")
            smtp.ehlo(helo)
            mail = Reply(*_decode(smtp.mail(sender)))
            rcpts = tuple(Reply(*_decode(smtp.rcpt(rcpt))) for rcpt in recipients)
            data = None
            if any(rcpt.code == 250 for rcpt in rcpts):
                body = f"From: <{sender}>\r\nSubject: test\r\n\r\nSPF test message.\r\n"
                data = Reply(*_decode(smtp.data(body.encode())))
        return Transaction(mail, rcpts, data)

    def delivered(self, queue_id: str, recipients: int = 1) -> list[email.message.Message]:
        """The delivered copies of a queued message, found by its Received: queue id."""
        deadline = time.monotonic() + DELIVERY_TIMEOUT
        while time.monotonic() < deadline:
            found = [m for m in self._messages() if f"id {queue_id}" in str(m.get("Received", ""))]
            if len(found) >= recipients:
                return found
            time.sleep(0.1)
        raise PostfixError(f"{queue_id} was not delivered in time; maillog:\n{self.log()[-3000:]}")

    def queued(self) -> list[dict[str, Any]]:
        """The messages in the instance's queues, as `postqueue -j` lists them: one object per
        message with queue_name ("hold", "incoming", "active", "deferred"), queue_id, sender
        and recipients."""
        done = subprocess.run(
            ["postqueue", "-c", str(self.config), "-j"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise PostfixError(f"postqueue -j failed: {done.stdout}{done.stderr}\n{self.log()}")
        return [json.loads(line) for line in done.stdout.splitlines() if line.strip()]

    def _messages(self) -> list[email.message.Message]:
        messages = []
        for path in (self.maildir / "inbox" / "new").glob("*"):
            with path.open("rb") as handle:
                messages.append(
                    email.message_from_binary_file(handle, policy=email.policy.compat32)
                )
        return messages

    def _postfix(self, command: str) -> None:
        # Postfix reports start-up trouble only to syslog, or to a terminal: give it one.
        done = subprocess.run(
            ["script", "-qec", f"postfix -c {self.config} {command}", "/dev/null"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if done.returncode != 0:
            raise PostfixError(
                f"postfix {command} failed: {done.stdout}{done.stderr}\n{self.log()}"
            )

    def _wait_for_port(self, port: int, deadline: float) -> None:
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        raise PostfixError(f"smtpd on port {port} did not start; maillog:\n{self.log()}")

    def _main_cf(self) -> str:
        restriction_lines = "".join(
            f"{label}_restrictions = reject_unauth_destination, check_policy_service {target}\n"
            for label, target in self._policies.items()
        )
        return f"""\
compatibility_level = 3.6
queue_directory = {self.queue}
data_directory = {self.base / "data"}
mail_owner = postfix
setgid_group = postdrop
maillog_file = {self.maillog}
maillog_file_prefixes = {self.base}
inet_interfaces = loopback-only
# ipv6 too, or XCLIENT refuses IPv6 client addresses; the listeners stay on 127.0.0.1.
inet_protocols = ipv4, ipv6
myhostname = {HOSTNAME}
mydomain = {DOMAIN}
myorigin = {DOMAIN}
mydestination =
relay_domains =
# Only loopback: the addresses the tests present with XCLIENT are never "my networks".
mynetworks = 127.0.0.0/8
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {self.maildir}
virtual_mailbox_maps = static:inbox/
virtual_uid_maps = static:{self._nobody.pw_uid}
virtual_gid_maps = static:{self._nobody.pw_gid}
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_peername_lookup = no
smtpd_recipient_restrictions = reject_unauth_destination
biff = no
smtputf8_enable = no
{restriction_lines}{self._extra_main_cf}"""

    def _master_cf(self) -> str:
        listeners = "".join(
            f"127.0.0.1:{port} inet n - n - - smtpd "
            f"-o smtpd_recipient_restrictions=${label}_restrictions\n"
            for label, port in self.ports.items()
        )
        return listeners + MASTER_SERVICES


def _decode(reply: tuple[int, bytes]) -> tuple[int, str]:
    return reply[0], reply[1].decode(errors="replace").replace("\n", " ")


def postfix_available() -> str:
    """Why Postfix tests cannot run here ("" when they can)."""
    if shutil.which("postfix") is None:
        return "Postfix is not installed (apt-get install postfix)"
    if shutil.which("script") is None:
        return "script(1) is not installed (apt-get install bsdutils)"
    if os.geteuid() != 0:
        return "Postfix's master must start as root; run the tests as root"
    try:
        pwd.getpwnam("postfix")
        pwd.getpwnam("nobody")
    except KeyError as missing:
        return f"the user {missing} does not exist (reinstall the postfix package)"
    return ""
