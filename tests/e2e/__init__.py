"""e2e tests (a package so test modules in different tiers may share a name)."""
