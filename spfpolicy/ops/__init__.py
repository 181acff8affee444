"""Operating the daemon: metrics and their exporter, log set-up, systemd notifications."""
