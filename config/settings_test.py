"""Settings for the test suite: the real settings with a throwaway secret key.

The test run starts its own redis-server and points the channel layer at it
(tests/conftest.py), so the suite never touches a developer's Redis data.
"""

import os

os.environ.setdefault("DJANGO_SECRET_KEY", "tests-only-secret-key-not-used-anywhere-else")

from .settings import *  # noqa: E402,F403

# Tests serve static files from the finders; only the Docker image and the
# process tests (tests/test_e2e.py) run collectstatic.
STATIC_ROOT = None
WHITENOISE_USE_FINDERS = True
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
# Sessions follow the wall clock: always open here, so no test depends on the time of day it runs at
# (tests of the session set their own hours).
MARKET_SESSION_CLOSED_HOURS = 0.0
