"""The product's settings plus the benchmark's own URLconf (the framework floor).

The floor view is served by the very same processes, middleware and database pool
as the product, but it is reachable only when this module is the settings module:
`make bench` starts the stack with it; the product never does.
"""

from wallet_project.settings import *  # noqa: F403

ROOT_URLCONF = "bench.urls"
