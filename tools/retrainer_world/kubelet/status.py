"""Pod and container status documents, as a kubelet would post them.

The Job controller reads exactly these fields (phase, containerStatuses[].state.terminated
.exitCode, conditions such as DisruptionTarget), so they are computed here as pure functions
of the runner's view of each container. containerStatuses lists are atomic in a strategic
merge patch (sent whole); conditions merge by type, so a condition another writer added
(DisruptionTarget from the Eviction API) survives our patches.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = [
    "ContainerRun",
    "exit_code_of",
    "pod_status",
    "terminal_phase",
]

Obj = dict[str, Any]
LOCAL_IP = "127.0.0.1"


def exit_code_of(returncode: int) -> int:
    """Popen's returncode as a container exit code (killed by signal N -> 128+N)."""
    return 128 - returncode if returncode < 0 else returncode


@dataclass
class ContainerRun:
    """What the runner knows about one container of a pod."""

    name: str
    image: str
    init: bool = False
    state: str = "waiting"  # waiting | running | terminated
    reason: str = "ContainerCreating"
    message: str = ""
    started_at: str | None = None
    finished_at: str | None = None
    exit_code: int | None = None
    restart_count: int = 0
    last_terminated: Obj | None = None
    pid: int | None = None
    ran_before: bool = False  # a new start is then a restart (restartCount + 1)

    def wait(self, reason: str, message: str = "") -> None:
        if self.state == "terminated":  # CrashLoopBackOff: the old end becomes lastState
            self.last_terminated = self.terminated()
        self.state, self.reason, self.message = "waiting", reason, message

    def run(self, pid: int, stamp: str) -> None:
        if self.state == "terminated":
            self.last_terminated = self.terminated()
        if self.ran_before:
            self.restart_count += 1
        self.ran_before = True
        self.state, self.reason, self.message = "running", "", ""
        self.pid, self.started_at, self.finished_at, self.exit_code = pid, stamp, None, None

    def end(self, exit_code: int, stamp: str, message: str = "", reason: str = "") -> None:
        self.state, self.exit_code, self.finished_at = "terminated", exit_code, stamp
        self.ran_before = True
        self.reason = reason or ("Completed" if exit_code == 0 else "Error")
        self.message = message

    @property
    def succeeded(self) -> bool:
        return self.state == "terminated" and self.exit_code == 0

    def terminated(self) -> Obj:
        term: Obj = {
            "exitCode": self.exit_code if self.exit_code is not None else 137,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
        }
        if self.message:
            term["message"] = self.message
        if self.pid is not None:
            term["containerID"] = f"local://{self.pid}"
        return {k: v for k, v in term.items() if v is not None}

    def status(self) -> Obj:
        if self.state == "running":
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.state == "terminated":
            state = {"terminated": self.terminated()}
        else:
            waiting: Obj = {"reason": self.reason}
            if self.message:
                waiting["message"] = self.message
            state = {"waiting": waiting}
        out: Obj = {
            "name": self.name,
            "image": self.image,
            "imageID": f"local://{self.image}",
            "ready": self.state == "running" if not self.init else self.succeeded,
            "restartCount": self.restart_count,
            "started": self.state == "running",
            "state": state,
            "lastState": {"terminated": self.last_terminated} if self.last_terminated else {},
        }
        if self.pid is not None:
            out["containerID"] = f"local://{self.pid}"
        return out


def terminal_phase(mains: list[ContainerRun]) -> str:
    """Succeeded when every main container exited 0, else Failed."""
    return "Succeeded" if mains and all(c.succeeded for c in mains) else "Failed"


def _condition(kind: str, ok: bool, stamp: str, previous: Obj, reason: str = "") -> Obj:
    status = "True" if ok else "False"
    before = previous.get(kind) or {}
    since = before.get("lastTransitionTime") if before.get("status") == status else None
    cond: Obj = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": since or stamp,
    }
    if reason and not ok:
        cond["reason"] = reason
    return cond


def pod_status(
    pod: Obj,
    phase: str,
    inits: list[ContainerRun],
    mains: list[ContainerRun],
    *,
    stamp: str,
    started: bool,
    reason: str = "",
    message: str = "",
) -> Obj:
    """The status patch for `pod` (conditions keep their transition times)."""
    previous = {c["type"]: c for c in (pod.get("status") or {}).get("conditions") or []}
    terminal = phase in ("Succeeded", "Failed")
    initialized = all(c.succeeded for c in inits)
    ready = phase == "Running" and all(c.state == "running" for c in mains)
    not_ready = "PodCompleted" if terminal else "ContainersNotReady"
    status: Obj = {
        "phase": phase,
        "hostIP": LOCAL_IP,
        "hostIPs": [{"ip": LOCAL_IP}],
        "conditions": [
            _condition("PodReadyToStartContainers", started and not terminal, stamp, previous),
            _condition(
                "Initialized",
                initialized,
                stamp,
                previous,
                "PodCompleted" if terminal else "ContainersNotInitialized",
            ),
            _condition("ContainersReady", ready, stamp, previous, not_ready),
            _condition("Ready", ready, stamp, previous, not_ready),
        ],
        "containerStatuses": [c.status() for c in mains],
    }
    if inits:
        status["initContainerStatuses"] = [c.status() for c in inits]
    if started:
        status["podIP"] = LOCAL_IP
        status["podIPs"] = [{"ip": LOCAL_IP}]
        status["startTime"] = (pod.get("status") or {}).get("startTime") or stamp
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    return status
