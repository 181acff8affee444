"""Tests of spfpolicy.config, by module."""
