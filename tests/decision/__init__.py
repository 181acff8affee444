"""Tests of spfpolicy.decision, by module."""
