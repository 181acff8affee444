"""One request in, one Decision out: the two phases, the message memo, allow-lists, the log line."""
