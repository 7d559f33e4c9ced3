"""Short hashes of build inputs: they name cached builds, so a changed input rebuilds."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

Entry = tuple[str, bytes]


def fingerprint(entries: Iterable[Entry]) -> str:
    """A short hash of named values (length-prefixed, so no two lists collide)."""
    digest = hashlib.sha256()
    for name, value in entries:
        for part in (name.encode(), value):
            digest.update(len(part).to_bytes(8, "big"))
            digest.update(part)
    return digest.hexdigest()[:12]


def file_entry(path: Path, root: Path) -> Entry:
    """A file as a build sees it: contents and executable bit; a symlink's target, unfollowed."""
    name = path.relative_to(root).as_posix()
    if path.is_symlink():
        return (f"link {name}", str(path.readlink()).encode())
    executable = "x" if path.stat().st_mode & 0o111 else "-"
    return (f"file {name} {executable}", path.read_bytes())


def recipe_entries(recipe: Path) -> list[Entry]:
    """Every file of a recipe directory (not recursive)."""
    return [file_entry(path, recipe) for path in sorted(recipe.iterdir()) if path.is_file()]
