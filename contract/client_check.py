"""A client generated from the served OpenAPI document, used as a client developer would.

`make contract` generates the package `orchestrator_client` with openapi-python-client
and runs this with it on PYTHONPATH:

    ORCHESTRATOR_TOKEN=orch_... python contract/client_check.py http://127.0.0.1:PORT

It authenticates with the token as the document's bearer scheme says, submits a task, waits until it is final, reads it, lists and searches, and reads a
refused request as a Problem. Any surprise is an exception, and a non-zero exit.
"""

import os
import sys
import time
import uuid

from orchestrator_client import AuthenticatedClient, Client
from orchestrator_client.api.dashboard import search_tasks, task_counts
from orchestrator_client.api.tasks import get_task, list_tasks, orchestrate
from orchestrator_client.models import (
    OrchestrateRequest,
    OrchestrateRequestPayloadItem,
    Problem,
    ServiceCallBody,
    Status,
    TaskDetailResponse,
    TaskListResponse,
    TaskResponse,
    TaskSearchResponse,
)

FINAL = {Status.COMPLETED, Status.FAILED}


def expect(value, kind, what):
    if not isinstance(value, kind):
        raise SystemExit(f"{what}: expected {kind.__name__}, got {value!r}")
    return value


def main(base_url: str) -> None:
    anonymous = Client(base_url=base_url, raise_on_unexpected_status=True)
    unauthenticated = task_counts.sync_detailed(client=anonymous)
    problem = expect(unauthenticated.parsed, Problem, "a request without a token")
    if unauthenticated.status_code != 401 or problem.type_ != "/problems/unauthenticated":
        raise SystemExit(f"without a token: {unauthenticated.status_code} {problem!r}")
    client = AuthenticatedClient(
        base_url=base_url,
        token=os.environ["ORCHESTRATOR_TOKEN"],
        raise_on_unexpected_status=True,
    )
    name = f"generated client {uuid.uuid4()}"
    call = ServiceCallBody(scenario_id=uuid.uuid4(), business_type_id=uuid.uuid4())
    request = OrchestrateRequest(
        task_name=name,
        task_description="submitted by contract/client_check.py",
        payload=[OrchestrateRequestPayloadItem(revenue=call, rebates=call)],
    )
    accepted = orchestrate.sync_detailed(client=client, body=request)
    if accepted.status_code != 202:
        raise SystemExit(f"submit: {accepted.status_code} {accepted.content!r}")
    task = expect(accepted.parsed, TaskResponse, "submit")
    location = accepted.headers.get("location")
    if location != f"/api/tasks/{task.task_id}":
        raise SystemExit(f"submit: Location {location!r}")

    deadline = time.monotonic() + 60
    while True:
        detail = expect(
            get_task.sync(client=client, task_id=task.task_id), TaskDetailResponse, "get"
        )
        if detail.status in FINAL:
            break
        if time.monotonic() > deadline:
            raise SystemExit(f"task {task.task_id} still {detail.status} after 60 s")
        time.sleep(0.2)
    services = sorted(sr.service_name for sr in detail.service_requests)
    if services != ["rebates", "revenue"]:
        raise SystemExit(f"get: service requests {services}")

    page = expect(list_tasks.sync(client=client, limit=5), TaskListResponse, "list")
    if task.task_id not in {t.task_id for t in page.tasks}:
        raise SystemExit("list: the new task is not on the first page")
    found = expect(
        search_tasks.sync(client=client, q=name), TaskSearchResponse, "search"
    )
    if [t.task_id for t in found.tasks] != [task.task_id]:
        raise SystemExit(f"search: {[t.task_id for t in found.tasks]}")
    # A few tasks: the search covered them all, so it has nowhere further to go.
    if found.next_cursor is not None or found.searched_back_to is not None:
        raise SystemExit(f"search: not complete: {found!r}")
    counts = task_counts.sync(client=client)
    if counts is None or counts.total < 1:
        raise SystemExit(f"counts: {counts!r}")

    refused = orchestrate.sync_detailed(
        client=client,
        body=OrchestrateRequest(
            task_name="refused",
            payload=[OrchestrateRequestPayloadItem(revenue=call)],
        ),
        idempotency_key="",
    )
    # An empty key is refused (400), and the client reads the answer as a Problem.
    problem = expect(refused.parsed, Problem, "an invalid Idempotency-Key")
    if refused.status_code != 400 or problem.status != 400 or not problem.detail:
        raise SystemExit(f"refused: {refused.status_code} {problem!r}")

    invalid = OrchestrateRequest(
        task_name=" ",
        payload=[OrchestrateRequestPayloadItem(revenue=call)],
    )
    rejected = orchestrate.sync_detailed(client=client, body=invalid)
    problem = expect(rejected.parsed, Problem, "a blank name")
    pointers = [error.pointer for error in problem.errors or []]
    if rejected.status_code != 422 or pointers != ["/task_name"]:
        raise SystemExit(f"422: {rejected.status_code} {pointers}")
    print(f"client_check: task {task.task_id} ended {detail.status.value}; list, search, counts and problems read")


if __name__ == "__main__":
    main(sys.argv[1])
