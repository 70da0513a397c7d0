"""integration tests (a package so test modules in different tiers may share a name)."""
