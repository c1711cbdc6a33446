"""Benchmark readers on mini folders in the official formats: labels, splits, and layout errors."""
import os
import shutil

import numpy as np
import pytest

from data_pipelines.benchmarks import affectnet, celeba, lfwa, rafdb
from data_pipelines.benchmarks.builder import build
from data_pipelines.benchmarks.layout import LayoutError
from data_pipelines.shards import ShardSource
from tests.benchmark_fixtures import make_affectnet, make_celeba, make_lfwa_mat, make_rafdb


def _records(path, split):
    source = ShardSource(path, split)
    return [source[i] for i in range(len(source))]


def test_celeba_round_trip(tmp_path):
    truth = make_celeba(str(tmp_path / "celeba"))
    path, report = build("celeba", str(tmp_path / "celeba"), str(tmp_path / "out"), image_size=32, workers=1)
    assert report["missing_images"] == 1
    expected = {s: [n for n, p in zip(truth["names"][:-1], truth["partition"]) if p == k]
                for k, s in enumerate(("train", "validation", "test"))}
    for split, names in expected.items():
        records = _records(path, split)
        assert sorted(r["source"].decode().split("/")[1] for r in records) == sorted(names)
        for r in records:
            i = truth["names"].index(r["source"].decode().split("/")[1])
            np.testing.assert_array_equal(r["attributes"], truth["labels"][i])
    source = ShardSource(path, "train")
    assert source.metadata["attribute_names"][20] == "Male" and source.image_shape == (32, 32, 3)


def test_lfwa_mat_release(tmp_path):
    pytest.importorskip("scipy")
    truth = make_lfwa_mat(str(tmp_path / "lfwa"))
    bench = lfwa.read(str(tmp_path / "lfwa"))
    assert [i.key for i in bench.splits["test"]] == [truth["names"][j] for j in truth["test"]]
    for item, j in zip(bench.splits["train"], truth["train"]):
        np.testing.assert_array_equal(item.attributes, truth["labels"][j])
    path, _ = build("lfwa", str(tmp_path / "lfwa"), str(tmp_path / "out"), image_size=32, workers=1)
    assert len(_records(path, "test")) == 2


def test_rafdb_labels_and_splits(tmp_path):
    make_rafdb(str(tmp_path))
    bench = rafdb.read(str(tmp_path))  # finds basic/ by itself
    assert [i.expression for i in bench.splits["train"]] == [3, 6, 0]  # labels 1..7 -> 0..6
    assert bench.expression_names[3] == "happiness"
    path, _ = build("rafdb", str(tmp_path), str(tmp_path / "out"), image_size=32, workers=1)
    assert sorted(int(r["expression"]) for r in _records(path, "test")) == [4, 5]


@pytest.mark.parametrize("classes,train_expressions", [(8, [0, 1, 7]), (7, [0, 1])])
def test_affectnet_classes_and_boxes(tmp_path, classes, train_expressions):
    make_affectnet(str(tmp_path))
    bench = affectnet.read(str(tmp_path), classes=classes)
    assert sorted(i.expression for i in bench.splits["train"]) == train_expressions
    assert [i.expression for i in bench.splits["validation"]] == [3]
    assert bench.splits["train"][0].box == (60, 60, 200, 200)


def test_missing_directory_says_what_goes_where(tmp_path):
    with pytest.raises(LayoutError, match="does not exist"):
        celeba.read(str(tmp_path / "nowhere"))
    root = tmp_path / "celeba"
    make_celeba(str(root))
    os.remove(root / "list_eval_partition.txt")
    with pytest.raises(LayoutError, match=r"expected the partition list at .*list_eval_partition.txt"):
        celeba.read(str(root))
    shutil.rmtree(tmp_path / "celeba" / "img_align_celeba")
    with pytest.raises(LayoutError, match="img_align_celeba"):
        celeba.read(str(root))
    (tmp_path / "raf").mkdir()
    with pytest.raises(LayoutError, match="EmoLabel"):
        rafdb.read(str(tmp_path / "raf"))


def test_malformed_files_name_the_line(tmp_path):
    root = tmp_path / "celeba"
    make_celeba(str(root))
    attr = root / "list_attr_celeba.txt"
    lines = attr.read_text().splitlines()
    attr.write_text("\n".join([lines[0], " ".join(lines[1].split()[:39])] + lines[2:]) + "\n")
    with pytest.raises(LayoutError, match="line 2 must name 40 attributes, found 39"):
        celeba.read(str(root))
    attr.write_text("\n".join(lines[:3] + [lines[3].replace("-1", "2", 1)] + lines[4:]) + "\n")
    with pytest.raises(LayoutError, match="line 4 must be a file name and 40 values"):
        celeba.read(str(root))
    attr.write_text("\n".join(["9"] + lines[1:]) + "\n")
    with pytest.raises(LayoutError, match="announces 9 images"):
        celeba.read(str(root))
    make_rafdb(str(tmp_path / "r"))
    labels = tmp_path / "r" / "basic" / "EmoLabel" / "list_patition_label.txt"
    labels.write_text("train_00001.jpg 9\n")
    with pytest.raises(LayoutError, match="LABEL in 1..7"):
        rafdb.read(str(tmp_path / "r"))
    make_affectnet(str(tmp_path / "a"))
    (tmp_path / "a" / "validation.csv").write_text("path,expression\nx.jpg,1\n")
    with pytest.raises(LayoutError, match="lacks columns"):
        affectnet.read(str(tmp_path / "a"))
