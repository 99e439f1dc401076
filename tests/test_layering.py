"""Layering rules of the ``hal`` package, checked statically and in a wgpu-less interpreter.

The layers (no GPU needed to check any of them):

* ``hal/core`` is pure: it imports only the standard library, numpy, ``hal.core.*`` and the
  vocabulary modules ``hal.errors`` / ``hal.enums`` (which are held to the same rule) — never
  ``hal.runtime``, ``hal.backends``, ``hal.tools``, ``hal.examples``, wgpu or wgpudawn.
* ``hal/backends`` is the only place that imports wgpu, wgpudawn or wgpu's private
  ``_ffi`` / ``wgpu_native._api`` modules.
* ``hal/runtime`` never imports ``hal.tools`` or ``hal.examples``.
* No module reaches into another object's private services (``device._queue``,
  ``buffer._allocation``, …): they are passed explicitly instead.

The static checks read every ``import`` / ``from … import`` node anywhere in a module
(``if TYPE_CHECKING:`` blocks and function-local imports included), resolve relative imports
and ``from hal import Name`` (through the lazy tables of ``hal/__init__.py``), and also treat
``importlib.import_module("…")`` / ``__import__("…")`` with a literal name as imports. Every
offending ``file:line`` is listed, grouped by file. The checkers take the package folder as an
argument, so the last tests run them on a small synthetic package to show that they flag what
they should and nothing else.
"""

from __future__ import annotations

import ast
import itertools
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "hal"

LAYERS = ("core", "runtime", "backends")
"""Layer packages that must exist and hold at least one module besides ``__init__``."""

WGPU_PACKAGES = frozenset({"wgpu", "wgpudawn"})
"""Top-level packages only ``hal/backends`` may import (and the wgpu-less run blocks)."""

PURE_SUBPACKAGES = frozenset({"core", "errors", "enums", "shaders", "cost_models"})
"""``hal.<name>`` that pure code may import: the core, the vocabulary modules, data packages."""

PURE_VOCABULARY = ("errors.py", "enums.py")
"""Top-level modules that core imports, so they are held to the core's rule."""

RUNTIME_FORBIDDEN = frozenset({"tools", "examples"})
"""``hal.<name>`` that ``hal/runtime`` must not import."""

PRIVATE_SERVICES = frozenset(
    {"_wgpu", "_queue", "_bind_groups", "_executables", "_builtins", "_profiler", "_allocation"}
)
"""Private attributes that act as a service locator when read off another object."""

OWN_NAMES = frozenset({"self", "cls"})
ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "hasattr", "delattr"})
IMPORT_TIMEOUT = 60.0
MARKER = "@@layering-result@@"


# -- the checkers ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class Violation:
    """One offending line: where, and what it does."""

    path: Path
    line: int
    message: str


@dataclass(frozen=True)
class ImportRef:
    """One import statement (or literal dynamic import) and the absolute names it loads."""

    path: Path
    line: int
    statement: str
    targets: tuple[str, ...]


@dataclass
class ParsedModule:
    """A module of the package: file, dotted name, syntax tree (None if it does not parse)."""

    path: Path
    name: str
    tree: ast.Module | None
    error: str | None = None
    imports: list[ImportRef] = field(default_factory=list)


