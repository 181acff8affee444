"""Tests of spfpolicy.service, by module."""
