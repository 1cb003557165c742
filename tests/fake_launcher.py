"""The sweep loop's launcher in memory (cvsweep/sweep/launchers.py's protocol): each wait ends
the oldest job with a prepared outcome. The loop's tests use it instead of Hydra's launcher."""

from __future__ import annotations

from concurrent.futures import Future

from hydra.core.utils import JobReturn, JobStatus

MAX_JOBS = 50  # a loop that runs past it is broken; the test fails instead of hanging


def job_return(overrides: tuple, value) -> JobReturn:
    """What Hydra's launcher returns for a job that ended with ``value`` (an exception: failed)."""
    failed = isinstance(value, BaseException)
    ret = JobReturn(overrides=list(overrides), status=JobStatus.FAILED if failed else JobStatus.COMPLETED)
    ret.return_value = value
    return ret


class FakeLauncher:
    """Each wait ends the oldest job with ``outcome(job)`` (a value, or an exception for a failed
    job). Hooks: ``on_start(first_job)`` before jobs start, ``before_end(job)`` before a job ends
    (raising there means the job never ends), ``on_wait(job)`` after it ended."""

    def __init__(self, outcome, on_wait=None, on_start=None, before_end=None):
        self.outcome, self.on_wait, self.on_start, self.before_end = outcome, on_wait, on_start, before_end
        self.pending: list[tuple[int, tuple, Future]] = []
        self.started: list[int] = []
        self.most_in_flight = 0
        self.interrupted = False

    def start(self, overrides, first_job: int) -> list[Future]:
        if self.on_start is not None and overrides:
            self.on_start(first_job)
        futures = []
        for job, job_overrides in enumerate(overrides, first_job):
            futures.append(Future())
            self.pending.append((job, job_overrides, futures[-1]))
            self.started.append(job)
        assert len(self.started) <= MAX_JOBS, "the loop never stops starting trials"
        self.most_in_flight = max(self.most_in_flight, len(self.pending))
        return futures

    def wait(self, futures) -> set:
        if self.pending:
            job, overrides, future = self.pending.pop(0)
            if self.before_end is not None:
                self.before_end(job)
            future.set_result(job_return(overrides, self.outcome(job)))
            if self.on_wait is not None:
                self.on_wait(job)
        return {f for f in futures if f.done()}

    def interrupt(self) -> None:
        self.interrupted = True
        for _, overrides, future in self.pending:
            future.set_result(job_return(overrides, RuntimeError("interrupted: remote job cancelled")))
        self.pending.clear()
