"""The allocated-version record against the world's real MLflow server: sixteen allocations
recorded at once from sixteen threads (as Kopf's handler threads do) leave the highest number
recorded (a lower tag written late may stay until the next allocation removes it; the tag
below a new number is removed off the caller's path); the single tag older operators wrote
counts and is replaced."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from mlflow.tracking import MlflowClient
from retrainer_contract import tracking
from retrainer_operator.mlflow_rest import MlflowRest
from retrainer_world.world import World

pytestmark = pytest.mark.integration


def test_allocations_recorded_at_once_leave_the_highest_number_recorded(world: World) -> None:
    experiment = f"allocated-{uuid.uuid4().hex[:8]}"
    rest = MlflowRest(world.mlflow_uri, None)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda v: rest.record_allocated(experiment, "ns", "shapes", v), range(1, 17)))

    assert rest.allocated(experiment, "ns", "shapes") == 16
    rest.record_allocated(experiment, "ns", "shapes", 17)
    rest.settle()  # the tags below 17 are removed off the caller's path
    found = MlflowClient(world.mlflow_uri).get_experiment_by_name(experiment)
    assert found is not None
    assert tracking.allocated_in(found.tags, "ns", "shapes") == {
        tracking.allocated_tag("ns", "shapes", 17): 17
    }
    # The operator created it as the trainer does: it opens in MLflow's model-training view.
    assert tracking.experiment_tags().items() <= found.tags.items()


def test_the_single_tag_of_an_older_operator_counts_and_is_replaced(world: World) -> None:
    experiment = f"allocated-{uuid.uuid4().hex[:8]}"
    mlflow = MlflowClient(world.mlflow_uri)
    experiment_id = mlflow.create_experiment(experiment)
    mlflow.set_experiment_tag(experiment_id, tracking.allocated_tag("ns", "shapes"), "7")
    rest = MlflowRest(world.mlflow_uri, None)
    assert rest.allocated(experiment, "ns", "shapes") == 7

    rest.record_allocated(experiment, "ns", "shapes", 8)
    rest.settle()

    tags = mlflow.get_experiment(experiment_id).tags
    assert tracking.allocated_in(tags, "ns", "shapes") == {
        tracking.allocated_tag("ns", "shapes", 8): 8
    }
