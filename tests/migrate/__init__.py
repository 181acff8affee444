"""Tests of spfpolicy.migrate, by module."""