def python_files(directory: Path) -> list[Path]:
    """Every ``.py`` file under ``directory``, sorted, caches skipped."""
    return sorted(p for p in directory.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path, package_dir: Path) -> str:
    """Dotted name of ``path`` inside the package rooted at ``package_dir``."""
    parts = list(path.relative_to(package_dir.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve_relative(module: str, is_package: bool, level: int, name: str | None) -> str | None:
    """Absolute name of ``from <level dots><name> import …`` written in ``module``; None when
    the dots climb above the top-level package."""
    if level == 0:
        return name
    package = module.split(".") if is_package else module.split(".")[:-1]
    keep = len(package) - (level - 1)
    if keep <= 0:
        return None
    base = package[:keep]
    if name:
        base.append(name)
    return ".".join(base)


def lazy_exports(package_dir: Path) -> dict[str, str]:
    """``name -> module`` from the module-level ``{"name": "hal.x.y"}`` tables of the
    package's ``__init__.py`` (PEP 562 lazy exports), so ``from hal import Device`` resolves to
    ``hal.runtime.device.Device``."""
    init = package_dir / "__init__.py"
    if not init.exists():
        return {}
    try:
        tree = ast.parse(init.read_text(encoding="utf-8"), filename=str(init))
    except SyntaxError:
        return {}
    prefix = package_dir.name
    exports: dict[str, str] = {}
    for node in tree.body:
        value = node.value if isinstance(node, ast.Assign | ast.AnnAssign) else None
        if not isinstance(value, ast.Dict):
            continue
        for key, item in zip(value.keys, value.values, strict=True):
            if (
                isinstance(key, ast.Constant)
                and isinstance(key.value, str)
                and isinstance(item, ast.Constant)
                and isinstance(item.value, str)
                and (item.value == prefix or item.value.startswith(prefix + "."))
            ):
                exports[key.value] = item.value
    return exports


def _short(text: str, limit: int = 110) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _import_refs(
    tree: ast.Module, path: Path, module: str, is_package: bool, root: str, exports: dict[str, str]
) -> list[ImportRef]:
    refs: list[ImportRef] = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = resolve_relative(module, is_package, node.level, node.module)
            if base is None:
                targets = [f"<relative import above {root}>"]
            else:
                for alias in node.names:
                    if alias.name == "*":
                        targets.append(base)
                    elif base == root and alias.name in exports:
                        # ``from hal import Name``: the lazy table names the module it loads.
                        targets.append(exports[alias.name])
                    else:
                        targets.append(f"{base}.{alias.name}")
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            dynamic = (
                isinstance(func, ast.Name) and func.id in {"__import__", "import_module"}
            ) or (
                isinstance(func, ast.Attribute)
                and func.attr == "import_module"
                and isinstance(func.value, ast.Name)
                and func.value.id == "importlib"
            )
            first = node.args[0]
            if (
                dynamic
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
                and not first.value.startswith(".")
            ):
                targets = [first.value]
        if targets:
            refs.append(
                ImportRef(
                    path, getattr(node, "lineno", 0), _short(ast.unparse(node)), tuple(targets)
                )
            )
    return refs


def parse_modules(package_dir: Path, files: Iterable[Path]) -> list[ParsedModule]:
    """Parse ``files`` (inside ``package_dir``) and collect their imports."""
    exports = lazy_exports(package_dir)
    parsed: list[ParsedModule] = []
    for path in files:
        name = module_name(path, package_dir)
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as exc:
            parsed.append(ParsedModule(path, name, None, f"does not parse: {exc}"))
            continue
        module = ParsedModule(path, name, tree)
        module.imports = _import_refs(
            tree, path, name, path.name == "__init__.py", package_dir.name, exports
        )
        parsed.append(module)
    return parsed


Reason = Callable[[str, str], str | None]
"""``(target, root package name) -> why importing target is forbidden``, None when allowed."""


def _check_imports(
    modules: Sequence[ParsedModule], reason: Reason, root: str, rule: str
) -> list[Violation]:
    violations: list[Violation] = []
    for module in modules:
        if module.error is not None:
            violations.append(Violation(module.path, 0, module.error))
            continue
        for ref in module.imports:
            reasons = sorted({r for t in ref.targets if (r := reason(t, root)) is not None})
            if reasons:
                message = f"{ref.statement}  ->  {', '.join(reasons)} {rule}"
                violations.append(Violation(ref.path, ref.line, message))
    return sorted(set(violations))


def core_import_reason(target: str, root: str) -> str | None:
    """Why pure code may not import ``target`` (None when it may)."""
    parts = target.split(".")
    top = parts[0]
    if top == root:
        if len(parts) == 1:
            return f"the {root} package root (import {root}.core/errors/enums directly)"
        return None if parts[1] in PURE_SUBPACKAGES else f"{root}.{parts[1]}"
    if top.startswith("<"):
        return top
    if top in WGPU_PACKAGES:
        return top
    if top == "numpy" or top in sys.stdlib_module_names:
        return None
    return f"third-party {top}"


def wgpu_import_reason(target: str, root: str) -> str | None:
    """Why code outside ``hal/backends`` may not import ``target`` (None when it may)."""
    parts = target.split(".")
    found = [parts[0]] if parts[0] in WGPU_PACKAGES else []
    if any("_ffi" in part for part in parts):
        found.append("_ffi")
    if ("wgpu_native", "_api") in set(itertools.pairwise(parts)):
        found.append("wgpu_native._api")
    return "+".join(found) or None


def runtime_import_reason(target: str, root: str) -> str | None:
    """Why ``hal/runtime`` may not import ``target`` (None when it may)."""
    parts = target.split(".")
    if parts[0] == root and len(parts) > 1 and parts[1] in RUNTIME_FORBIDDEN:
        return f"{root}.{parts[1]}"
    return None


def pure_files(package_dir: Path) -> list[Path]:
    """The modules held to the core rule: ``core/`` and the vocabulary modules."""
    vocabulary = [package_dir / name for name in PURE_VOCABULARY if (package_dir / name).exists()]
    return python_files(package_dir / "core") + vocabulary


def core_violations(package_dir: Path) -> list[Violation]:
    """Rule (a): pure modules import only stdlib, numpy, hal.core.*, hal.errors, hal.enums."""
    modules = parse_modules(package_dir, pure_files(package_dir))
    return _check_imports(modules, core_import_reason, package_dir.name, "in a pure module")


def wgpu_violations(package_dir: Path) -> list[Violation]:
    """Rule (b): nothing outside ``backends/`` imports wgpu, wgpudawn, ``_ffi`` or ``_api``."""
    backends = package_dir / "backends"
    files = [p for p in python_files(package_dir) if not p.is_relative_to(backends)]
    modules = parse_modules(package_dir, files)
    return _check_imports(modules, wgpu_import_reason, package_dir.name, "outside hal/backends")


def runtime_violations(package_dir: Path) -> list[Violation]:
    """Rule (c): ``runtime/`` never imports ``hal.tools`` or ``hal.examples``."""
    modules = parse_modules(package_dir, python_files(package_dir / "runtime"))
    return _check_imports(modules, runtime_import_reason, package_dir.name, "in hal/runtime")


def _is_own(node: ast.expr) -> bool:
    """``self`` / ``cls`` / ``super()``: the object's own attributes."""
    if isinstance(node, ast.Name):
        return node.id in OWN_NAMES
    return (
        isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "super"
    )


def private_attribute_violations(package_dir: Path) -> list[Violation]:
    """Rule (d): ``X._wgpu`` / ``X._queue`` / … (or ``getattr(X, "_queue")``) with X other
    than ``self`` / ``cls`` / ``super()``, anywhere in the package."""
    violations: list[Violation] = []
    for path in python_files(package_dir):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        except (SyntaxError, UnicodeDecodeError) as exc:
            violations.append(Violation(path, 0, f"does not parse: {exc}"))
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr in PRIVATE_SERVICES
                and not _is_own(node.value)
            ):
                text = f"{_short(ast.unparse(node.value), 60)}.{node.attr}"
                violations.append(Violation(path, node.lineno, text))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ATTRIBUTE_FUNCTIONS
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and node.args[1].value in PRIVATE_SERVICES
                and not _is_own(node.args[0])
            ):
                violations.append(Violation(path, node.lineno, _short(ast.unparse(node))))
    return sorted(set(violations))


