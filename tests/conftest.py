"""Shared test set-up. Fixture modules are plugins so each area keeps its own file."""

pytest_plugins = [
    "tests.fixtures_docker",
    "tests.fixtures_agent",
    "tests.fixtures_alertmanager",
    "tests.fixtures_images",
]
