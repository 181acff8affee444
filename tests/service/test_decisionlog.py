"""The decision log line, in text and in JSON: every field, and nothing an attacker can split."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import time
from collections.abc import Iterator

import pytest

from spfpolicy.config.settings import LogFormat, LogLevel, parse_config
from spfpolicy.decision.actions import Receiver
from spfpolicy.model import (
    Decision,
    Disposition,
    Identity,
    PolicyRequest,
    SpfOutcome,
    SpfResult,
    Verdict,
)
from spfpolicy.ops.logs import BackgroundHandler, configure_logging
from spfpolicy.service.decisionlog import log_decision
from tests.support.decisions import decide

REQUEST = PolicyRequest(
    request="smtpd_access_policy",
    protocol_state="RCPT",
    client_address="203.0.113.5",
    helo_name="mail.sender.example",
    sender='x\ny "quoted"@sender.example',
    instance="4F2A1.1",
    queue_id="4F2A1",
    sasl_username="",
)
REJECT = Decision(
    Disposition.REJECT,
    "550 5.7.23 SPF mailfrom check failed: host 203.0.113.5 is not allowed to send mail for "
    "sender.example",
    (
        SpfOutcome(
            Identity.HELO, SpfResult.NONE, "mail.sender.example", "postmaster@mail.sender.example"
        ),
        SpfOutcome(
            Identity.MAILFROM,
            SpfResult.FAIL,
            "sender.example",
            "x@sender.example",
            mechanism="-all",
        ),
    ),
    dns_lookups=3,
    cache_hits=2,
)


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """Logging configured as the daemon does it, writing into a string."""
    captured = io.StringIO()
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    try:
        yield captured
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def configure(stream: io.StringIO, format: LogFormat, level: LogLevel = LogLevel.INFO) -> None:
    configure_logging(level, format)
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]


def test_text_line(stream: io.StringIO) -> None:
    configure(stream, LogFormat.TEXT)
    log_decision(REQUEST, REJECT, 0.0123)
    (line,) = stream.getvalue().splitlines()
    assert line == (
        "INFO spfpolicy.decision: decision instance=4F2A1.1 queue_id=4F2A1 client=203.0.113.5 "
        'helo=mail.sender.example sender="x\\ny \\"quoted\\"@sender.example" helo_result=none '
        "mailfrom_result=fail(-all) disposition=reject "
        'action="550 5.7.23 SPF mailfrom check failed: host 203.0.113.5 is not allowed to send '
        'mail for sender.example" dns_lookups=3 cache_hits=2 duration_ms=12.3'
    )


def test_json_line(stream: io.StringIO) -> None:
    configure(stream, LogFormat.JSON)
    warn = Decision(
        Disposition.WARN,
        "DUNNO",
        REJECT.outcomes,
        would_have=Verdict.REJECT,
        reused=True,
        header="Received-SPF: fail (x) y=z",
    )
    log_decision(REQUEST, warn, 0.002)
    (line,) = stream.getvalue().splitlines()
    document = json.loads(line)
    assert document["level"] == "info"
    assert document["logger"] == "spfpolicy.decision"
    assert document["message"].startswith("decision instance=4F2A1.1 ")
    assert {
        key: document[key]
        for key in (
            "instance",
            "queue_id",
            "client",
            "helo",
            "sender",
            "helo_result",
            "mailfrom_result",
            "disposition",
            "would_have",
            "reused",
            "action",
            "dns_lookups",
            "cache_hits",
            "duration_ms",
        )
    } == {
        "instance": "4F2A1.1",
        "queue_id": "4F2A1",
        "client": "203.0.113.5",
        "helo": "mail.sender.example",
        "sender": 'x\ny "quoted"@sender.example',
        "helo_result": "none",
        "mailfrom_result": "fail(-all)",
        "disposition": "warn",
        "would_have": "reject",
        "reused": "yes",
        "action": "PREPEND Received-SPF",
        "dns_lookups": 0,
        "cache_hits": 0,
        "duration_ms": 2.0,
    }
    assert "skip_reason" not in document


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        pytest.param(
            '[actions.mailfrom]\nfail = "hold"\n',
            "mailfrom_result=fail(-all) disposition=hold "
            'action="HOLD SPF mailfrom check failed: host 203.0.113.5 is not allowed to send mail '
            'for sender.example" dns_lookups=0',
            id="hold",
        ),
        pytest.param(
            '[actions.mailfrom]\nfail = "hold"\n[policy]\ndry_run = true\n',
            'mailfrom_result=fail(-all) disposition=warn would_have=hold action="PREPEND '
            'Received-SPF" dns_lookups=0',
            id="hold-in-dry-run",
        ),
    ],
)
def test_a_hold_is_a_disposition_of_its_own(
    stream: io.StringIO, config_text: str, expected: str
) -> None:
    configure(stream, LogFormat.TEXT)
    config = parse_config(config_text)
    decision = decide(REQUEST, REJECT.outcomes, config, Receiver("mx.example", "mx.example"))
    log_decision(REQUEST, decision, 0.001)
    (line,) = stream.getvalue().splitlines()
    assert expected in line, line


@pytest.mark.parametrize("log_format", list(LogFormat))
def test_a_decision_over_stale_dns_says_so(stream: io.StringIO, log_format: LogFormat) -> None:
    configure(stream, log_format)
    helo_outcome, mailfrom_outcome = REJECT.outcomes
    stale = dataclasses.replace(mailfrom_outcome, result=SpfResult.PASS, stale_dns=True)
    accepted = Decision(Disposition.ACCEPT, "DUNNO", (helo_outcome, stale), header="X: y")
    log_decision(REQUEST, accepted, 0.001)
    log_decision(REQUEST, dataclasses.replace(accepted, outcomes=REJECT.outcomes), 0.001)
    marked, unmarked = stream.getvalue().splitlines()
    if log_format is LogFormat.JSON:
        assert json.loads(marked)["stale_dns"] == "yes"
        assert "stale_dns" not in json.loads(unmarked)
    else:
        assert " disposition=accept stale_dns=yes action=" in marked
        assert "stale_dns" not in unmarked


def test_skips_name_their_reason(stream: io.StringIO) -> None:
    configure(stream, LogFormat.TEXT)
    log_decision(REQUEST, Decision(Disposition.SKIP, "DUNNO", skip_reason="authenticated"), 0.0)
    assert "disposition=skip skip_reason=authenticated action=DUNNO" in stream.getvalue()


def test_a_megabyte_helo_gives_a_bounded_line(stream: io.StringIO) -> None:
    configure(stream, LogFormat.TEXT)
    log_decision(REQUEST.replace(helo_name="h" * 1_000_000), REJECT, 0.0)
    (line,) = stream.getvalue().splitlines()
    assert len(line) < 2000


def test_nothing_is_built_below_info(stream: io.StringIO) -> None:
    configure(stream, LogFormat.TEXT, LogLevel.WARNING)
    log_decision(REQUEST, REJECT, 0.0)
    assert stream.getvalue() == ""


def test_json_exceptions_keep_their_traceback(stream: io.StringIO) -> None:
    configure(stream, LogFormat.JSON)
    try:
        raise ValueError("junk record")
    except ValueError:
        logging.getLogger("spfpolicy.service").exception("evaluation failed")
    document = json.loads(stream.getvalue())
    assert document["level"] == "error"
    assert "ValueError: junk record" in document["exception"]


def test_background_handler_writes_every_line_in_order() -> None:
    stream = io.StringIO()
    handler = BackgroundHandler(stream, logging.Formatter("%(message)s"))
    logger = logging.getLogger("spfpolicy.test.background")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for number in range(2000):
            logger.info("line %d", number)
        handler.flush()
        assert stream.getvalue().splitlines()[:3] == ["line 0", "line 1", "line 2"]
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert stream.getvalue().splitlines() == [f"line {n}" for n in range(2000)]
    assert not handler.writer.is_alive()


class SlowStream(io.StringIO):
    """A stream that takes its time to write, like stderr to a busy journal."""

    def write(self, text: str) -> int:
        time.sleep(0.05)
        return super().write(text)


def test_background_flush_waits_for_lines_the_writer_has_taken() -> None:
    # The writer takes lines off the queue before writing them: an empty queue is not a
    # written log. A second SIGTERM logs, flushes and exits at once; its line must be there.
    stream = SlowStream()
    handler = BackgroundHandler(stream, logging.Formatter("%(message)s"))
    logger = logging.getLogger("spfpolicy.test.flush")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        for round_number in range(5):
            logger.warning("round %d", round_number)
            time.sleep(0.02)  # the writer has taken it and is writing
            handler.flush()
            assert stream.getvalue().splitlines()[-1:] == [f"round {round_number}"]
    finally:
        logger.removeHandler(handler)
        handler.close()
