"""The layout of the code: no import runs in a circle, modules stay short, ``__init__`` files are maps,
no two modules share a name across ``lstm_core`` and ``app``, the core never loads Streamlit, and the
trainer's events load without torch.

The import rules are read from the source with :mod:`ast`, not by importing it: an import inside a
function counts (it runs, only later), one under ``if TYPE_CHECKING:`` does not (it never runs).
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_LINES = 500
MAX_PAGE_LINES = 250


# ---- reading the imports -------------------------------------------------------------------------


def project_files(root: Path) -> dict[str, Path]:
    """Every module of ``lstm_core/``, ``app/`` and ``streamlit_app.py`` under ``root``, by dotted name."""
    files = [*root.glob("lstm_core/**/*.py"), *root.glob("app/**/*.py"), *root.glob("streamlit_app.py")]
    modules = {}
    for path in sorted(files):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        modules[".".join(parts)] = path
    return modules


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def running_imports(node: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """The import statements under ``node`` that can run: at module level, in functions and classes,
    in any branch; not those under ``if TYPE_CHECKING:`` (its ``else`` runs, so it counts)."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:
                yield from running_imports(ast.Module(body=[statement], type_ignores=[]))
            continue
        if isinstance(child, ast.Import | ast.ImportFrom):
            yield child
        yield from running_imports(child)


def _with_packages(name: str) -> list[str]:
    """``a.b.c`` -> ``a``, ``a.b``, ``a.b.c``: importing a module first runs each package's ``__init__``."""
    parts = name.split(".")
    return [".".join(parts[:end]) for end in range(1, len(parts) + 1)]


