"""What the sweep process needs to know of a dataset it reads here, without its arrays: their
sha256 (pinned into the run config) and one example's shape (the size checks).

scikit-learn's bundled digits, the default dataset, never changes within one scikit-learn
version, so its identity is remembered in ``<cache_root>/source_identities.json``, keyed on that
version and the split: a sweep process then neither imports scikit-learn nor splits the data.
The training process always loads the arrays, and refuses them if they do not hash to the
sha256 pinned here, so a wrong entry fails trials loudly and never trains on other data.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import metadata
from typing import Optional

from cvsweep.config.datasets import REGISTRY, Kind, Loader
from cvsweep.config.schema import dataset_config
from cvsweep.data.access import cache_root
from cvsweep.data.sources import check_pinned, load_source, pinnable, settle_num_classes
from cvsweep.jsonio import read_json, write_json_atomic

log = logging.getLogger(__name__)

FILE = "source_identities.json"
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class SourceIdentity:
    """A loaded dataset's identity: the sha256 of its arrays, one example's shape, its kind."""

    sha256: str
    shape: tuple[int, ...]
    kind: Kind


def identify(dataset) -> SourceIdentity:
    """The identity of the data ``dataset`` names, read here (``load_source``) unless it is
    remembered.

    Args:
        dataset: The dataset's config node, for data read here (``sources.pinnable``).

    Returns:
        Its identity.

    Raises:
        DataError: The data cannot be used, or does not hash to a pinned ``dataset.sha256``.
    """
    key = _key(dataset)
    known = _remembered().get(key) if key else None
    if _valid(known):
        identity = SourceIdentity(known["sha256"], tuple(known["shape"]), Kind(known["kind"]))
        check_pinned(dataset, identity.sha256)
        return identity
    source = load_source(dataset)
    identity = SourceIdentity(source.sha256, tuple(int(n) for n in source.x_train.shape[1:]), source.kind)
    if key:
        _remember(key, identity)
    return identity


def pin_dataset(run_config: dict) -> dict:
    """The run config with ``dataset.sha256`` (and an unset image ``num_classes``) filled in,
    where the data can be read here.

    That is a local file or folder, or digits: the fingerprint then covers the content.
    Downloads stay unpinned (Keras checks their hashes itself), and so does data that lives on
    the worker (``dataset.location=worker``): its fingerprint covers the path and the sha256 the
    user pinned, if any; the worker reports what it read in ``data.source_sha256``.

    Args:
        run_config: A plain run config from a composed, validated config.

    Returns:
        The run config, pinned where the data is here.

    Raises:
        DataError: When the data cannot be used, or no longer hashes to a pinned sha256.
    """
    # The run config comes from a composed, validated config: typing the dataset part suffices.
    dataset = dataset_config(run_config["dataset"])
    if not pinnable(dataset):
        return run_config
    settle_num_classes(dataset)
    sha256 = identify(dataset).sha256  # refuses a pinned hash that no longer matches
    return {**run_config, "dataset": {**run_config["dataset"], "num_classes": dataset.num_classes,
                                      "sha256": sha256}}


def _key(dataset) -> Optional[str]:
    """Only bundled data is remembered: a file's content can change under the same name."""
    name = getattr(dataset.name, "value", dataset.name)
    if dataset.path is not None or REGISTRY[name].loader != Loader.sklearn_digits:
        return None
    try:
        version = metadata.version("scikit-learn")
    except metadata.PackageNotFoundError:
        return None
    return f"digits scikit-learn={version} test_fraction={dataset.test_fraction} num_classes={dataset.num_classes}"


def _remembered() -> dict:
    try:
        known = read_json(cache_root() / FILE)
    except (OSError, ValueError):  # none yet, or unreadable: it is rewritten
        return {}
    return known if isinstance(known, dict) else {}


def _valid(entry) -> bool:
    return (isinstance(entry, dict) and isinstance(entry.get("sha256"), str) and bool(_SHA256.fullmatch(entry["sha256"]))
            and isinstance(entry.get("shape"), list) and all(isinstance(n, int) and n > 0 for n in entry["shape"])
            and entry.get("kind") in {kind.value for kind in Kind})


def _remember(key: str, identity: SourceIdentity) -> None:
    entry = {"sha256": identity.sha256, "shape": list(identity.shape), "kind": identity.kind.value}
    try:
        write_json_atomic(cache_root() / FILE, {**_remembered(), key: entry})
    except OSError as err:  # a read-only or full cache: the next process reads the data again
        log.debug("could not remember %s in %s: %s", key, cache_root() / FILE, err)
