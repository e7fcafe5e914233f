"""Test configuration.

Hypothesis explores new random examples on every developer run; in CI
(`CI` set, as .ci/run is run there) it is derandomized, so a submission's
result does not depend on the seed of the day. Discrepancies found locally
become fixed regression examples or scenario tests.
"""

import os

from hypothesis import settings

settings.register_profile("ci", derandomize=True, database=None, print_blob=True)
settings.register_profile("dev", print_blob=True)
settings.load_profile("ci" if os.environ.get("CI") else "dev")
