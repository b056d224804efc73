"""The library's layout: a package per concern, imports running one way (model never imports
train or serve), and the README's layout section naming what is there."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LIB = ROOT / "platform" / "f2llm"

# Lower concerns first; a module may import its own concern and anything below it.
LAYERS = ["edge", "kernels", "model", "data", "train", "evaluation", "tune", "serve", "components", "cluster", "cli"]
EDGE = {"config", "storage", "kube", "tasks"}  # the shared vocabulary (and the store and Kubernetes clients) at the top of the package


def concern(module: str) -> str:
    """f2llm.<x>[.<y>] -> its concern."""
    parts = module.split(".")
    if len(parts) < 2:
        return "edge"
    head = parts[1]
    return "edge" if head in EDGE else head


def library_modules() -> dict[str, Path]:
    found = {}
    for base, package in ((LIB, "f2llm"), (ROOT / "kernels", "f2llm.kernels"), (ROOT / "components", "f2llm.components")):
        for path in base.rglob("*.py"):
            rel = path.relative_to(base).with_suffix("")
            parts = [p for p in rel.parts if p != "__init__"]
            found[".".join([package, *parts])] = path
    return found


def imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("f2llm"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names if node.module == "f2llm")
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("f2llm"))
    return names


def test_imports_run_one_way():
    upward = []
    for module, path in library_modules().items():
        mine = LAYERS.index(concern(module))
        for target in imports(path):
            if LAYERS.index(concern(target)) > mine:
                upward.append(f"{module} imports {target}")
    assert not upward, "imports from a lower concern up:\n" + "\n".join(sorted(upward))


def test_every_module_sits_in_a_known_concern():
    assert not (ROOT / "platform" / "__init__.py").exists()  # it would shadow the stdlib's platform
    flat = sorted(p.stem for p in LIB.glob("*.py") if p.stem not in EDGE | {"__init__", "cli"})
    assert not flat, f"modules outside a concern package: {flat}"
    for module in library_modules():
        assert concern(module) in LAYERS, module


def test_readme_layout_names_every_package():
    readme = (ROOT / "README.md").read_text()
    layout = readme[readme.index("## Layout"):]
    for package in sorted(p.name for p in LIB.iterdir() if p.is_dir() and (p / "__init__.py").exists()):
        assert f"`{package}/`" in layout, f"README's layout section does not name {package}/"
