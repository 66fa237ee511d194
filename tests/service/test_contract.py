"""The model contract: the packaged ILSVRC-2012 classes and the labels.tsv format."""

from __future__ import annotations

import pytest

from service.contract import CLASSES, ContractError, Label, format_labels, imagenet_labels, parse_labels
from tests.conftest import ROOT

SHARED_CLASSES = ROOT.parent / "shared" / "data" / "imagenet-classes.tsv"


def test_the_packaged_classes_are_ilsvrc_2012_in_index_order() -> None:
    labels = imagenet_labels()
    assert len(labels) == CLASSES and [label.index for label in labels] == list(range(CLASSES))
    wnids = [label.wnid for label in labels]
    assert wnids == sorted(wnids) and len(set(wnids)) == CLASSES  # ILSVRC indexes are the sorted wnids
    assert labels[0] == Label(0, "n01440764", "tench") and labels[281] == Label(281, "n02123045", "tabby")


@pytest.mark.skipif(not SHARED_CLASSES.exists(), reason="no shared class table beside the checkout")
def test_the_packaged_classes_match_the_shared_class_table() -> None:
    shared = [line.split("\t") for line in SHARED_CLASSES.read_text(encoding="utf-8").splitlines()]
    ours = imagenet_labels()
    assert [(label.index, label.wnid) for label in ours] == [(int(i), wnid) for i, wnid, _ in shared]
    # torchvision disambiguates the two classes ILSVRC names twice ("crane", "maillot"); the rest agree.
    names = [name for _, _, name in shared]
    unique = [i for i, name in enumerate(names) if names.count(name) == 1]
    assert all(ours[i].name == names[i] for i in unique)
    assert len(unique) == CLASSES - 4


def test_labels_round_trip_and_malformed_rows_are_named() -> None:
    labels = imagenet_labels()
    assert parse_labels(format_labels(labels)) == labels
    with pytest.raises(ContractError, match="line 2"):
        parse_labels("0\tn0\ta\n5\tn1\tb\n")
    with pytest.raises(ContractError, match="expected 1000"):
        parse_labels("0\tn0\ta\n")

