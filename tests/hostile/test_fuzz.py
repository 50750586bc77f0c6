"""Schemathesis against the API's own OpenAPI schema (/api/schema/), served by the
real processes (Nginx -> Gunicorn): every operation, generated valid and invalid
input, as an authenticated user who owns wallets with money (a service account on
/service/ operations). No 5xx; every status and body is the documented one."""

from __future__ import annotations

import itertools
import json
import os
import threading
from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import checks
from schemathesis.core.parameters import ParameterLocation
from schemathesis.generation import GenerationMode

from tests.hostile.conftest import figures_path
from tests.hostile.seed import login, seed_users

pytestmark = pytest.mark.hostile

# Generated cases per operation (valid and invalid input). The default keeps
# `make hostile` bounded (about 25 s for this module); HOSTILE_FUZZ_EXAMPLES=100
# or more is the deeper nightly run (README, "the hostile suite").
EXAMPLES_PER_OPERATION = int(os.environ.get("HOSTILE_FUZZ_EXAMPLES", "25"))

CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.ignored_auth,
]
# DRF ignores a malformed optional query parameter it does not need (an invalid
# `limit` falls back to the page size, an empty filter means "no filter"): that
# leniency is by design, so "invalid data must be rejected" is checked on bodies
# and paths (POST/PUT/PATCH) only, and on JSON bodies: in a multipart form an empty
# field is how "no value" is spelled, and DRF reads it as null where null is allowed.
BODY_CHECKS = [*CHECKS, checks.negative_data_rejection]


def checks_for(case) -> list:
    """BODY_CHECKS for a JSON body that is valid or itself the invalid part. A case
    whose only invalid parts are its path or headers reaches the server repaired
    (FuzzWorld.prepare sends a real token, and every other case real ids): a 200
    for it is right, not "invalid data accepted"."""
    if case.method == "GET" or case.media_type != "application/json":
        return CHECKS
    meta = case.meta
    if (
        meta is not None
        and meta.generation.mode.is_negative
        and not meta.is_negative_at(ParameterLocation.BODY)
    ):
        return CHECKS
    return BODY_CHECKS


class FuzzWorld:
    """The seeded users, their tokens and real object ids, and what was seen."""

    def __init__(self, stack) -> None:
        self.stack = stack
        people = seed_users(
            stack,
            [
                {
                    "email": "fuzz-owner@example.com",
                    "balances": {"KZT": "1000000.00", "USD": "5000.00"},
                    "topups": ["100.00", "200.00", "300.00"],
                },
                {"email": "fuzz-other@example.com", "balances": {"EUR": "10.00"}},
                {"email": "fuzz-provider@example.com", "service": True},
            ],
        )
        self.owner, self.other, self.provider = people
        self.tokens = {
            "owner": login(stack, self.owner["email"])["access"],
            "provider": login(stack, self.provider["email"])["access"],
        }
        kzt = self.owner["wallets"]["KZT"]
        self.real_ids = {
            "id": kzt["id"],
            "wallet_id": kzt["id"],
            "topup_id": self.owner["topups"][0],
        }
        self.other_number = self.other["wallets"]["EUR"]["number"]
        self._turn = itertools.count()
        self.statuses: Counter[str] = Counter()
        self._lock = threading.Lock()

    def prepare(self, case) -> dict[str, str]:
        """Every other case of an operation with an id in its path uses a real one
        (the owner's KZT wallet, a top-up), so the fuzzer gets past the 404."""
        if case.path_parameters and next(self._turn) % 2 == 0:
            for name in case.path_parameters:
                if name in self.real_ids:
                    case.path_parameters[name] = self.real_ids[name]
        if case.operation.path.startswith("/api/v1/service/"):
            return {"Authorization": f"Bearer {self.tokens['provider']}"}
        return {"Authorization": f"Bearer {self.tokens['owner']}"}

    def record(self, case, status: int) -> None:
        with self._lock:
            self.statuses[f"{case.method} {case.operation.path} {status}"] += 1


@pytest.fixture(scope="module")
def fuzz_world(web_stack):
    world = FuzzWorld(web_stack)
    yield world
    by_class: Counter[str] = Counter()
    for key, count in world.statuses.items():
        by_class[f"{key.rsplit(' ', 1)[1][0]}xx"] += count
    figures_path("fuzz.json").write_text(
        json.dumps(
            {
                "examples_per_operation": EXAMPLES_PER_OPERATION,
                "requests": sum(world.statuses.values()),
                "by_status_class": dict(sorted(by_class.items())),
                "by_operation_and_status": dict(sorted(world.statuses.items())),
            },
            indent=2,
        )
    )


def _schema_document() -> dict:
    """The schema /api/schema/ serves, generated in-process at collection time so
    pytest can list one test per operation (test_the_served_schema_is_the_fuzzed_one
    proves they are the same document)."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    document = SchemaGenerator().get_schema(request=None, public=True)
    return json.loads(OpenApiJsonRenderer().render(document))


SCHEMA_DOCUMENT = _schema_document()
schema = schemathesis.openapi.from_dict(SCHEMA_DOCUMENT)
schema.config.generation.update(
    modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
)


def test_the_served_schema_is_the_fuzzed_one(web_stack):
    response = web_stack.request("GET", "/api/schema/?format=json")
    assert response.status == 200
    assert response.json() == SCHEMA_DOCUMENT


@schema.parametrize()
@settings(
    max_examples=EXAMPLES_PER_OPERATION,
    deadline=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    database=None,
)
def test_every_operation_answers_as_documented(case, fuzz_world):
    """Whatever the input: never a 5xx, and status, headers and body as the schema
    documents them."""
    headers = fuzz_world.prepare(case)
    # Gunicorn directly: through Nginx, its per-address rate limit on auth/ would
    # turn most generated auth requests into Nginx's own (documented) 429.
    response = case.call(base_url=fuzz_world.stack.web_url, headers=headers, timeout=15)
    fuzz_world.record(case, response.status_code)
    case.validate_response(response, checks=checks_for(case), headers=headers)
