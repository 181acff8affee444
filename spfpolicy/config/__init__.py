"""The configuration: TOML (tomllib) to frozen, validated dataclasses, and ConfigError."""