def report(title: str, violations: Sequence[Violation], base: Path) -> str:
    """``violations`` grouped by file, one ``file:line  what`` per line."""
    by_file: dict[Path, list[Violation]] = {}
    for violation in sorted(violations):
        by_file.setdefault(violation.path, []).append(violation)
    lines = [f"{title}: {len(violations)} in {len(by_file)} file(s)"]
    for path, found in by_file.items():
        shown = path.relative_to(base) if path.is_relative_to(base) else path
        lines.append(f"  {shown} ({len(found)})")
        lines.extend(f"    {shown}:{v.line}  {v.message}" for v in found)
    return "\n".join(lines)


def fail_on(title: str, violations: Sequence[Violation], base: Path = REPO) -> None:
    if violations:
        pytest.fail(report(title, violations, base), pytrace=False)


# -- importing without wgpu -----------------------------------------------------------------

_BLOCKED_IMPORT_SCRIPT = r"""
import importlib
import json
import sys
import traceback

root, blocked, marker = sys.argv[1], set(sys.argv[2].split(",")), sys.argv[3]
names = sys.argv[4:]
sys.path.insert(0, root)
attempts = []


class BlockedFinder:
    # First on sys.meta_path: refuses the blocked packages and all their submodules.
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in blocked:
            attempts.append(name)
            raise ImportError(f"import of {name!r} is blocked by tests/test_layering.py")
        return None


sys.meta_path.insert(0, BlockedFinder())
preloaded = sorted(m for m in sys.modules if m.partition(".")[0] in blocked)


def hal_modules():
    return sorted(k for k in sys.modules if k == "hal" or k.startswith("hal."))


results = {}
for name in names:
    # Each module starts from a fresh hal (numpy and the stdlib stay loaded).
    for key in hal_modules():
        del sys.modules[key]
    attempts.clear()
    result = {"error": None, "chain": [], "file": None}
    try:
        module = importlib.import_module(name)
        result["file"] = getattr(module, "__file__", None)
    except (Exception, SystemExit) as exc:
        result["error"] = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        result["chain"] = [
            f"{frame.filename}:{frame.lineno}"
            for frame in traceback.extract_tb(exc.__traceback__)
            if frame.filename.startswith(root)
        ]
    result["attempts"] = sorted(set(attempts))
    result["blocked_loaded"] = sorted(m for m in sys.modules if m.partition(".")[0] in blocked)
    result["hal_loaded"] = hal_modules()
    results[name] = result
print(marker + json.dumps({"preloaded": preloaded, "results": results}), flush=True)
"""


