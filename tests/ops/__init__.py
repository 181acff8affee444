"""Tests of spfpolicy.ops, by module."""
