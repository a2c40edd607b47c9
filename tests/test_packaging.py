"""The environment files agree, and the import layering of the design holds."""

import ast
import pathlib
import re
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
    for extra, items in meta["optional-dependencies"].items():
        reqs += [r for r in items if not r.startswith("dalv[")]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(reqs, key=_name) == sorted(pip, key=_name)  # same names, same pins


# Layering (architecture §3.3): a module imports only from modules above it.
ORDER = [
    "config",
    "paper",
    "data",
    "models",
    "train",
    "metrics",
    "attacks",
    "strategies",
    "augment",
    "adversarial",
    "verify",
    "methods",
    "loop",
    "plots",
    "report",
    "reproduce",
    "cli",
]


def _dalv_imports(path: pathlib.Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.ImportFrom)
            and node.module
            and node.module.startswith("dalv")
        ):
            parts = node.module.split(".")
            if len(parts) > 1:
                out.add(parts[1])
            else:
                out.update(a.name for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(
                a.name.split(".")[1] for a in node.names if a.name.startswith("dalv.")
            )
    return out


def test_modules_import_only_from_above():
    pkg = ROOT / "dalv"
    for path in pkg.glob("*.py"):
        mod = path.stem
        if mod not in ORDER:
            continue
        for dep in _dalv_imports(path):
            if dep in ORDER and dep != mod and ORDER.index(dep) > ORDER.index(mod):
                # lazy hooks that look extensions up by name are allowed in methods/loop
                assert (mod, dep) in {
                    ("methods", "adversarial"),
                    ("methods", "verify"),
                    ("reproduce", "cli"),
                }, f"dalv.{mod} imports dalv.{dep}"
