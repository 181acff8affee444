"""policyd-spf.conf to spfpolicy TOML; imported only by its command, lazily."""
