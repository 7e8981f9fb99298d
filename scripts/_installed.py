"""Whether this checkout is installed, with the given extras, in the Python that runs this, every requirement met.

``python scripts/_installed.py all,test`` exits 0 when it is, else exits 1 saying what is missing.
``scripts/_venv.sh`` runs it to skip ``pip install`` (slow, and it needs the network) when nothing is missing.
It reads the requirements from ``pyproject.toml``, so a dependency added there is noticed, and follows them
through the installed packages' own requirements (extras included), as pip would install them.
"""

from __future__ import annotations

import importlib.metadata as md
import importlib.util
import re
import sys
import tomllib
from pathlib import Path

try:
    from packaging.requirements import InvalidRequirement, Requirement
except ImportError:  # a virtualenv with only pip in it
    from pip._vendor.packaging.requirements import InvalidRequirement, Requirement  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parent.parent


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def missing(extras: list[str]) -> str | None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    name = canonical(project["name"])
    spec = importlib.util.find_spec(project["name"])
    if spec is None or spec.origin is None or not Path(spec.origin).resolve().is_relative_to(ROOT):
        return f"{project['name']} is not installed from {ROOT}"
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})

    def own(extra: str) -> list[str]:
        return list(project.get("dependencies", [])) if extra == "" else list(optional.get(extra, []))

    todo: list[tuple[str, str]] = [(name, "")] + [(name, e) for e in extras]
    seen: set[tuple[str, str]] = set()
    while todo:
        dist, extra = todo.pop()
        if (dist, extra) in seen:
            continue
        seen.add((dist, extra))
        if dist == name:
            requirements = own(extra)
        else:
            try:
                requirements = md.requires(dist) or []
            except md.PackageNotFoundError:
                return f"{dist} is not installed"
        for line in requirements:
            try:
                req = Requirement(line)
            except InvalidRequirement:
                continue
            if req.marker is not None and not req.marker.evaluate({"extra": extra}):
                continue
            dep = canonical(req.name)
            if dep != name:
                try:
                    version = md.version(req.name)
                except md.PackageNotFoundError:
                    return f"{req} is not installed"
                if not req.specifier.contains(version, prereleases=True):
                    return f"{req} is wanted, {req.name} {version} is installed"
            todo.append((dep, ""))
            todo.extend((dep, e) for e in req.extras)
    return None


if __name__ == "__main__":
    sys.exit(missing([e for e in (sys.argv[1] if len(sys.argv) > 1 else "").split(",") if e]))
