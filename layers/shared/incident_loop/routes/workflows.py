"""Workflows over HTTP (seed 004): submit a run, read it with its audited ops, verify it by replay; and the
tenant's notification targets, to which the loop announces through workflow runs.

The workflow API's router (incident_loop.api assembles it for that function alone, so the skills its domain
loads are loaded by no other function); errors map to HTTP in incident_loop.http.error_map. The notification
routes import their domain when first called: it brings the loop's unit of work and stores (and the matcher
with them), which the workflow routes never need at init.
"""

from __future__ import annotations

from typing import Annotated, Any

from aws_lambda_powertools.event_handler import Response, content_types
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Header, Path

from incident_loop.http.identity import caller, tenant_id
from incident_loop.schemas.notifications import NotificationEvent, NotificationSettings, NotificationTargets
from incident_loop.schemas.workflows import OpView, ReplayReport, WorkflowDefinition, WorkflowRunView
from incident_loop.workflows.replay import replay_workflow
from incident_loop.workflows.service import op_view, submit_workflow, workflow_view

router = Router()
NO_RUN = {404: {"description": "No workflow run of the tenant with this id"}}
IDEMPOTENCY_KEY = r"^[\x21-\x7e]{1,255}$"
MAX_OP_INDEX = 2**31 - 1  # m11_audit.ops.op_index is an INTEGER


@router.post("/workflows", summary="Run a workflow: its steps, in order, each op audited",
             responses={202: {"description": "stored and queued (or, for a repeated Idempotency-Key, the run the "
                                             "first request made, as it is now); poll status_url"},
                        409: {"description": "The Idempotency-Key was used with another definition"}})
def post_workflow(definition: WorkflowDefinition,
                  idempotency_key: Annotated[str | None, Header(
                      alias="Idempotency-Key", pattern=IDEMPOTENCY_KEY,
                      description="The client's key for this submission (1 to 255 visible ASCII characters): "
                                  "a request repeated with it makes no second run")] = None,
                  ) -> Response[dict[str, Any]]:
    accepted = submit_workflow(definition, tenant_id(), idempotency_key=idempotency_key)
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted.model_dump())


@router.get("/workflows/<workflow_run_id>", summary="A workflow run's status and its audited ops", responses=NO_RUN)
def get_workflow(workflow_run_id: str) -> WorkflowRunView:
    return workflow_view(tenant_id(), workflow_run_id)


@router.get("/workflows/<workflow_run_id>/ops/<op_index>", summary="One audited op of a run, whole",
            responses={404: {"description": "No workflow run of the tenant with this id, or no such op in it"}})
def get_workflow_op(workflow_run_id: str, op_index: Annotated[int, Path(ge=0, le=MAX_OP_INDEX)]) -> OpView:
    # As GET /workflows/{id} names it: pydantic's lax int also read /ops/01, /ops/+1, /ops/1.0 as op 1, /ops/1_0 as 10.
    if router.current_event.path.rstrip("/").rsplit("/", 1)[-1] != str(op_index):  # a trailing slash routes here too
        raise RequestValidationError([{"type": "value_error", "loc": ("path", "op_index"),
                                       "msg": "an op index is decimal digits, without a sign or leading zeros"}])
    return op_view(tenant_id(), workflow_run_id, op_index)


@router.post("/workflows/<workflow_run_id>/replay", summary="Verify a finished run by replay (no skill is called)",
             responses={**NO_RUN, 409: {"description": "The run has not finished"}})
def post_replay(workflow_run_id: str) -> ReplayReport:
    return replay_workflow(tenant_id(), workflow_run_id)


# --- notification targets: where the loop announces checkpoints and activated policies (as workflow runs) ---

EVENT_PATH = {404: {"description": "The tenant has no targets for this event"}}


@router.get("/notifications", summary="Where the loop announces new checkpoints and activated policies")
def get_notifications() -> NotificationSettings:
    from incident_loop.workflows.notifications import targets_of

    return targets_of(tenant_id())


@router.put("/notifications/<event>", summary="Announce an event to Slack and/or a signed webhook")
def put_notifications(event: NotificationEvent, targets: NotificationTargets) -> NotificationSettings:
    from incident_loop.workflows.notifications import set_targets

    return set_targets(tenant_id(), event, targets, caller())


@router.delete("/notifications/<event>", summary="Stop announcing an event",
               responses={**EVENT_PATH, 204: {"description": "removed"}})
def delete_notifications(event: NotificationEvent) -> Response[None]:
    from incident_loop.workflows.notifications import remove_targets

    remove_targets(tenant_id(), event)
    return Response(status_code=204, body=None)