@dataclass(frozen=True)
class ImportResult:
    """What importing one module in the wgpu-less interpreter did."""

    error: str | None
    chain: tuple[str, ...]
    file: str | None
    attempts: tuple[str, ...]
    blocked_loaded: tuple[str, ...]
    hal_loaded: tuple[str, ...]


def import_without_wgpu(root: Path, modules: Sequence[str]) -> dict[str, ImportResult]:
    """Import each of ``modules`` (from a fresh ``hal`` each time) in one interpreter where a
    ``sys.meta_path`` finder refuses wgpu, wgpudawn and their submodules."""
    env = dict(os.environ, PYTHONDONTWRITEBYTECODE="1")
    argv = [str(root), ",".join(sorted(WGPU_PACKAGES)), MARKER, *modules]
    try:
        completed = subprocess.run(
            [sys.executable, "-c", _BLOCKED_IMPORT_SCRIPT, *argv],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"importing {list(modules)} without wgpu took over {exc.timeout} s")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(MARKER)]
    if completed.returncode != 0 or not lines:
        pytest.fail(
            f"the wgpu-blocked interpreter exited {completed.returncode}\n"
            f"{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}"
        )
    payload = json.loads(lines[-1][len(MARKER) :])
    assert not payload["preloaded"], f"wgpu was loaded before the blocker: {payload['preloaded']}"
    results: dict[str, ImportResult] = {}
    for name, raw in payload["results"].items():
        results[name] = ImportResult(
            error=raw["error"],
            chain=tuple(raw["chain"]),
            file=raw["file"],
            attempts=tuple(raw["attempts"]),
            blocked_loaded=tuple(raw["blocked_loaded"]),
            hal_loaded=tuple(raw["hal_loaded"]),
        )
    return results


