"""The tree shows the architecture: folders by side, imports one way, no circle, small modules.

docs/architecture.md states the rules; this module reads every import of every product module with
``ast`` (imports inside functions and under ``TYPE_CHECKING`` included) and checks them, so a wrong
import fails here and not in a review.
"""

from __future__ import annotations

import ast
import pathlib
from dataclasses import dataclass

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PRODUCT = ROOT / "ticker"

# Size limits for product code (migrations excepted): a module does one job, a function fits a screen.
MOST_MODULE_LINES = 330
MOST_FUNCTION_LINES = 70

# Who may import whom, by side. A module matches the longest prefix listed; it may import ticker modules
# whose name starts with one of its side's allowed prefixes, and nothing else of ticker.
# Lowest first: wire is what both processes agree on; runtime and the instrumentation (metrics, logs) are
# used by every side; the market and the hub never reach up into the edge, the pages or the operations
# views; only the edge, the pages and the wiring at the top see everything below them.
INSTRUMENTATION = ("ticker.ops.metrics", "ticker.ops.logs")
STORED_MARKET = ("ticker.market.selectors", "ticker.market.lease", "ticker.market.prices", "ticker.models")
RULES: dict[str, tuple[str, ...]] = {
    "ticker.market.prices": ("ticker.market.sessions",),  # the pure model: no Django, nothing else of ticker
    "ticker.market.sessions": (),
    "ticker.wire": ("ticker.wire", "ticker.market.prices"),
    "ticker.runtime": ("ticker.runtime", "ticker.ops.logs"),
    "ticker.ops.metrics": ("ticker.runtime",),
    "ticker.ops.logs": (),
    "ticker.models": ("ticker.market.prices",),
    "ticker.market": ("ticker.market", "ticker.models", "ticker.wire", "ticker.runtime", *INSTRUMENTATION),
    "ticker.hub": ("ticker.hub", "ticker.wire", "ticker.runtime", *INSTRUMENTATION, *STORED_MARKET),
    "ticker.ops": ("ticker.ops", "ticker.hub", "ticker.wire", "ticker.runtime", "ticker.edge.security"),
    "ticker.edge": ("ticker.edge", "ticker.hub", "ticker.wire", "ticker.runtime", "ticker.ops", *STORED_MARKET),
    # Accounts and the watchlist on the account (issue 23): a web-edge side, allowed what the edge is.
    "ticker.accounts": (
        "ticker.accounts",
        "ticker.edge",
        "ticker.hub",
        "ticker.wire",
        "ticker.runtime",
        "ticker.ops",
        *STORED_MARKET,
    ),
}
# The wiring and the Django app's top: pages, API, admin, routing, commands. They may import any side.
TOP = ("ticker.views", "ticker.api", "ticker.api_alerts", "ticker.admin", "ticker.apps", "ticker.routing")
TOP_PREFIXES = ("ticker.management", "ticker.context_processors", "ticker.migrations")

# Only the server adapter reaches into daphne, autobahn and Twisted (management commands start daphne).
ADAPTER = "ticker.edge.server"
SERVER_PACKAGES = ("daphne", "autobahn", "twisted")


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int


