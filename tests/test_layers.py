"""The layers cannot tangle: contracts import nothing of ours, services.kit imports only
contracts, the A2A library (services.a2a) only contracts and kit, and no service imports
another (the same rules `just lint` checks with import-linter)."""

from __future__ import annotations

import ast
import tomllib
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


# -- no import circle --------------------------------------------------------------------
ROOTS = ("contracts", "services", "tools")


def module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def is_module(name: str) -> bool:
    base = REPO / name.replace(".", "/")
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def import_graph() -> dict[str, set[str]]:
    """Module -> our modules it imports (`from pkg import mod` counts as importing mod;
    imports under TYPE_CHECKING count too: they are circles the type checker sees)."""
    graph: dict[str, set[str]] = {}
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            targets: set[str] = set()
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    targets.update(a.name for a in node.names)
                elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                    for alias in node.names:
                        sub = f"{node.module}.{alias.name}"
                        targets.add(sub if is_module(sub) else node.module)
            graph[module_name(path)] = {t for t in targets if t.split(".")[0] in ROOTS}
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan), or one importing itself."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while (w := stack.pop()) != v:
                group.append(w)
            group.append(v)
            if len(group) > 1 or v in graph.get(v, ()):
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_anywhere() -> None:
    assert circles(import_graph()) == []


def test_the_circle_check_sees_a_circle() -> None:
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# -- what tools may take from services --------------------------------------------------
def tool_entry_points() -> set[str]:
    """The modules of services that tools may import: pyproject's import-linter list."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (entry,) = [c for c in contracts if c.get("source_modules") == ["tools"]]
    return {rule.split("->")[1].strip() for rule in entry["ignore_imports"]}


def test_tools_import_only_the_named_entry_points_of_services() -> None:
    allowed = tool_entry_points()
    bad = []
    for module, targets in import_graph().items():
        if not module.startswith("tools."):
            continue
        for target in targets:
            owner = ours(target) or ""
            if owner.removeprefix("services.") in SERVICES and target not in allowed:
                bad.append(f"{module} imports {target}")
    assert bad == []
    # The other entry point: `fleet run`/`fleet up` load each service's `service` module.
    registry = (REPO / "tools" / "registry.py").read_text()
    assert registry.count("import_module(") == 1
    assert 'import_module(f"services.{name}.service")' in registry


# -- kit's private names stay in kit -----------------------------------------------------
def kit_private_names(where: str = "*.py") -> set[str]:
    """`_x` attributes and methods that kit classes use on `self`."""
    names: set[str] = set()
    for path in (REPO / "services" / "kit").rglob(where):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                names.add(node.attr)
    return names


def test_no_module_outside_kit_touches_a_private_name_of_kit() -> None:
    """Neither through a kit object (`service._subs`) nor as a Service subclass
    (`self._stopping`): the public API (listen, request_stop, ...) is the way in."""
    private = kit_private_names()
    of_service = kit_private_names("service.py")
    bad = []
    for root in ("services", "tools"):
        for path in (REPO / root).rglob("*.py"):
            if path.is_relative_to(REPO / "services" / "kit"):
                continue
            tree = ast.parse(path.read_text())
            subclasses = [
                c
                for c in ast.walk(tree)
                if isinstance(c, ast.ClassDef) and any("Service" in ast.unparse(b) for b in c.bases)
            ]
            inside = {id(n) for c in subclasses for n in ast.walk(c)}
            for node in ast.walk(tree):
                if not isinstance(node, ast.Attribute) or node.attr not in private:
                    continue
                on_self = isinstance(node.value, ast.Name) and node.value.id == "self"
                if not on_self or (id(node) in inside and node.attr in of_service):
                    bad.append(f"{path.relative_to(REPO)}:{node.lineno} {ast.unparse(node)}")
    assert bad == []
