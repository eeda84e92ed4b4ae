"""The job types this package provides: `story` and `research`, each a Prefect flow.

A job's resource class follows from its model: `ollama/...` needs its Ollama server's one
slot, hosted APIs run beside it (`external`), the offline model is `local`. Each process
binds `ollama` to the server its OLLAMA_HOST names (ollama_servers.py).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any

import pydantic
from prefect import Flow
from prefect.exceptions import ParameterTypeError

from flows.app_database import use_database
from flows.executor import PrefectExecutor, install_prefect
from flows.llm import resolve_model
from flows.ollama_servers import OLLAMA_RESOURCE, named_server, ollama_slot_name
from flows.outputs import confined_outputs
from flows.research import check_research_params, research_pipeline
from flows.resources import declare_resources
from flows.story import check_story_params, story_pipeline
from scheduler_core.service import SchedulerService

PIPELINES: dict[str, Flow[..., Any]] = {
    "story": story_pipeline,
    "research": research_pipeline,
}
CHECKS: dict[str, Callable[[Mapping[str, Any]], None]] = {
    "story": check_story_params,
    "research": check_research_params,
}
"""Each pipeline's own checks of its params (an empty theme, a length out of range), run
at enqueue after the signature's, so bad params are refused instead of failing in a run."""


def params_validator(
    flow: Flow[..., Any], check: Callable[[Mapping[str, Any]], None]
) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """`flow.validate_parameters` then `check`, with the signature's pydantic model built
    once: Prefect builds one per call (milliseconds), which made a 20,000-member group take
    minutes to validate. Params that hold block references ($ref) take Prefect's path."""
    from prefect._internal.pydantic.validated_func import ValidatedFunction
    from prefect.exceptions import SignatureMismatchError

    model = ValidatedFunction(flow.fn, config=pydantic.ConfigDict(arbitrary_types_allowed=True))
    names = list(inspect.signature(flow.fn).parameters)  # all keyword-capable

    def validate(params: dict[str, Any]) -> dict[str, Any]:
        if '"$ref"' in json.dumps(params):
            cast = flow.validate_parameters(params)
        else:
            if params.keys() - set(names):
                raise SignatureMismatchError.from_bad_params(names, list(params))
            try:
                cast = model.validate_call_args((), dict(params))
            except pydantic.ValidationError as exc:
                raise ParameterTypeError.from_validation_error(exc) from None
        check(cast)
        return cast

    return validate


def default_model(flow: Flow[..., Any]) -> str:
    return str(inspect.signature(flow.fn).parameters["model"].default)


def resource_by_model(flow: Flow[..., Any]) -> Any:
    fallback = default_model(flow)

    def resource(params: dict[str, Any]) -> str:
        """The model's class; an Ollama job that names its server, that server's slot."""
        resource = str(resolve_model(str(params.get("model") or fallback)).resource)
        host = params.get("ollama_host")
        if resource == OLLAMA_RESOURCE and host is not None:
            return ollama_slot_name(named_server(host))
        return resource

    return resource


def install_pipelines(svc: SchedulerService) -> PrefectExecutor:
    """Register every pipeline on `svc` and run its jobs as Prefect flow runs; the Ollama
    server this process calls takes one job at a time (the `ollama` resource's cap, bound
    to the server's slot)."""
    executor = install_prefect(svc)
    # Outputs, usage and the novelty index go to this scheduler's database (app_database.py).
    use_database(svc.db.engine.url.render_as_string(hide_password=False))
    declare_resources(svc)
    svc.bind_resource(OLLAMA_RESOURCE, ollama_slot_name())
    for job_type, flow in PIPELINES.items():
        # The flow's signature, then where its output_dir may point (outputs.py).
        validate = confined_outputs(params_validator(flow, CHECKS[job_type]))
        svc.register(job_type, flow, resource=resource_by_model(flow), validate=validate)
    return executor
