"""A running daemon's life: SIGHUP reloads the configuration, SIGTERM/SIGINT stop it.

Signals arrive in the main thread, inside serve_forever(); the work they start (a reload, a
graceful shutdown) runs on a thread of its own, and systemd hears about each step.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from spfpolicy.config.settings import Config, ConfigError
from spfpolicy.ops import notify
from spfpolicy.ops.logs import configure_logging
from spfpolicy.ops.memory import DelayedRelease
from spfpolicy.ops.metrics import PrometheusObserver
from spfpolicy.resolver.answers import Resolver
from spfpolicy.service.policyservice import PolicyService
from spfpolicy.wire.server import PolicyServer

log = logging.getLogger("spfpolicy")

# How long SIGTERM waits for in-flight requests before closing connections.
SHUTDOWN_GRACE = 10.0
EXIT_OK = 0  # also after a second SIGTERM: the operator asked for the stop
# After a reload, requests begun under the old configuration keep it alive up to their time
# budget; memory is given back this long after that.
RELEASE_MARGIN = 2.0


class Daemon:
    """Signal handling for a running server: SIGHUP reloads, SIGTERM/SIGINT stop."""

    def __init__(
        self,
        server: PolicyServer,
        service: PolicyService,
        config: Config,
        *,
        notifier: notify.Notifier,
        observer: PrometheusObserver,
        load: Callable[[], Config],
        build: Callable[[Config, Resolver | None], PolicyService],
    ) -> None:
        self.server = server
        self.service = service
        self.config = config
        self.notifier = notifier
        self.observer = observer
        self.load = load  # reads and validates the configuration file again
        self.build = build  # a service for a configuration, reusing a resolver if given
        self.stopping = False
        self._reload_lock = threading.Lock()  # two quick SIGHUPs reload one after the other
        self.release = DelayedRelease()

    def install_signal_handlers(self) -> None:
        """Route SIGTERM, SIGINT and SIGHUP here."""
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        signal.signal(signal.SIGHUP, self._reload)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            log.warning("second stop signal: exiting at once")
            for handler in logging.getLogger().handlers:
                handler.flush()  # the background log writer would die with the process
            os._exit(EXIT_OK)  # not sys.exit: it would wait for connection threads
        self.stopping = True
        self.release.cancel()
        self.notifier.stopping()
        log.info("stopping: finishing requests in flight (up to %.0f s)", SHUTDOWN_GRACE)
        # The handler runs in the main thread, inside serve_forever: shut down from another.
        threading.Thread(
            target=self.server.shutdown, args=(SHUTDOWN_GRACE,), name="spfpolicy-shutdown"
        ).start()

    def _reload(self, signum: int, frame: FrameType | None) -> None:
        threading.Thread(target=self.reload, name="spfpolicy-reload").start()

    def reload(self) -> None:
        """Load the config file again; a bad file is logged and the running config stays."""
        with self._reload_lock:
            self._reload_now()

    def _reload_now(self) -> None:
        started = time.monotonic()
        self.notifier.reloading()
        try:
            config = self.load()
        except ConfigError as error:
            log.error("reload failed, keeping the running configuration: %s", error)
            self.observer.config_reloaded(success=False)
            self.notifier.ready("reload failed; running the previous configuration")
            return
        for section in ("server", "metrics"):
            if getattr(config, section) != getattr(self.config, section):
                log.warning("reload: [%s] changed; restart spfpolicy to apply it", section)
        configure_logging(config.log.level, config.log.format, background=True)
        old_budget = self.config.spf.time_budget
        resolver = self.service.evaluator.resolver if config.dns == self.config.dns else None
        service = self.build(config, resolver)
        self.service = service
        self.server.set_handlers(
            service.begin,
            service.complete,
            service.error_decision().action,
            wait=service.wait_for_dns,
            resume=service.resume,
        )
        self.config = config
        self.release.schedule(old_budget + RELEASE_MARGIN)
        self.observer.config_reloaded(success=True)
        log.info("configuration reloaded in %.0f ms", (time.monotonic() - started) * 1000)
        self.notifier.ready("configuration reloaded")
