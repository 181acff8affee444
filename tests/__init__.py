"""spfpolicy's tests: tests/<layer>/test_<module>.py for spfpolicy/<layer>/<module>.py."""
