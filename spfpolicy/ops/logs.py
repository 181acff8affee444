"""Logging set-up: text for people and journald, or one JSON object per line for log pipelines.

A decision line carries its fields twice over: in the text message, and as a `fields` mapping
on the record (logging's `extra`), which the JSON formatter writes as top-level keys.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from typing import TextIO

from spfpolicy.config.settings import LogFormat, LogLevel

TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"  # journald adds time and host itself
FLUSH_WAIT = 2.0  # seconds flush() waits for the writer before an exit
# The writer rests this long after a batch that did not fill up. Waking it for every record
# cost a thread switch per request under load; lines now reach the log at most this late.
BATCH_PAUSE = 0.01
BATCH_SIZE = 256


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


class BackgroundHandler(logging.Handler):
    """Writes records to a stream from a thread of its own.

    Under load every request thread logs a decision; with a plain StreamHandler they queue on
    its lock while one of them writes to stderr. Here a thread only appends the record to a
    queue, and the writer drains it, formatting and writing several lines at a time.
    """

    def __init__(self, stream: TextIO, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.stream = stream
        # Records, None to stop, or an Event that flush() waits for: set once all before it
        # has been written.
        self.queue: queue.SimpleQueue[logging.LogRecord | threading.Event | None] = (
            queue.SimpleQueue()
        )
        self.writer = threading.Thread(target=self._write, name="spfpolicy-log", daemon=True)
        self.writer.start()

    def handle(self, record: logging.LogRecord) -> bool:
        """Queue the record: no lock, no I/O in the caller's thread."""
        if self.filter(record):
            self.queue.put(record)
            return True
        return False

    def emit(self, record: logging.LogRecord) -> None:
        """Queue the record (handle() does this without the handler's lock)."""
        self.queue.put(record)

    def flush(self) -> None:
        """Wait (up to FLUSH_WAIT seconds) until what was queued before has been written."""
        written = threading.Event()
        self.queue.put(written)
        deadline = time.monotonic() + FLUSH_WAIT
        # Polled, not Event.wait(): flush() runs in signal handlers too.
        while not written.is_set() and self.writer.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        """Write what is queued, then stop the writer."""
        if self.writer.is_alive():
            self.queue.put(None)
            self.writer.join(timeout=10)
        super().close()

    def _write(self) -> None:
        while True:
            records = [self.queue.get()]
            while not self.queue.empty() and len(records) < BATCH_SIZE:
                records.append(self.queue.get())
            lines: list[str] = []
            for record in records:
                if record is None:
                    self._flush(lines)
                    return
                if isinstance(record, threading.Event):
                    self._flush(lines)
                    lines = []
                    record.set()
                    continue
                try:
                    lines.append(self.format(record))
                except Exception:  # noqa: BLE001 - a broken record must not stop the log
                    self.handleError(record)
            self._flush(lines)
            if len(records) < BATCH_SIZE:
                time.sleep(BATCH_PAUSE)

    def _flush(self, lines: list[str]) -> None:
        if lines:
            try:
                self.stream.write("\n".join(lines) + "\n")
                self.stream.flush()
            except (OSError, ValueError):
                pass  # stderr gone (the journal restarted): nothing to tell it


def configure_logging(level: LogLevel, format: LogFormat, *, background: bool = False) -> None:
    """Send every log line to stderr (the journal under systemd) at the given level.

    background=True (the daemon) writes from a thread of its own; see BackgroundHandler.
    """
    # The formats use none of these; not collecting them makes each decision line cheaper.
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter = JsonFormatter() if format is LogFormat.JSON else logging.Formatter(TEXT_FORMAT)
    handler: logging.Handler
    if background:
        handler = BackgroundHandler(sys.stderr, formatter)
    else:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(formatter)
    root = logging.getLogger()
    for old in root.handlers[:]:
        root.removeHandler(old)
        old.close()
    root.addHandler(handler)
    root.setLevel(level.value.upper())
