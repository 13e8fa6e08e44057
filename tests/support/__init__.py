"""Helpers shared by the tests: processes and servers on 127.0.0.1, copies of the repository,
running the workflows with act. Plain modules, imported by the tests that need them (fast or
slow); the session servers are fixtures, registered by tests/conftest.py."""
