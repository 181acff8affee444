"""Tests of the RFC 7208 test suite through the wire."""