def module_name(path: pathlib.Path, root: pathlib.Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def product_files() -> list[pathlib.Path]:
    return sorted(p for p in PRODUCT.rglob("*.py") if "migrations" not in p.parts)


def imports_of(path: pathlib.Path, modules: set[str], root: pathlib.Path = ROOT) -> list[Import]:
    """Every module ``path`` imports, wherever the import statement sits; ``from x import y`` names the
    module ``x.y`` when that is a module, else ``x``."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(name, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append(Import(name, submodule if submodule in modules else base, node.lineno))
    return found


def product_imports() -> tuple[set[str], list[Import]]:
    files = product_files()
    modules = {module_name(p) for p in files}
    return modules, [i for p in files for i in imports_of(p, modules)]


def allowed(importer: str, imported: str) -> bool:
    if importer in TOP or importer.startswith(TOP_PREFIXES) or importer == "ticker":
        return True
    side = max((s for s in RULES if importer == s or importer.startswith(s + ".")), key=len, default=None)
    if side is None:
        return False
    return any(imported == p or imported.startswith(p + ".") for p in RULES[side])


def wrong_imports(imports: list[Import]) -> list[str]:
    return [
        f"{i.importer} (line {i.line}) imports {i.imported}"
        for i in imports
        if i.imported.startswith("ticker.") and i.imported != i.importer and not allowed(i.importer, i.imported)
    ]


def cycles(modules: set[str], imports: list[Import]) -> list[list[str]]:
    """Every import circle between product modules (strongly connected components of two or more, or a module
    importing itself), by Tarjan's algorithm."""
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for i in imports:
        target = i.imported
        while target and target not in modules:  # `import ticker.hub.fanout` counts as ticker.hub.fanout's package
            target = target.rpartition(".")[0]
        if target and i.importer in graph and target != i.importer:
            graph[i.importer].add(target)
    # A package's __init__ importing its own submodules is not a circle back; a submodule importing its package
    # is (the package imports the submodule), so both edges stay.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_every_product_module_sits_in_a_side_the_rules_name():
    modules, _ = product_imports()
    homeless = [
        m
        for m in sorted(modules)
        if m != "ticker"
        and m not in TOP
        and not m.startswith(TOP_PREFIXES)
        and not any(m == s or m.startswith(s + ".") for s in RULES)
    ]
    assert homeless == [], f"modules outside every side of docs/architecture.md's tree: {homeless}"


def test_imports_flow_one_way():
    _, imports = product_imports()
    assert wrong_imports(imports) == []


def test_no_import_circle():
    modules, imports = product_imports()
    assert cycles(modules, imports) == []


def test_only_the_server_adapter_imports_daphne_autobahn_and_twisted():
    _, imports = product_imports()
    reaching = sorted(
        {
            f"{i.importer} imports {i.imported}"
            for i in imports
            if i.imported.split(".")[0] in SERVER_PACKAGES
            and not (i.importer == ADAPTER or i.importer.startswith(ADAPTER + "."))
            and not i.importer.startswith("ticker.management")
        }
    )
    assert reaching == []


def test_modules_and_functions_stay_small():
    too_big = []
    for path in product_files():
        source = path.read_text()
        lines = len(source.splitlines())
        if lines > MOST_MODULE_LINES:
            too_big.append(f"{path.relative_to(ROOT)}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MOST_FUNCTION_LINES:
                    too_big.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}(): {length} lines")
    assert too_big == [], f"over {MOST_MODULE_LINES} lines a module or {MOST_FUNCTION_LINES} a function: {too_big}"


# The checks themselves can fail: each wrong shape below is caught.


TYPE_CHECKING_ONLY = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"


def _write(tmp_path: pathlib.Path, files: dict[str, str]) -> tuple[set[str], list[Import]]:
    paths = []
    for name, source in files.items():
        path = tmp_path / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
        paths.append(path)
    modules = {module_name(p, tmp_path) for p in paths}
    return modules, [i for p in paths for i in imports_of(p, modules, tmp_path)]


@pytest.mark.parametrize(
    "importer, source, wrong",
    [
        ("ticker.hub.fanout", "from ticker.edge import server\n", "ticker.edge.server"),
        ("ticker.market.loop", "def f():\n    from ticker.hub import get_hub\n", "ticker.hub"),
        (
            "ticker.wire.protocol",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import ticker.ops.health\n",
            "ticker.ops.health",
        ),
        ("ticker.ops.metrics", "from ticker.hub import QuoteHub\n", "ticker.hub"),
    ],
)
def test_a_wrong_import_is_named(tmp_path, importer, source, wrong):
    files = {importer: source, "ticker.edge.server": "", "ticker.hub.__init__": "", "ticker.ops.health": ""}
    _, imports = _write(tmp_path, files)
    assert wrong_imports(imports) == [f"{importer} (line {source.count(chr(10))}) imports {wrong}"]


def test_a_circle_is_named_even_under_type_checking(tmp_path):
    modules, imports = _write(
        tmp_path,
        {
            "ticker.hub.fanout": "from ticker.edge import server\n",
            "ticker.edge.server": "from ticker.ops import metrics\n",
            "ticker.ops.metrics": TYPE_CHECKING_ONLY + "    from ticker.hub import fanout\n",
        },
    )
    assert cycles(modules, imports) == [["ticker.edge.server", "ticker.hub.fanout", "ticker.ops.metrics"]]
