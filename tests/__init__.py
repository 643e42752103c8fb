"""The test suite: a package, so tests import `tests.helpers` and `tests.corpora` from any working directory."""
