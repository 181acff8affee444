"""Tests of spfpolicy.resolver, by module."""
