"""Tests of spfpolicy.wire, by module."""
