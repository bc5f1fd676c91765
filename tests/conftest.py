"""Shared test set-up. Fixture modules are plugins so each area keeps its own file."""

import os

from hypothesis import settings

# Under CI the property and fuzz tests draw the same examples every run (derandomize): a CI run
# judges the change, not the luck of the draw. Run them locally (or with HYPOTHESIS_PROFILE=explore)
# to search new ground; anything found becomes a fixed regression case.
settings.register_profile("ci", derandomize=True)
settings.register_profile("explore", max_examples=2000)
if os.environ.get("HYPOTHESIS_PROFILE"):
    settings.load_profile(os.environ["HYPOTHESIS_PROFILE"])
elif os.environ.get("CI", "").strip().lower() == "true":
    settings.load_profile("ci")

pytest_plugins = [
    "tests.fixtures_docker",
    "tests.fixtures_agent",
    "tests.fixtures_alertmanager",
    "tests.fixtures_images",
]
