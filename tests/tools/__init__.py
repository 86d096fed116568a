"""Small maintainer tools that build the test suite's data."""
