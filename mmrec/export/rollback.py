"""Rolling back to an earlier version, and pruning old ones, without ever
taking the live version away.

TF Serving serves the highest version number by default, so going back means
publishing an earlier version's content again under the next number: the
live version stays on disk until it is no longer the highest, a reader never
sees a model folder disappear under it, and the history of what was served
stays readable. Pruning deletes only versions older than the ones kept, and
never the live (highest) one.

Example:

    rollback("saved_models/mmrec")            # the version before the live one, as N+1
    rollback("saved_models/mmrec", to=3)      # version 3's content, as N+1
    prune_versions("saved_models/mmrec", keep=5)
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

from mmrec.export.layout import STAGING_PREFIX, VersionFiles, rename_into_place, versions

logger = logging.getLogger("mmrec.export")


def rollback(model_dir: str | os.PathLike, to: int | None = None) -> Path:
    """Publishes version ``to``'s content (default: the one before the live
    version) as the next version; returns the new version's folder.

    Raises:
      ValueError: there is no earlier version, or ``to`` is not one.
    """
    model_dir = Path(model_dir)
    available = versions(model_dir)
    if len(available) < 2 and to is None:
        raise ValueError(f"{model_dir} holds {len(available)} version(s): nothing to roll back to")
    live = available[-1]
    to = available[-2] if to is None else int(to)
    if to not in available or to == live:
        raise ValueError(f"cannot roll back {model_dir} to version {to}: the versions are "
                         f"{available} and {live} is live")
    staging = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=model_dir))
    try:
        shutil.copytree(model_dir / str(to), staging, dirs_exist_ok=True)
        files = VersionFiles(staging)
        if files.manifest_file.is_file():
            manifest = json.loads(files.manifest_file.read_text())
            manifest["lineage"] = {"from": "version", "version": to, "change": "rollback",
                                   "replaces": live}
            manifest["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
            files.manifest_file.write_text(json.dumps(manifest, indent=2))
        target = rename_into_place(staging, model_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("rolled %s back to version %d's content as version %s", model_dir, to,
                target.name)
    return target


def prune_versions(model_dir: str | os.PathLike, keep: int) -> list[int]:
    """Deletes all but the ``keep`` newest versions; returns the numbers deleted.

    The live (highest) version is always kept. Each deleted folder is first
    renamed out of TF Serving's sight, so it never sees half a version.

    Raises:
      ValueError: ``keep`` is below 1.
    """
    if keep < 1:
        raise ValueError(f"keep must be at least 1 (the live version), got {keep}")
    model_dir = Path(model_dir)
    available = versions(model_dir)
    doomed = available[:-keep] if len(available) > keep else []
    for number in doomed:
        hidden = model_dir / f".pruning-{number}"
        (model_dir / str(number)).rename(hidden)
        shutil.rmtree(hidden)
    return doomed
