"""Is the worker that owns a RUNNING job still alive? The one question crash recovery asks."""

from __future__ import annotations

import os
import socket
from datetime import datetime, timedelta

import psutil

from scheduler_core.statuses import WorkerStatus
from scheduler_core.values import Worker

HOST = socket.gethostname()


def process_started_at(pid: int | None = None) -> float:
    """The process start time tells a live pid from a recycled one."""
    return float(psutil.Process(pid or os.getpid()).create_time())


def pid_is_alive(pid: int, started_at: float) -> bool:
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return not started_at or abs(proc.create_time() - started_at) < 1.0
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # it exists; we may just not inspect it


def worker_is_alive(
    worker: Worker | None,
    *,
    now: datetime,
    heartbeat_timeout: float,
    host: str = HOST,
    trust_heartbeats: bool = True,
) -> bool:
    """Same host: the pid decides. Other hosts: a heartbeat within the timeout decides,
    unless heartbeats cannot be trusted now (the database was just unreachable, so no
    worker could beat): then another host's worker counts as alive."""
    if worker is None or worker.status != WorkerStatus.RUNNING:
        return False
    if worker.host == host:
        return pid_is_alive(worker.pid, worker.process_started_at)
    if not trust_heartbeats:
        return True
    return now - worker.heartbeat_at <= timedelta(seconds=heartbeat_timeout)
