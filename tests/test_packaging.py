"""The environment files agree, and the import layering of the design holds."""

import ast
import pathlib
import re
import sys

import pytest
import tomllib
import yaml

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _name(req: str) -> str:
    return (
        re.split(r"[<>=!~\[ ;]", req.strip(), maxsplit=1)[0].lower().replace("_", "-")
    )


def test_environment_yml_matches_pyproject():
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = list(meta["dependencies"])
    for items in meta["optional-dependencies"].values():
        reqs += [r for r in items if not r.startswith("dalv[")]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(reqs, key=_name) == sorted(pip, key=_name)  # same names, same pins


# Layering: a module imports only from modules above it (lazy imports inside functions
# count too). Everything under dalv/verify/ sits at one level and may import only
# dalv.models and dalv.verify.* (torch, numpy and the solvers otherwise).
ORDER = [
    "version",
    "paths",
    "names",
    "config",
    "paper",
    "data",
    "models",
    "train",
    "metrics",
    "stats",
    "attacks",
    "verify",
    "strategies",
    "augment",
    "methods",
    "loop",
    "queries",
    "plots",
    "report",
    "reproduce",
    "cli",
    "course",
]
VERIFY_MAY_IMPORT = {"models", "verify"}


def _module_name(path: pathlib.Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _dalv_imports(path: pathlib.Path, runtime_only: bool = False) -> set[str]:
    """Full names of the dalv modules ``path`` imports (``dalv.verify.bab``, ...);
    with ``runtime_only``, imports under ``if TYPE_CHECKING:`` are left out."""
    tree = ast.parse(path.read_text())
    skip: set[int] = set()
    if runtime_only:
        for node in ast.walk(tree):
            test = getattr(node, "test", None)
            name = getattr(test, "id", None) or getattr(test, "attr", None)
            if isinstance(node, ast.If) and name == "TYPE_CHECKING":
                skip.update(id(n) for n in ast.walk(node))
    out = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.ImportFrom) and node.module:
            if node.level:  # relative imports are not used in dalv
                raise AssertionError(f"{path}: relative import")
            if node.module == "dalv":
                out.update(f"dalv.{a.name}" for a in node.names)
            elif node.module.startswith("dalv."):
                out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "dalv")
    return out


def _top(name: str) -> str:
    return name.split(".")[1]


def _all_modules() -> dict[str, pathlib.Path]:
    return {_module_name(p): p for p in (ROOT / "dalv").rglob("*.py")}


def test_every_module_has_a_place_in_the_layering():
    for name in _all_modules():
        if name in ("dalv", "dalv.__main__"):
            continue
        assert _top(name) in ORDER, f"{name} is not in the layering ORDER"


def test_modules_import_only_from_above():
    bad = []
    for name, path in _all_modules().items():
        if name in ("dalv", "dalv.__main__"):
            continue  # the package's front door and `python -m dalv`
        mine = _top(name)
        for dep in _dalv_imports(path):
            if dep == "dalv" or dep.startswith("dalv.__"):
                bad.append(f"{name} imports {dep}")
                continue
            other = _top(dep)
            if mine == "verify":
                if other not in VERIFY_MAY_IMPORT:
                    bad.append(f"{name} imports {dep}")
            elif other != mine and ORDER.index(other) > ORDER.index(mine):
                bad.append(f"{name} imports {dep} (below it)")
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_verify_modules_form_no_cycle():
    """Run-time imports only: a type hint may name a module that imports this one."""
    mods = {n: p for n, p in _all_modules().items() if n.startswith("dalv.verify.")}
    graph = {
        n: {d for d in _dalv_imports(p, runtime_only=True) if d in mods and d != n}
        for n, p in mods.items()
    }
    state: dict[str, int] = {}

    def visit(n, stack):
        state[n] = 1
        for d in graph[n]:
            assert state.get(d) != 1, "import cycle: " + " -> ".join([*stack, n, d])
            if d not in state:
                visit(d, [*stack, n])
        state[n] = 2

    for n in graph:
        if n not in state:
            visit(n, [])


def test_the_layering_check_catches_an_upward_import(tmp_path, monkeypatch):
    """The check itself can fail: a planted upward import is reported."""
    fake = tmp_path / "dalv"
    (fake / "verify").mkdir(parents=True)
    (fake / "verify" / "x.py").write_text("from dalv.strategies import Random\n")
    (fake / "train.py").write_text("import dalv.loop\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="dalv.verify.x imports dalv.strategies"):
        test_modules_import_only_from_above()
    with pytest.raises(AssertionError, match="dalv.train imports dalv.loop"):
        test_modules_import_only_from_above()
