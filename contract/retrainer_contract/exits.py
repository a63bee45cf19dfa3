"""The trainer's exit codes: the only signal the Job's podFailurePolicy reads.

0    verified: version N is stored and every copy checked
1    infrastructure (MinIO/MLflow unreachable, a crash): the Job retries
3    bad input (dataset, base model, corrections, spec): permanent, the Job fails at once
143  SIGTERM (128 + 15): evicted or preempted; the next pod resumes from weights/last.pt
"""

from __future__ import annotations

__all__ = ["BAD_INPUT", "INFRA", "OK", "PREEMPTED"]

OK = 0
INFRA = 1
BAD_INPUT = 3
PREEMPTED = 143
