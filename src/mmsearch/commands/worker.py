"""`mmsearch worker`: run import jobs from the catalog, without HTTP, beside servers started with `--no-jobs`."""

from __future__ import annotations

import signal
import threading
import time
from typing import Annotated

import typer

from mmsearch.commands.common import engine, errors, out


def worker(
    batch_size: Annotated[int, typer.Option("--batch-size", min=1, max=100_000, help="Items per checkpoint.")] = 500,
) -> None:
    """Take queued import jobs from the catalog and run them, until stopped (Ctrl-C, SIGTERM).

    Any number of workers (and servers running jobs) may share a catalog: each job is claimed by one, which
    checkpoints after every batch and beats its heart; a job whose worker stopped beating for
    MMSEARCH_JOB_LEASE_S is taken over by another at its last checkpoint. Staged items live under
    MMSEARCH_HOME/jobs, so workers on other hosts need that folder (and the tables) on shared storage.
    """
    from mmsearch.ingest.jobs import JobRunner

    with errors(False):
        mm = engine()
        runner = JobRunner(mm, batch_size=batch_size)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    out.print(f"worker {runner.worker}: taking import jobs from the catalog (lease {runner.stale_after_s:.0f} s)")
    runner.start()
    seen: set[str] = set()
    try:
        while not stop.wait(1.0):
            for job in mm.catalog.jobs.list(None, "running", 50):
                if job.worker == runner.worker and job.id not in seen:
                    seen.add(job.id)
                    out.print(f"job {job.id}: {job.dataset_id}, {job.total} items, from item {job.done}")
    finally:
        out.print("stopping: the job in hand stops at its next checkpoint or is resumed by another worker")
        started = time.monotonic()
        runner.stop()
        out.print(f"stopped in {time.monotonic() - started:.1f} s")
