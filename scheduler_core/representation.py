"""The JSON shape of runs and groups, defined once so webhooks, CLI and API agree."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from scheduler_core.values import Job, JobGroup, JobRun, Reservation, Worker

if TYPE_CHECKING:  # the webhooks package imports this module
    from scheduler_core.webhooks.models import WebhookDeliveryView, WebhookEndpoint


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a `Z` suffix, the form most receivers parse without help."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def run_to_dict(job: Job, run: JobRun) -> dict[str, Any]:
    """A run as clients see it, with the job fields a receiver needs to act on it."""
    return {
        "run_id": run.run_id,
        "job_id": run.job_id,
        "status": run.status.value,
        "started_at": iso(run.started_at),
        "finished_at": iso(run.finished_at),
        "duration_seconds": run.duration_seconds,
        "exit_code": run.exit_code,
        "error": run.error,
        "artifacts": list(run.artifacts),
        "log_path": run.log_path,
        "flow_run_id": run.flow_run_id,
        "job_type": job.job_type,
        "attempt": job.attempt,
        "retry_of": job.retry_of,
        "group_id": job.group_id,
        "sequence": job.sequence,
        "priority": job.priority,
        "resource": job.resource,
        "slot": job.slot,
    }


def group_to_dict(group: JobGroup) -> dict[str, Any]:
    return {
        "group_id": group.group_id,
        "name": group.name,
        "status": group.status.value,
        "size": group.size,
        "origin": group.origin.value,
        "key": group.key,
        "cancel_requested": group.cancel_requested,
        "created_at": iso(group.created_at),
        "started_at": iso(group.started_at),
        "finished_at": iso(group.finished_at),
    }


def job_to_dict(job: Job) -> dict[str, Any]:
    """A job as the CLI and API show it (its run, if any, is `run_to_dict`)."""
    return {
        "job_id": job.job_id,
        "job_type": job.job_type,
        "status": job.status.value,
        "params": dict(job.params),
        "priority": job.priority,
        "resource": job.resource,
        "slot": job.slot,
        "attempt": job.attempt,
        "max_retries": job.max_retries,
        "retry_of": job.retry_of,
        "group_id": job.group_id,
        "sequence": job.sequence,
        "held": job.held,
        "origin": job.origin.value,
        "key": job.key,
        "external_id": job.external_id,
        "worker_id": job.worker_id,
        "not_before": iso(job.not_before),
        "created_at": iso(job.created_at),
        "queued_at": iso(job.queued_at),
        "started_at": iso(job.started_at),
        "finished_at": iso(job.finished_at),
    }


def reservation_to_dict(reservation: Reservation) -> dict[str, Any]:
    return {
        "reservation_id": reservation.reservation_id,
        "reserved_by": reservation.reserved_by,
        "worker_id": reservation.worker_id,
        "status": reservation.status.value,
        "job_id": reservation.job_id,
        "ttl_seconds": reservation.ttl_seconds,
        "created_at": iso(reservation.created_at),
        "expires_at": iso(reservation.expires_at),
        "released_at": iso(reservation.released_at),
    }


def worker_to_dict(worker: Worker, *, alive: bool, now: datetime) -> dict[str, Any]:
    """A worker with its liveness as judged by crash recovery at `now`."""
    return {
        "worker_id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "slots": worker.slots,
        "status": worker.status.value,
        "alive": alive,
        "started_at": iso(worker.started_at),
        "heartbeat_at": iso(worker.heartbeat_at),
        "heartbeat_age_seconds": round((now - worker.heartbeat_at).total_seconds(), 3),
        "stopped_at": iso(worker.stopped_at),
    }


def endpoint_to_dict(endpoint: WebhookEndpoint, *, with_secret: bool = False) -> dict[str, Any]:
    """A webhook endpoint; its secret only when asked (it is shown once, when created)."""
    data: dict[str, Any] = {
        "endpoint_id": endpoint.endpoint_id,
        "url": endpoint.url,
        "events": list(endpoint.events),
        "enabled": endpoint.enabled,
        "created_at": iso(endpoint.created_at),
    }
    if with_secret:
        data["secret"] = endpoint.secret
    return data


def delivery_to_dict(delivery: WebhookDeliveryView) -> dict[str, Any]:
    return {
        "delivery_id": delivery.delivery_id,
        "event_id": delivery.event_id,
        "event_type": delivery.event_type,
        "idempotency_key": delivery.idempotency_key,
        "endpoint_id": delivery.endpoint_id,
        "url": delivery.url,
        "status": str(delivery.status),
        "attempts": delivery.attempts,
        "next_attempt_at": iso(delivery.next_attempt_at),
        "last_status_code": delivery.last_status_code,
        "last_error": delivery.last_error,
        "created_at": iso(delivery.created_at),
        "updated_at": iso(delivery.updated_at),
        "delivered_at": iso(delivery.delivered_at),
    }