def import_problems(result: ImportResult, root: Path, package: str = "hal") -> list[str]:
    """What is wrong with one module's wgpu-less import (empty when it is pure)."""
    problems: list[str] = []

    def shown(location: str) -> str:
        return location.removeprefix(str(root) + os.sep)

    if result.error is not None:
        chain = " -> ".join(shown(c) for c in result.chain)
        problems.append(f"import failed: {result.error}" + (f"  (via {chain})" if chain else ""))
    if result.attempts:
        problems.append(f"tried to import (blocked): {', '.join(result.attempts)}")
    if result.blocked_loaded:
        problems.append(f"in sys.modules afterwards: {', '.join(result.blocked_loaded)}")
    impure = [
        m
        for m in result.hal_loaded
        if m.startswith(package + ".") and m.split(".")[1] not in PURE_SUBPACKAGES
    ]
    if impure:
        problems.append(f"loaded non-pure modules: {', '.join(impure)}")
    if result.error is None and (
        result.file is None or not Path(result.file).resolve().is_relative_to(root / package)
    ):
        problems.append(f"was not imported from {root / package}: {result.file}")
    return problems


def pure_module_names(package_dir: Path) -> list[str]:
    """Every module under ``core/`` (walked, not listed) plus the vocabulary modules."""
    return [module_name(path, package_dir) for path in pure_files(package_dir)]


# -- the rules, on the real package ---------------------------------------------------------


@pytest.mark.parametrize("layer", LAYERS)
def test_layer_packages_exist_and_are_not_empty(layer: str) -> None:
    """The checks below cannot pass vacuously: each layer is a package with real modules."""
    folder = PACKAGE / layer
    assert (folder / "__init__.py").is_file(), f"{folder} is not a package"
    modules = [p for p in python_files(folder) if p.name != "__init__.py"]
    assert modules, f"{folder} holds no module besides __init__.py"


def test_core_imports_only_pure_modules() -> None:
    """(a) hal/core (and hal.errors / hal.enums) never import runtime, backends, tools,
    examples, wgpu, wgpudawn, or any third-party package other than numpy."""
    assert python_files(PACKAGE / "core")
    fail_on("hal/core imports outside the pure layer", core_violations(PACKAGE))


def test_only_backends_import_wgpu() -> None:
    """(b) wgpu, wgpudawn, ``_ffi`` and ``wgpu_native._api`` are imported in hal/backends
    only."""
    assert [p for p in python_files(PACKAGE) if not p.is_relative_to(PACKAGE / "backends")]
    fail_on("wgpu imported outside hal/backends", wgpu_violations(PACKAGE))


def test_runtime_does_not_import_tools_or_examples() -> None:
    """(c) hal/runtime never imports hal.tools or hal.examples."""
    assert python_files(PACKAGE / "runtime")
    fail_on("hal/runtime imports tools/examples", runtime_violations(PACKAGE))


def test_every_core_module_imports_without_wgpu() -> None:
    """Each module under hal/core (and hal.errors / hal.enums) imports in an interpreter where
    wgpu and wgpudawn cannot be imported, never tries to import them, and loads no module of
    hal.runtime / hal.backends / hal.tools / hal.examples."""
    names = pure_module_names(PACKAGE)
    assert any(name.startswith("hal.core.") for name in names), names
    results = import_without_wgpu(REPO, names)
    assert sorted(results) == sorted(names)
    failures = {name: p for name, r in results.items() if (p := import_problems(r, REPO))}
    if failures:
        lines = [f"{len(failures)} of {len(names)} pure module(s) need more than the pure layer:"]
        for name, problems in sorted(failures.items()):
            lines.append(f"  {name}")
            lines.extend(f"    {problem}" for problem in problems)
        pytest.fail("\n".join(lines), pytrace=False)


def test_no_service_locator_through_private_attributes() -> None:
    """(d) No module reads ``X._wgpu``, ``X._queue``, ``X._bind_groups``, ``X._executables``,
    ``X._builtins``, ``X._profiler`` or ``X._allocation`` off an object other than
    ``self`` / ``cls``: the service is passed in instead."""
    fail_on(
        "private service attributes read off other objects",
        private_attribute_violations(PACKAGE),
    )


# -- the checkers, on a synthetic package ---------------------------------------------------


def write_package(root: Path, files: dict[str, str]) -> Path:
    """Create ``root/hal`` with ``files`` (relative path -> source); returns the package."""
    package = root / "hal"
    for relative, source in files.items():
        path = package / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return package


