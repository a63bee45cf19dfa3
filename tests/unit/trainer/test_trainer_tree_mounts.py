"""A working tree does not depend on where the claim is mounted: a pod that mounts the claim
elsewhere reuses the tree another pod built, and Ultralytics finds every image in it.

The claim is built under one root and moved (renamed) to another, as two pods mounting the
same volume at different paths see it; both link modes are covered, hardlinks and the symlinks
of a claim that refuses hardlinks (the fault condition `trainer-no-hardlinks`). Ultralytics'
own `check_det_dataset` resolves the tree's data.yaml, as training does.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from cache_sharing_support import prepare, read_tree
from retrainer_contract import faults
from retrainer_demo import shapes


@pytest.fixture(params=["hardlinks", "symlinks"])
def links(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "symlinks":
        monkeypatch.setenv(faults.ENV, faults.TRAINER_NO_HARDLINKS)
    else:
        monkeypatch.delenv(faults.ENV, raising=False)
    return str(request.param)


def resolved_by_ultralytics(data_yaml: Path) -> dict[str, str]:
    from ultralytics.data.utils import check_det_dataset

    data = check_det_dataset(str(data_yaml), autodownload=False)
    return {split: str(data[split]) for split in ("train", "val")}


def test_a_tree_built_under_one_mount_is_reused_under_another(links: str, tmp_path: Path) -> None:
    folder = shapes.generate_dataset(tmp_path / "shapes", seed=4, train=4, val=2)
    cache, built, _ = prepare(tmp_path / "mount-a", folder, "shapes", max_bytes=10**9)
    cache.close()
    (tmp_path / "mount-a").rename(tmp_path / "mount-b")  # the same claim, mounted elsewhere

    cache, again, _ = prepare(tmp_path / "mount-b", folder, "shapes", max_bytes=10**9, version=2)
    cache.close()

    tree = again.data_yaml.parent
    assert resolved_by_ultralytics(again.data_yaml) == {
        "train": str(tree / "images" / "train"),
        "val": str(tree / "images" / "val"),
    }
    assert read_tree(tree) == [], f"every file of the tree reads under the new mount ({links})"
    assert again.reused and tree.name == built.data_yaml.parent.name
    assert str(tmp_path / "mount-a") not in again.data_yaml.read_text()


def test_a_tree_whose_data_yaml_names_an_old_mount_is_rewritten_when_reused(
    tmp_path: Path,
) -> None:
    folder = shapes.generate_dataset(tmp_path / "shapes", seed=4, train=4, val=2)
    cache, built, _ = prepare(tmp_path / "claim", folder, "shapes", max_bytes=10**9)
    cache.close()
    old = yaml.safe_load(built.data_yaml.read_text())
    old["path"] = "/var/lib/retrainer/.retrainer/datasets/trees/" + built.tree  # older trainer
    built.data_yaml.write_text(yaml.safe_dump(old))

    cache, again, _ = prepare(tmp_path / "claim", folder, "shapes", max_bytes=10**9, version=2)
    cache.close()

    assert again.reused and "path" not in yaml.safe_load(again.data_yaml.read_text())
    assert resolved_by_ultralytics(again.data_yaml)["val"] == str(
        again.data_yaml.parent / "images" / "val"
    )
