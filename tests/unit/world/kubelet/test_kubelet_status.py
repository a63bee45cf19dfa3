"""Pod status documents carry what the Job controller reads, as a kubelet posts them."""

from __future__ import annotations

from typing import Any

from retrainer_world.kubelet.status import ContainerRun, exit_code_of, pod_status, terminal_phase

T0, T1, T2 = "2026-11-27T04:00:00Z", "2026-11-27T04:00:05Z", "2026-11-27T04:00:09Z"


def test_signal_deaths_map_to_128_plus_signal() -> None:
    assert exit_code_of(-15) == 143
    assert exit_code_of(-9) == 137
    assert exit_code_of(3) == 3


def test_a_finished_container_reports_exit_code_message_and_times() -> None:
    run = ContainerRun("trainer", "ghcr.io/retrainer/trainer:0.1.0")
    run.run(42, T0)
    run.end(3, T1, "bad dataset")
    status = run.status()
    assert status["state"] == {
        "terminated": {
            "exitCode": 3,
            "reason": "Error",
            "message": "bad dataset",
            "startedAt": T0,
            "finishedAt": T1,
            "containerID": "local://42",
        }
    }
    assert status["ready"] is False and status["restartCount"] == 0


def test_a_restart_bumps_the_count_and_keeps_the_last_state() -> None:
    run = ContainerRun("c", "img")
    run.run(1, T0)
    run.end(1, T1)
    run.wait("CrashLoopBackOff")
    assert run.status()["lastState"]["terminated"]["exitCode"] == 1
    run.run(2, T2)
    status = run.status()
    assert status["restartCount"] == 1
    assert status["state"] == {"running": {"startedAt": T2}}
    assert status["lastState"]["terminated"]["finishedAt"] == T1


def test_terminal_phase_needs_every_main_container_to_succeed() -> None:
    ok, bad = ContainerRun("a", "i"), ContainerRun("b", "i")
    ok.end(0, T1)
    bad.end(143, T1)
    assert terminal_phase([ok]) == "Succeeded"
    assert terminal_phase([ok, bad]) == "Failed"
    assert terminal_phase([]) == "Failed"


def test_running_pod_is_ready_and_keeps_condition_transition_times() -> None:
    run = ContainerRun("c", "img")
    run.run(7, T0)
    pod: dict[str, Any] = {
        "status": {
            "startTime": T0,
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": T0},
                {"type": "DisruptionTarget", "status": "True"},
            ],
        }
    }
    status = pod_status(pod, "Running", [], [run], stamp=T2, started=True)
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Ready"]["lastTransitionTime"] == T0
    assert conditions["ContainersReady"]["status"] == "True"
    assert "DisruptionTarget" not in conditions  # left to the apiserver's merge
    assert status["podIP"] == "127.0.0.1" and status["startTime"] == T0


def test_completed_pod_is_not_ready_with_reason_pod_completed() -> None:
    run = ContainerRun("c", "img")
    run.run(7, T0)
    run.end(0, T1)
    status = pod_status({}, "Succeeded", [], [run], stamp=T2, started=True)
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "PodCompleted"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"


def test_pending_pod_shows_waiting_init_and_main_containers() -> None:
    init, main = ContainerRun("prep", "img", init=True), ContainerRun("c", "img")
    init.run(5, T0)
    main.wait("PodInitializing")
    status = pod_status({}, "Pending", [init], [main], stamp=T1, started=True)
    assert status["initContainerStatuses"][0]["state"] == {"running": {"startedAt": T0}}
    assert status["containerStatuses"][0]["state"] == {"waiting": {"reason": "PodInitializing"}}
    initialized = next(c for c in status["conditions"] if c["type"] == "Initialized")
    assert initialized["reason"] == "ContainersNotInitialized"


def test_only_pods_whose_containers_ran_before_are_adopted() -> None:
    from retrainer_world.kubelet.runner import needs_adoption

    assert needs_adoption({"status": {"phase": "Running"}})
    assert not needs_adoption({"status": {"phase": "Pending"}})
    waiting = {"name": "c", "state": {"waiting": {"reason": "ContainerCreating"}}}
    assert not needs_adoption({"status": {"phase": "Pending", "containerStatuses": [waiting]}})
    init_running = {"name": "i", "state": {"running": {"startedAt": T0}}}
    assert needs_adoption({"status": {"phase": "Pending", "initContainerStatuses": [init_running]}})
