"""The Kopf layer maps training Jobs back to their RetrainJob and registers stable handler ids."""

from __future__ import annotations

import inspect

from retrainer_operator import handlers
from retrainer_operator.config import OperatorConfig
from retrainer_operator.ticker import Ticker


def test_a_job_is_mapped_to_the_retrainjob_that_owns_it() -> None:
    meta = {
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "RetrainJob", "name": "impostor"},
            {"apiVersion": "retrainer.dev/v1alpha1", "kind": "RetrainJob", "name": "shapes-run"},
        ]
    }
    assert handlers._owner(meta) == "shapes-run"
    assert handlers._owner({}) is None


def test_handlers_are_registered_under_stable_ids() -> None:
    # Kopf's log lines name these ids and the log filter matches them (EVENT_HANDLERS):
    # renaming or nesting the functions must not change them.
    ticker = Ticker(lambda ns, name: None, 60)
    registry = handlers.build_registry(None, ticker)  # type: ignore[arg-type]
    ids = {h.id for h in registry._watching.get_all_handlers()}
    assert ids == {
        "retrainjob_job_event",
        "training_pod_seen",
        "pod_refusal_seen",
        "retrainjob_seen",
        "modelline_seen",
    }
    # No Kopf create, update or resume handler: Kopf's worker would hold each object until its
    # pass had a thread (first_sight.py); the event handlers queue the passes instead. Nor a
    # Kopf timer (nor its finalizer on every ModelLine): lines tick from one clock.
    assert list(registry._changing.get_all_handlers()) == []
    assert list(registry._spawning.get_all_handlers()) == []
    # Every handler runs on Kopf's loop in microseconds: none waits for the executor.
    for handler in registry._watching.get_all_handlers():
        assert inspect.iscoroutinefunction(handler.fn), handler.id


def test_watching_named_namespaces_kopf_scans_nothing_cluster_wide() -> None:
    # The chart grants a namespaced operator nothing cluster-wide: a scan of all namespaces
    # and CRDs would be Forbidden and retried for a minute before each start and takeover.
    named = OperatorConfig.from_env({"RETRAINER_NAMESPACES": "team-a,team-b"})
    assert not named.clusterwide
    assert handlers.settings_for(named).scanning.disabled is True
    everywhere = OperatorConfig.from_env({})
    assert everywhere.clusterwide
    assert handlers.settings_for(everywhere).scanning.disabled is False


def test_a_job_waits_in_the_queue_without_its_pod_template_or_managed_fields() -> None:
    job = {
        "metadata": {
            "name": "retrain-shapes-v3",
            "finalizers": ["retrainer.dev/job-outcome"],
            "managedFields": [{"manager": "kube-controller-manager", "fieldsV1": {"f:status": {}}}],
        },
        "spec": {"suspend": False, "backoffLimit": 2, "template": {"spec": {"containers": []}}},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    slim = handlers._slim_job(job)
    assert slim == {
        "metadata": {"name": "retrain-shapes-v3", "finalizers": ["retrainer.dev/job-outcome"]},
        "spec": {"suspend": False, "backoffLimit": 2},
        "status": {"conditions": [{"type": "Complete", "status": "True"}]},
    }
    assert handlers._job_state(slim) == handlers._job_state(job)  # what a pass acts on
    slim["status"]["conditions"].append({})  # a copy: Kopf's body is left as it was
    assert len(job["status"]["conditions"]) == 1