SYNTHETIC: dict[str, str] = {
    "__init__.py": """
        _EXPORTS = {"Device": "hal.runtime.device", "HalError": "hal.errors"}
        _SUBMODULES = {"tools": "hal.tools"}
    """,
    "errors.py": """
        class HalError(Exception):
            pass
    """,
    "enums.py": "import enum\n",
    "core/__init__.py": "",
    "core/clean.py": """
        from __future__ import annotations

        import json
        from typing import TYPE_CHECKING

        import numpy as np

        from hal import HalError
        from hal.core import helper
        from hal.errors import HalError as E
        from . import helper as h
        from ..enums import enum
        from .helper import thing

        if TYPE_CHECKING:
            from hal.core.helper import Thing


        def f(x):
            import importlib
            return importlib.import_module("json"), x._private, self_like._wgpu_other
    """,
    "core/helper.py": "thing = 1\n",
    "core/dirty.py": """
        from typing import TYPE_CHECKING

        import wgpu

        if TYPE_CHECKING:
            from hal.runtime.device import Device


        def f():
            from ..backends import native
            from hal import Device
            import hal.tools.cli
            import importlib
            return importlib.import_module("wgpudawn")


        import requests
    """,
    "runtime/__init__.py": "",
    "runtime/device.py": """
        import wgpu.backends.wgpu_native


        class Device:
            def __init__(self, queue):
                self._queue = queue
                self._wgpu = None

            def submit(self, other):
                self._queue.submit()
                super()._wgpu
                other._queue.submit()
                getattr(other, "_profiler")
                return self.buffer._allocation


        def helper():
            from hal.tools import cli
            from .. import examples
            from wgpu.backends.wgpu_native._api import libf
    """,
    "runtime/ok.py": """
        from hal.backends import native
        from hal.core.clean import f
    """,
    "backends/__init__.py": "",
    "backends/native.py": """
        import wgpu
        from wgpu.backends.wgpu_native import _ffi
        from wgpu.backends.wgpu_native._api import libf


        def f(device):
            return device._wgpu
    """,
    "tools/__init__.py": "",
    "tools/cli.py": """
        import hal.runtime.device
        from wgpu.backends.wgpu_native._ffi import ffi
    """,
}


def located(violations: Iterable[Violation], package: Path) -> set[tuple[str, int]]:
    return {(v.path.relative_to(package).as_posix(), v.line) for v in violations}


def test_resolve_relative_imports() -> None:
    assert resolve_relative("hal.core.lowering", False, 1, "plan") == "hal.core.plan"
    assert resolve_relative("hal.core.lowering", False, 2, "runtime.buffer") == "hal.runtime.buffer"
    assert resolve_relative("hal.core", True, 1, None) == "hal.core"
    assert resolve_relative("hal.core", True, 2, "errors") == "hal.errors"
    assert resolve_relative("hal.core.lowering", False, 3, "x") is None
    assert resolve_relative("hal.core.lowering", False, 0, "wgpu") == "wgpu"


def test_core_checker_flags_impure_imports_only(tmp_path: Path) -> None:
    package = write_package(tmp_path, SYNTHETIC)
    found = core_violations(package)
    assert located(found, package) == {
        ("core/dirty.py", 3),  # import wgpu
        ("core/dirty.py", 6),  # TYPE_CHECKING: from hal.runtime.device import Device
        ("core/dirty.py", 10),  # function-local, relative: from ..backends import native
        ("core/dirty.py", 11),  # from hal import Device (lazy export of hal.runtime.device)
        ("core/dirty.py", 12),  # import hal.tools.cli
        ("core/dirty.py", 14),  # importlib.import_module("wgpudawn")
        ("core/dirty.py", 17),  # third-party package
    }, report("core", found, tmp_path)
    messages = {v.line: v.message for v in found}
    assert "hal.runtime" in messages[11]
    assert "hal.backends" in messages[10]
    assert "wgpudawn" in messages[14]


