"""The send function's queue path, now made on its first batch: its idempotency records keep the key
they had when it was made at init (module and function name are part of it), so a job taken before a
deploy is still recognised after it."""

from __future__ import annotations

from typing import Any

from tests.helpers import HOT, raw_redis, seed_lead
from tests.integration.test_send_function import NOON, deliver, job


def test_idempotency_records_keep_their_key(send: Any, lambda_context: Any, redis_url: str) -> None:
    seed_lead("hot-1", HOT, profile=NOON)

    assert deliver(send, lambda_context, job()) == {"batchItemFailures": []}

    keys = [key for key in raw_redis(redis_url).keys("*") if b"send_once" in key]  # every master, in a cluster
    # AWS_LAMBDA_FUNCTION_NAME (Powertools' "test-func" outside Lambda), the module, the function's name
    assert [key.decode().partition("#")[0] for key in keys] == ["test-func.send_app.send_once"]


def test_the_queue_path_is_made_once_per_environment(send: Any, lambda_context: Any) -> None:
    seed_lead("hot-1", HOT, profile=NOON)
    deliver(send, lambda_context, job(job_id="job-1"))
    first = (send.processor(), send.idempotency(), send._once())

    deliver(send, lambda_context, job(job_id="job-2"))

    assert (send.processor(), send.idempotency(), send._once()) == first
