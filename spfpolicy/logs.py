"""Logging set-up: text for people and journald, or one JSON object per line for log pipelines.

A decision line carries its fields twice over: in the text message, and as a `fields` mapping
on the record (logging's `extra`), which the JSON formatter writes as top-level keys.
"""

from __future__ import annotations

import json
import logging
import sys

from spfpolicy.config import LogFormat, LogLevel

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"  # journald adds time and host itself


class JsonFormatter(logging.Formatter):
    """{"time", "level", "logger", "message", then the record's fields, "exception"}."""

    def format(self, record: logging.LogRecord) -> str:
        """One line of JSON; non-ASCII is escaped so the line is plain ASCII."""
        document: dict[str, object] = {
            "time": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            document.update(fields)
        if record.exc_info:
            document["exception"] = self.formatException(record.exc_info)
        return json.dumps(document, default=str)


def configure_logging(level: LogLevel, format: LogFormat) -> None:
    """Send every log line to stderr (the journal under systemd) at the given level."""
    # The formats use none of these; not collecting them makes each decision line cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    )
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.value.upper())