def test_wgpu_checker_allows_backends_only(tmp_path: Path) -> None:
    package = write_package(tmp_path, SYNTHETIC)
    found = wgpu_violations(package)
    assert located(found, package) == {
        ("core/dirty.py", 3),
        ("core/dirty.py", 14),
        ("runtime/device.py", 1),
        ("runtime/device.py", 20),
        ("tools/cli.py", 2),
    }, report("wgpu", found, tmp_path)


def test_runtime_checker_flags_tools_and_examples(tmp_path: Path) -> None:
    package = write_package(tmp_path, SYNTHETIC)
    found = runtime_violations(package)
    assert located(found, package) == {
        ("runtime/device.py", 18),  # from hal.tools import cli
        ("runtime/device.py", 19),  # from .. import examples
    }, report("runtime", found, tmp_path)


def test_private_attribute_checker_skips_own_attributes(tmp_path: Path) -> None:
    package = write_package(tmp_path, SYNTHETIC)
    found = private_attribute_violations(package)
    assert located(found, package) == {
        ("runtime/device.py", 12),  # other._queue
        ("runtime/device.py", 13),  # getattr(other, "_profiler")
        ("runtime/device.py", 14),  # self.buffer._allocation
        ("backends/native.py", 7),  # device._wgpu, even in a backend
    }, report("private", found, tmp_path)


def test_checkers_pass_on_a_clean_layout(tmp_path: Path) -> None:
    files = {k: v for k, v in SYNTHETIC.items() if k not in {"core/dirty.py", "tools/cli.py"}}
    files["backends/native.py"] = "import wgpu\nfrom wgpu.backends.wgpu_native import _ffi\n"
    files["runtime/device.py"] = """
        from hal.backends import native
        from hal.core.clean import f


        class Device:
            def __init__(self, queue):
                self._queue = queue
    """
    package = write_package(tmp_path, files)
    for checker in (
        core_violations,
        wgpu_violations,
        runtime_violations,
        private_attribute_violations,
    ):
        found = checker(package)
        assert not found, report(checker.__name__, found, tmp_path)


def test_unparsable_module_is_reported_not_skipped(tmp_path: Path) -> None:
    package = write_package(tmp_path, {"__init__.py": "", "core/__init__.py": "", "core/x.py": "("})
    found = core_violations(package)
    assert located(found, package) == {("core/x.py", 0)}
    assert "does not parse" in found[0].message


def test_blocked_import_runner_flags_wgpu_and_layer_leaks(tmp_path: Path) -> None:
    package = write_package(
        tmp_path,
        {
            "__init__.py": "",
            "errors.py": "class HalError(Exception):\n    pass\n",
            "core/__init__.py": "",
            # Loads hal.runtime first: the next modules must start from a fresh hal.
            "core/a_leaky.py": "from hal.runtime import thing\n",
            "core/clean.py": "import json\nimport numpy\nfrom hal.errors import HalError\n",
            "core/dirty.py": "import wgpu\n",
            "core/guarded.py": """
                try:
                    import wgpu.utils
                except ImportError:
                    wgpu = None
            """,
            "runtime/__init__.py": "",
            "runtime/thing.py": "VALUE = 1\n",
        },
    )
    names = pure_module_names(package)
    assert names == [
        "hal.core",
        "hal.core.a_leaky",
        "hal.core.clean",
        "hal.core.dirty",
        "hal.core.guarded",
        "hal.errors",
    ]
    results = import_without_wgpu(tmp_path, names)
    problems = {name: import_problems(result, tmp_path) for name, result in results.items()}
    assert problems["hal.core"] == []
    assert problems["hal.core.clean"] == []
    assert problems["hal.errors"] == []
    assert problems["hal.core.a_leaky"] == [
        "loaded non-pure modules: hal.runtime, hal.runtime.thing"
    ]
    dirty = problems["hal.core.dirty"]
    assert dirty[0].startswith("import failed: ImportError: import of 'wgpu' is blocked"), dirty
    assert "hal/core/dirty.py:1" in dirty[0]
    assert dirty[1] == "tried to import (blocked): wgpu"
    assert problems["hal.core.guarded"] == ["tried to import (blocked): wgpu"]
