"""The layers cannot tangle: contracts import nothing of ours, services.kit imports only
contracts, the A2A library (services.a2a) only contracts and kit, and no service imports
another (the same rules `just lint` checks with import-linter)."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
LIBRARIES = {"kit", "a2a"}
"""Packages under services/ that are libraries the services share, not services."""
SERVICES = sorted(
    p.name
    for p in (REPO / "services").iterdir()
    if (p / "__init__.py").exists() and p.name not in LIBRARIES
)


def imports_of(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), str(path))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def ours(name: str) -> str | None:
    top = name.split(".")[0]
    if top in ("contracts", "tools"):
        return top
    if top == "services":
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else "services"
    return None


def violations(package: str, allowed: set[str]) -> list[str]:
    bad = []
    for path in (REPO / package.replace(".", "/")).rglob("*.py"):
        for name in imports_of(path):
            owner = ours(name)
            if owner and owner not in allowed:
                bad.append(f"{path.relative_to(REPO)} imports {name}")
    return bad


def test_contracts_import_nothing_of_ours() -> None:
    assert violations("contracts", {"contracts"}) == []


def test_kit_imports_only_contracts() -> None:
    assert violations("services.kit", {"contracts", "services.kit"}) == []


def test_the_a2a_library_imports_only_contracts_and_kit() -> None:
    assert violations("services.a2a", {"contracts", "services.kit", "services.a2a"}) == []


def test_services_meet_only_on_the_wire() -> None:
    bad: list[str] = []
    for name in SERVICES:
        allowed = {"contracts", "services.kit", "services.a2a", f"services.{name}"}
        bad += violations(f"services.{name}", allowed)
    assert bad == []
