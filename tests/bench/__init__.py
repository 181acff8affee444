"""Issue 4's benchmark (world and traffic in tests/support/); the hand-run fuzzer and soak."""