def imported_names(statement: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The dotted names a statement in ``module`` imports: ``from a.b import c`` gives ``a.b.c`` as
    well as ``a.b``, since ``c`` may be a module (the caller keeps the names that are modules)."""
    if isinstance(statement, ast.Import):
        return [name for alias in statement.names for name in _with_packages(alias.name)]
    base = statement.module or ""
    if statement.level:  # relative: from the module's own package, up level - 1 packages
        package = module.split(".") if is_package else module.split(".")[:-1]
        package = package[: len(package) - statement.level + 1]
        base = ".".join([*package, base] if base else package)
    return [*_with_packages(base), *(f"{base}.{alias.name}" for alias in statement.names)]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Each project module -> the project modules its running imports load (packages' ``__init__`` included)."""
    modules = project_files(root)
    graph = {}
    for name, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        is_package = path.name == "__init__.py"
        targets = {
            target
            for statement in running_imports(tree)
            for target in imported_names(statement, name, is_package)
            if target in modules and target != name
        }
        graph[name] = targets
    return graph


def external_imports(path: Path) -> set[str]:
    """The top-level names of everything a module's running imports load (``streamlit``, ``torch``, ...)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for statement in running_imports(tree):
        if isinstance(statement, ast.Import):
            names.update(alias.name.split(".")[0] for alias in statement.names)
        elif statement.module and not statement.level:
            names.add(statement.module.split(".")[0])
    return names


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as its path (``[a, b, a]``: a imports b, b imports a), or None.

    A depth-first walk in name order: a module met again while it is still on the walk's path
    closes a circle.
    """
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(module: str) -> list[str] | None:
        path.append(module)
        on_path.add(module)
        for target in sorted(graph.get(module, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                found = visit(target)
                if found:
                    return found
        path.pop()
        on_path.discard(module)
        done.add(module)
        return None

    for module in sorted(graph):
        if module not in done:
            found = visit(module)
            if found:
                return found
    return None


def write_files(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")


def line_count(path: Path) -> int:
    return len(path.read_text(encoding="utf-8").splitlines())


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def names_in(name: str, text: str) -> bool:
    """Whether ``text`` names the file ``name`` on its own (``ngram.py``; not inside ``my_ngram.py``)."""
    return re.search(rf"(?<![\w.]){re.escape(name)}(?!\w)", text) is not None


# ---- the reader on small made-up trees -------------------------------------------------------------


def test_a_circle_closed_by_an_import_inside_a_function_is_found_with_its_path(tmp_path):
    write_files(
        tmp_path,
        {
            "lstm_core/__init__.py": '"""Core."""\n',
            "lstm_core/a.py": "from lstm_core import b\n",
            "lstm_core/b.py": "def later():\n    from lstm_core.a import thing\n",
        },
    )
    graph = import_graph(tmp_path)
    assert graph["lstm_core.a"] == {"lstm_core", "lstm_core.b"}  # "from lstm_core import b": the module b
    assert find_cycle(graph) == ["lstm_core.a", "lstm_core.b", "lstm_core.a"]


def test_an_import_under_type_checking_closes_no_circle_but_its_else_branch_does(tmp_path):
    checked = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from lstm_core.a import Thing\n"
    files = {
        "lstm_core/__init__.py": '"""Core."""\n',
        "lstm_core/a.py": "import lstm_core.b\n",
        "lstm_core/b.py": checked,
    }
    write_files(tmp_path, files)
    assert find_cycle(import_graph(tmp_path)) is None
    write_files(tmp_path, {"lstm_core/b.py": checked + "else:\n    import lstm_core.a\n"})
    assert find_cycle(import_graph(tmp_path)) == ["lstm_core.a", "lstm_core.b", "lstm_core.a"]


def test_importing_a_module_of_a_package_runs_the_packages_init_too(tmp_path):
    write_files(
        tmp_path,
        {
            "lstm_core/__init__.py": '"""Core."""\n',
            "lstm_core/sampling/__init__.py": "from lstm_core.scoring import score\n",
            "lstm_core/sampling/rules.py": "",
            "lstm_core/scoring.py": "from .sampling.rules import rule\n",
        },
    )
    cycle = find_cycle(import_graph(tmp_path))
    assert cycle == ["lstm_core.sampling", "lstm_core.scoring", "lstm_core.sampling"]


# ---- the rules, on this repository ----------------------------------------------------------------


def test_no_import_runs_in_a_circle():
    cycle = find_cycle(import_graph(ROOT))
    assert cycle is None, "these modules import one another in a circle: " + " -> ".join(cycle or [])


def test_no_module_is_over_500_lines():
    modules = sorted([*ROOT.glob("lstm_core/**/*.py"), *ROOT.glob("app/**/*.py")])
    long = {relative(path): line_count(path) for path in modules if line_count(path) > MAX_LINES}
    assert long == {}, f"split these along their seams (at most {MAX_LINES} lines): {long}"


def test_no_page_is_over_250_lines():
    long = {relative(path): line_count(path) for path in sorted(ROOT.glob("app/pages/*.py"))}
    assert {name: lines for name, lines in long.items() if lines > MAX_PAGE_LINES} == {}


def test_init_files_are_maps_a_docstring_and_no_imports():
    problems = []
    for path in sorted([*ROOT.glob("lstm_core/**/__init__.py"), *ROOT.glob("app/**/__init__.py")]):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        has_docstring = ast.get_docstring(tree) is not None
        if not has_docstring:
            problems.append(f"{relative(path)} has no docstring")
        problems += [f"{relative(path)}:{node.lineno} is more than a map" for node in tree.body[has_docstring:]]
    assert problems == []


def test_every_folder_of_lstm_core_has_a_map_that_names_each_of_its_modules():
    problems = []
    for folder in sorted({path.parent for path in ROOT.glob("lstm_core/**/*.py")}):
        init = folder / "__init__.py"
        if not init.exists():
            problems.append(f"{relative(folder)}/ has no __init__.py")
            continue
        docstring = ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))) or ""
        names = [path.name for path in folder.glob("*.py") if path.stem not in ("__init__", "__main__")]
        names += [f"{path.name}/" for path in folder.iterdir() if (path / "__init__.py").exists()]
        problems += [
            f"{relative(init)} does not name {name}" for name in sorted(names) if not names_in(name, docstring)
        ]
    assert problems == []


def test_no_two_modules_share_a_name_across_lstm_core_and_app():
    def names(package: str) -> dict[str, list[str]]:
        found: dict[str, list[str]] = {}
        for path in sorted(ROOT.glob(f"{package}/**/*.py")):
            if path.stem != "__init__":
                found.setdefault(path.stem, []).append(relative(path))
        return found

    core, app = names("lstm_core"), names("app")
    assert {name: core[name] + app[name] for name in sorted(core.keys() & app.keys())} == {}


def test_no_module_of_lstm_core_imports_streamlit_even_inside_a_function():
    offenders = [
        relative(path) for path in sorted(ROOT.glob("lstm_core/**/*.py")) if "streamlit" in external_imports(path)
    ]
    assert offenders == []


@pytest.mark.slow  # a fresh interpreter
def test_importing_lstm_core_never_loads_streamlit() -> None:
    # A fresh interpreter, so that nothing this test session imported can mask the result. Every module
    # on disk is imported (except __main__, which would run the CLI), and the package walk must find
    # them all: a folder without an __init__ would be skipped.
    on_disk = sorted(
        name for name in project_files(ROOT) if name.startswith("lstm_core.") and name != "lstm_core.__main__"
    )
    script = (
        "import importlib, pkgutil, sys\n"
        "import lstm_core\n"
        "found = pkgutil.walk_packages(lstm_core.__path__, 'lstm_core.')\n"
        "names = sorted(m.name for m in found if not m.name.endswith('__main__'))\n"
        "for name in names:\n"
        "    importlib.import_module(name)\n"
        "loaded = sorted(m for m in sys.modules if m == 'streamlit' or m.startswith('streamlit.'))\n"
        "print(','.join(names))\n"
        "print(loaded)\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    names_line, loaded_line = result.stdout.strip().splitlines()
    assert names_line.split(",") == on_disk
    assert loaded_line == "[]"


@pytest.mark.slow  # a fresh interpreter
def test_the_trainers_events_load_without_torch():
    script = (
        "import sys\n"
        "import lstm_core.training.events\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'torch'))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
