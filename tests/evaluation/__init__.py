"""Tests of spfpolicy.evaluation, by module."""
