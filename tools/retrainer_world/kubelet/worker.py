"""One pod's life on the local node: set up, run its containers, report, clean up.

A `PodWorker` thread owns a pod from the moment it is bound to this node until its final
status is posted: volumes, then init containers in order, then the main containers as
process groups; restartPolicy, activeDeadlineSeconds and graceful deletion (SIGTERM, then
SIGKILL after the grace period) follow the kubelet, so the Job controller sees the same
phases, exit codes and conditions it would see on a real node. A pod whose namespace asks
for containers runs as one or not at all: without an engine it fails with reason
`ContainerRuntimeUnavailable`, never falling back to a host process.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from retrainer_world.kubelet.engine import RUNTIME_UNAVAILABLE, Engine, unavailable_message
from retrainer_world.kubelet.kube import ApiException, Kube
from retrainer_world.kubelet.kube import now as timestamp
from retrainer_world.kubelet.launch import (
    RUNTIME_LABEL,
    RUNTIMES,
    Launch,
    LaunchContext,
    build_launch,
    pod_dir,
)
from retrainer_world.kubelet.status import ContainerRun, exit_code_of, pod_status, terminal_phase

__all__ = ["PodWorker"]

Obj = dict[str, Any]
log = logging.getLogger("retrainer_world.kubelet")
RETRY_SECONDS = 3.0
BACKOFF_BASE, BACKOFF_MAX = 2.0, 60.0
EVICTION_CHECK_SECONDS = 5.0  # how often container mode measures emptyDirs


class Proc:
    """A started container: its process group (or its podman run) and where its output goes."""

    def __init__(
        self, run: ContainerRun, launch: Launch, wake: threading.Event, engine: Engine | None
    ) -> None:
        self.run, self.launch, self.engine = run, launch, engine
        launch.message_file.write_bytes(b"")
        launch.log_file.parent.mkdir(parents=True, exist_ok=True)
        with launch.log_file.open("ab") as fh:
            self.log_offset = fh.tell()
            self.popen = subprocess.Popen(
                launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, killed as a whole
            )
        threading.Thread(target=self._wait, args=(wake,), daemon=True).start()

    def _wait(self, wake: threading.Event) -> None:
        self.popen.wait()
        wake.set()

    def signal(self, sig: int) -> None:
        if self.launch.engine_name and self.engine is not None:
            # The container's own init gets the signal (as from the kubelet's runtime);
            # podman run then exits with the container's status.
            self.engine.kill(self.launch.engine_name, signal.Signals(sig).name)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)


class PodWorker(threading.Thread):
    def __init__(self, kube: Kube, ctx: LaunchContext, pod: Obj, adopt: bool) -> None:
        meta = pod["metadata"]
        super().__init__(name=f"pod-{meta['namespace']}/{meta['name']}", daemon=True)
        self.kube, self.ctx, self.pod, self.adopt = kube, ctx, pod, adopt
        self.ns, self.pod_name, self.uid = meta["namespace"], meta["name"], meta["uid"]
        self.wake = threading.Event()
        self.stopping = False  # the runner exits: kill, report nothing
        self.removed = False  # the pod object is gone from the API
        spec = pod["spec"]
        self.restart_policy = spec.get("restartPolicy", "Always")
        self.inits = [
            ContainerRun(c["name"], c.get("image", ""), init=True)
            for c in spec.get("initContainers") or []
        ]
        self.mains = [ContainerRun(c["name"], c.get("image", "")) for c in spec["containers"]]
        self.specs = {c["name"]: c for c in (spec.get("initContainers") or []) + spec["containers"]}
        self.procs: dict[str, Proc] = {}
        self.started = False
        self.runtime = ctx.runtime
        self.next_eviction_check = 0.0
        self.kv = f"namespace={self.ns} pod={self.pod_name}"

    # events from the runner --------------------------------------------------------------
    def update(self, pod: Obj) -> None:
        self.pod = pod
        self.wake.set()

    def gone(self) -> None:
        self.removed = True
        self.wake.set()

    def shutdown(self) -> None:
        self.stopping = True
        self.wake.set()

    # helpers -----------------------------------------------------------------------------
    @property
    def deleting(self) -> bool:
        return bool(self.pod["metadata"].get("deletionTimestamp"))

    def report(self, phase: str, reason: str = "", message: str = "", final: bool = False) -> None:
        status = pod_status(
            self.pod,
            phase,
            self.inits,
            self.mains,
            stamp=timestamp(),
            started=self.started,
            reason=reason,
            message=message,
        )
        for attempt in range(10 if final else 1):
            try:
                self.kube.patch_pod_status(self.ns, self.pod_name, status)
                return
            except ApiException as exc:
                if exc.status == 404:
                    return
                log.warning("event=status_failed %s status=%s", self.kv, exc.status)
            except Exception as exc:
                log.warning("event=status_failed %s error=%r", self.kv, exc)
            time.sleep(min(2**attempt, 10))

    def delete_now(self) -> None:
        try:
            self.kube.delete_pod_now(self.ns, self.pod_name, self.uid)
        except Exception as exc:
            log.warning("event=delete_failed %s error=%r", self.kv, exc)

    def deadline(self) -> float | None:
        seconds = self.pod["spec"].get("activeDeadlineSeconds")
        start = (self.pod.get("status") or {}).get("startTime")
        if seconds is None or not start:
            return None
        return datetime.fromisoformat(start.replace("Z", "+00:00")).timestamp() + seconds

    def interrupted(self) -> bool:
        return self.stopping or self.removed or self.deleting

    # lifecycle ---------------------------------------------------------------------------
    def run(self) -> None:
        try:
            self.lifecycle()
        except Exception:
            log.exception("event=worker_crashed %s", self.kv)
            self.kill(2)
            self.report("Failed", "RunnerError", "pod runner crashed on this pod", final=True)

    def lifecycle(self) -> None:
        if self.adopt and self.adopt_orphan():
            return
        if self.deleting:
            self.delete_now()
            return
        self.runtime = self.choose_runtime()
        if self.interrupted():
            self.finish_interrupted()
            return
        if self.runtime == "container" and not self.has_engine():
            self.refuse()
            return
        if not self.adopt:  # an adopted pod is Running already; never step back
            self.report("Pending")
        folders = self.prepare()
        if folders is None:
            self.finish_interrupted()
            return
        self.started = True
        for run in self.mains if self.inits else []:
            run.wait("PodInitializing")
        for run in self.inits:
            if not self.run_to_end([run], folders):
                return
        self.run_to_end(self.mains, folders)

    def adopt_orphan(self) -> bool:
        """A pod a previous runner started; its processes are gone. True when settled."""
        old = {c["name"]: c for c in (self.pod.get("status") or {}).get("containerStatuses") or []}
        for run in self.mains:
            before = old.get(run.name) or {}
            run.restart_count = int(before.get("restartCount", 0))
            run.started_at = ((before.get("state") or {}).get("running") or {}).get("startedAt")
            run.ran_before = True
        if self.restart_policy != "Never" and not self.deleting:
            for run in self.mains:  # the lost container is the one before the restart
                run.last_terminated = {
                    "exitCode": 137,
                    "reason": "ContainerStatusUnknown",
                    "startedAt": run.started_at,
                    "finishedAt": timestamp(),
                }
            return False  # the kubelet would restart the containers: so do we
        stamp = timestamp()
        self.started = True
        for run in self.mains:
            run.end(
                137,
                stamp,
                "The container could not be located when the pod was terminated",
                reason="ContainerStatusUnknown",
            )
        log.info("event=pod_orphaned %s", self.kv)
        self.report("Failed", final=True)
        if self.deleting:
            self.delete_now()
        return True

    def prepare(self) -> dict[str, Path] | None:
        """Volumes; retried until they can be set up or the pod is deleted (None)."""
        from retrainer_world.kubelet import volumes

        while not self.interrupted():
            try:
                folders = volumes.prepare_volumes(
                    self.pod, pod_dir(self.ctx, self.uid), self.ctx.source, self.ctx.node
                )
                if self.runtime == "container":
                    from retrainer_world.kubelet import security

                    security.apply_fs_group(self.pod, folders)
                return folders
            except volumes.VolumeError as exc:
                for run in self.inits + self.mains:
                    run.wait("ContainerCreating", f"MountVolume.SetUp failed: {exc}")
                log.warning("event=mount_failed %s error=%s", self.kv, exc)
                self.report("Pending")
                self.wake.wait(RETRY_SECONDS)
                self.wake.clear()
        return None

    def choose_runtime(self) -> str:
        """The namespace's RUNTIME_LABEL when it names a runtime, else the runner's. The label
        is read until it can be (or the pod goes): guessing could run a container namespace's
        pod as a host process."""
        namespace: Obj = {}
        while not self.interrupted():
            try:
                namespace = self.kube.get_optional(self.kube.core.read_namespace, self.ns) or {}
                break
            except Exception as exc:
                log.warning("event=namespace_read_failed %s error=%r", self.kv, exc)
                self.wake.wait(RETRY_SECONDS)
                self.wake.clear()
        wanted = ((namespace.get("metadata") or {}).get("labels") or {}).get(RUNTIME_LABEL)
        return wanted if wanted in RUNTIMES else self.ctx.runtime

    def has_engine(self) -> bool:
        """Whether container mode can run: an engine from the start, or one found now (podman
        installed into a running world is used from its next container pod on)."""
        finder = self.ctx.engines
        if self.ctx.engine is None and finder is not None and finder.find() is not None:
            self.ctx = dataclasses.replace(
                self.ctx, engine=finder.engine, service_host=finder.service_host
            )
        return self.ctx.engine is not None

    def refuse(self) -> None:
        """Fail a container-mode pod that no engine can run, as a kubelet fails a pod it cannot
        admit: no container starts, and certainly no host process in its place."""
        finder = self.ctx.engines
        message = unavailable_message(finder.missing if finder else "none was configured")
        for run in self.inits + self.mains:
            run.wait(RUNTIME_UNAVAILABLE, message)
        log.warning("event=pod_refused %s reason=%s", self.kv, RUNTIME_UNAVAILABLE)
        self.report("Failed", RUNTIME_UNAVAILABLE, message, final=True)
        if self.deleting:
            self.delete_now()

    def build(self, spec: Obj, folders: dict[str, Path]) -> Launch:
        if self.runtime == "container" and self.ctx.engine is not None:
            from retrainer_world.kubelet.containers import build_container_launch

            return build_container_launch(self.ctx, self.ctx.engine, self.pod, spec, folders)
        return build_launch(self.ctx, self.pod, spec, folders)

    def launch(self, run: ContainerRun, folders: dict[str, Path]) -> bool:
        """Start `run`'s process; False when it cannot (status already set)."""
        from retrainer_world.kubelet.env import ConfigError
        from retrainer_world.kubelet.images import ImageUnknown

        spec = self.specs[run.name]
        try:
            launch = self.build(spec, folders)
        except ConfigError as exc:
            run.wait("CreateContainerConfigError", str(exc))
            return False
        except ImageUnknown as exc:
            run.wait("ErrImagePull", str(exc))
            return False
        except (FileNotFoundError, ValueError) as exc:
            run.end(128, timestamp(), str(exc), reason="StartError")
            return False
        try:
            proc = Proc(run, launch, self.wake, self.ctx.engine)
        except OSError as exc:
            run.end(128, timestamp(), str(exc), reason="StartError")
            return False
        run.run(proc.popen.pid, timestamp())
        self.procs[run.name] = proc
        log.info(
            "event=container_started %s container=%s pid=%s argv0=%s runtime=%s",
            self.kv,
            run.name,
            proc.popen.pid,
            launch.argv[0],
            self.runtime,
        )
        return True

    def phase(self) -> str:
        return "Running" if any(r.state != "waiting" for r in self.mains) else "Pending"

    def run_to_end(self, runs: list[ContainerRun], folders: dict[str, Path]) -> bool:
        """Run `runs` together until all are done for good; True when all succeeded."""
        pending_at: dict[str, float] = {r.name: 0.0 for r in runs}  # name -> start after
        reported = ""
        while True:
            now = time.time()
            for run in runs:
                proc = self.procs.get(run.name)
                if proc is not None and proc.popen.poll() is not None:
                    self.reap(proc)
                    if self.should_restart(run):
                        pending_at[run.name] = now + min(
                            BACKOFF_BASE * 2 ** min(run.restart_count, 10), BACKOFF_MAX
                        )
                        run.wait("CrashLoopBackOff", f"back-off restarting {run.name}")
            if self.interrupted():
                return self.finish_interrupted()
            if self.evicted(folders, now):
                return False
            limit = self.deadline()
            if limit is not None and now >= limit:
                self.kill(self.grace())
                self.report(
                    "Failed",
                    "DeadlineExceeded",
                    "Pod was active on the node longer than the specified deadline",
                    final=True,
                )
                return False
            for name, at in list(pending_at.items()):
                if at > now or self.interrupted():
                    continue
                run = next(r for r in runs if r.name == name)
                del pending_at[name]
                if self.launch(run, folders):
                    continue
                if run.reason == "ErrImagePull":
                    self.report("Failed", "ErrImagePull", run.message, final=True)
                    return False
                if run.reason == "CreateContainerConfigError":
                    pending_at[name] = now + RETRY_SECONDS  # the kubelet retries too
                elif self.should_restart(run):
                    pending_at[name] = now + BACKOFF_BASE
            if not pending_at and all(r.state == "terminated" for r in runs):
                ok = all(r.succeeded for r in runs)
                if runs[0].init and ok:
                    return True
                phase = "Failed" if runs[0].init else terminal_phase(runs)
                self.report(phase, final=True)
                log.info("event=pod_finished %s phase=%s", self.kv, phase)
                return ok
            summary = repr([(r.state, r.reason, r.restart_count) for r in self.inits + self.mains])
            if summary != reported:
                self.report(self.phase())
                reported = summary
            waits = [at - now for at in pending_at.values()]
            if self.runtime == "container":
                waits.append(EVICTION_CHECK_SECONDS)
            if limit is not None:
                waits.append(limit - now)
            self.wake.wait(max(0.05, min(waits, default=30.0)))
            self.wake.clear()

    def evicted(self, folders: dict[str, Path], now: float) -> bool:
        """Container mode: an emptyDir over its sizeLimit evicts the pod, as the kubelet does."""
        from retrainer_world.kubelet.volumes import empty_dir_overuse

        if self.runtime != "container" or now < self.next_eviction_check:
            return False
        self.next_eviction_check = now + EVICTION_CHECK_SECONDS
        message = empty_dir_overuse(self.pod, folders)
        if message is None:
            return False
        log.info("event=pod_evicted %s reason=%r", self.kv, message)
        self.kill(self.grace())
        self.report("Failed", "Evicted", message, final=True)
        return True

    def should_restart(self, run: ContainerRun) -> bool:
        if self.restart_policy == "Always" and not run.init:
            return True
        return self.restart_policy in ("OnFailure", "Always") and not run.succeeded

    def reap(self, proc: Proc) -> None:
        from retrainer_world.kubelet.paths import termination_message

        code = exit_code_of(proc.popen.returncode)
        spec = self.specs[proc.run.name]
        message = termination_message(
            proc.launch.message_file,
            spec.get("terminationMessagePolicy", "File"),
            code,
            proc.launch.log_file,
            proc.log_offset,
        )
        proc.run.end(code, timestamp(), message)
        del self.procs[proc.run.name]
        log.info(
            "event=container_exited %s container=%s exit_code=%s", self.kv, proc.run.name, code
        )

    def grace(self) -> float:
        meta_grace = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if meta_grace is not None:
            return float(meta_grace)
        return float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))

    def kill(self, grace: float) -> None:
        """SIGTERM every process group, SIGKILL whatever is left after `grace` seconds."""
        for proc in self.procs.values():
            proc.signal(signal.SIGTERM)
        until = time.time() + grace
        while self.procs:
            for proc in list(self.procs.values()):
                if proc.popen.poll() is not None:
                    self.reap(proc)
            if not self.procs:
                break
            if time.time() >= until:
                for proc in self.procs.values():
                    proc.signal(signal.SIGKILL)
                until = time.time() + 30
            self.wake.wait(0.2)
            self.wake.clear()

    def finish_interrupted(self) -> bool:
        """Deleted, evicted or runner stopping: kill, then report and delete like a kubelet."""
        if self.stopping:
            self.kill(2)
            if self.started and self.restart_policy == "Never":
                # One try: the apiserver may be stopping too (then adoption settles it).
                self.report(terminal_phase(self.mains))
            return False
        self.kill(0 if self.removed else self.grace())
        if self.removed:
            return False
        if self.started:
            phase = terminal_phase(self.mains)
            self.report(phase, final=True)
            log.info("event=pod_terminated %s phase=%s", self.kv, phase)
        self.delete_now()
        return False
