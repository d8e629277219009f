"""Test helpers shared by the services' test suites (not used at run time)."""
