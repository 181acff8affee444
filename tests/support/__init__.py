"""Test support: a real authoritative DNS server on loopback and helpers to run it."""
