"""Which code measured a benchmark: the source fingerprint and the git commit.

A long benchmark can run in parts (one seed a day, the ablations on another
machine) and be merged into one table afterwards. That is honest only if every
part ran the same code. The git commit alone cannot tell: a commit that touches
only the docs leaves the measured code as it was, and an uncommitted edit
changes it without a new commit. So a report records both: the commit, for the
reader, and a hash of every Python source file of the ``mmrec`` package, which
a merge compares.

Example:

    report["code"] = code_provenance()
    # {"commit": "fc61dbf", "changed": False, "source": "3f2a..."}
"""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]


def source_fingerprint(package: Path = PACKAGE) -> str:
    """A hash of every ``*.py`` file under ``package`` (paths and contents, in
    path order): equal for two checkouts exactly when their code is equal."""
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


def _git(*args: str, cwd: Path) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True,
                              timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def code_provenance(package: Path = PACKAGE) -> dict:
    """``commit``: the checkout's short commit (None outside a git checkout);
    ``changed``: whether the package has uncommitted edits (None without git);
    ``source``: :func:`source_fingerprint`."""
    commit = _git("rev-parse", "--short", "HEAD", cwd=package)
    status = _git("status", "--porcelain", "--", ".", cwd=package) if commit else None
    return {"commit": commit, "changed": None if status is None else bool(status),
            "source": source_fingerprint(package)}
