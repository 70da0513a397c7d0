"""totd-faith test suite (a package so that tests can import tests.netns and tests.support)."""
