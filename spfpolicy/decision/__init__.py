"""The decision model, pure: skip rules, verdicts, the action matrix and the trace headers."""
