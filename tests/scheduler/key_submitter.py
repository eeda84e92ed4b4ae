"""A submitting process for the idempotency race: submits the same keys as its twin.

`python -m tests.scheduler.key_submitter URL OUT GO_FILE N`: jobs keyed `job-<i>` and
groups keyed `group-<i>` for i < N, the ids it got back written to OUT as JSON.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from scheduler_core import SchedulerService


def main() -> int:
    url, out, go, n = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]), int(sys.argv[4])
    got: dict[str, int | None] = {}
    with SchedulerService.open(url, db_retry_seconds=30) as svc:
        svc.register("noop", lambda params: None)
        deadline = time.monotonic() + 30
        while not go.exists() and time.monotonic() < deadline:
            time.sleep(0.005)  # start line: both processes begin together
        for i in range(n):
            got[f"job-{i}"] = svc.enqueue_job("noop", {"i": i}, key=f"job-{i}").job_id
            group, _ = svc.create_job_group(
                [{"job_type": "noop", "params": {"g": i}}] * 2, name=f"g{i}", key=f"group-{i}"
            )
            got[f"group-{i}"] = group.group_id
    out.write_text(json.dumps(got))
    return 0


if __name__ == "__main__":
    sys.exit(main())
