"""The layering of docs/ARCHITECTURE.md, checked on the source: who may import whom."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from step.kit.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
STAGE_MODULES = {s.module for s in STAGES}
COMMANDS = {"step.report"}  # step/ modules the user runs (python -m step.report), not stages


def imports(path: Path) -> set[str]:
    """Every module named by an import statement anywhere in the file (top level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(REPO).with_suffix("").parts)


def test_step_holds_what_is_run_and_the_kit_what_is_shared():
    """step/ holds the stage modules (one per row of STAGES) and the report command; everything the stages share
    is in step/kit/, so a kit module is never mistaken for a stage (segmentation.py beside train_seg.py)."""
    top = {module_name(p) for p in (REPO / "step").glob("*.py") if p.name != "__init__.py"}
    assert top == STAGE_MODULES | COMMANDS, (f"step/ holds {sorted(top - STAGE_MODULES - COMMANDS)} beside its stage "
                                            f"modules: move shared code to step/kit/; missing: {sorted(STAGE_MODULES - top)}")
    kit = {module_name(p) for p in (REPO / "step" / "kit").glob("*.py")}
    assert kit and not kit & STAGE_MODULES


def test_no_stage_imports_another_and_the_kit_imports_no_stage():
    for path in sorted((REPO / "step").rglob("*.py")):
        name = module_name(path)
        others = {m for m in imports(path) if m in STAGE_MODULES | COMMANDS and m != name}
        if name in STAGE_MODULES:
            assert not others, f"{name} imports {sorted(others)}; move the shared code to a kit module (step/kit/)"
        else:  # a kit module serves stages; it never reaches into one
            assert not others, f"{name} imports stage module(s) or commands {sorted(others)}"


def test_layers_import_only_downwards():
    rules = {"misc": ("net", "step", "voc12", "run_sample", "bench"),
             "net": ("step", "voc12", "run_sample", "bench"),
             "voc12": ("step", "net", "run_sample", "bench"),
             "step": ("run_sample", "bench"),
             "bench": ("step", "run_sample")}
    for folder, forbidden in rules.items():
        for path in sorted((REPO / folder).rglob("*.py")):
            bad = {m for m in imports(path) if m.split(".")[0] in forbidden}
            assert not bad, f"{module_name(path)} imports {sorted(bad)}, which is above it (docs/ARCHITECTURE.md)"


def project_modules() -> dict[str, Path]:
    """{dotted name: file} of every module of the project's packages and run_sample.py."""
    found = {"run_sample": REPO / "run_sample.py"}
    for folder in ("misc", "net", "voc12", "step", "bench"):
        for path in sorted((REPO / folder).rglob("*.py")):
            name = module_name(path)
            found[name.removesuffix(".__init__")] = path
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the project modules it imports anywhere in its source} (`from misc import fileio` names the
    package misc and misc.fileio; the packages' __init__ files import nothing, so they close no cycle)."""
    return {name: {m for m in imports(path) if m in modules and m != name} for name, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None (depth-first search, white/grey/black colouring)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = finished
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_names_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_no_project_module_imports_another_in_a_cycle():
    """Function-local imports count: they hide a cycle from Python's import machinery, not from the reader."""
    graph = import_graph(project_modules())
    assert "misc.fileio" in graph["misc.geoio"], "the import graph misses `from misc import fileio`"
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle {' -> '.join(cycle)}; move what both need into a lower module"


def test_every_training_stage_builds_its_fingerprint_with_the_helper():
    """One shape for every training fingerprint (step.kit.stamps.training_fingerprint: flags, weights by content,
    data), so no stage can record a weights path or leave a weights file out."""
    trainers = [s.module for s in STAGES
                if "TrainJob(" in (REPO / Path(*s.module.split("."))).with_suffix(".py").read_text()]
    assert len(trainers) == 4, trainers
    for module in trainers:
        source = (REPO / Path(*module.split("."))).with_suffix(".py").read_text()
        assert "training_fingerprint(" in source, f"{module} builds its fingerprint by hand; use training_fingerprint"
    writers = {s.module for s in STAGES if s.writes_weights}
    assert writers == set(trainers), f"STAGES' writes_weights should name the weights of exactly {sorted(trainers)}"


def test_stage_tags_come_from_the_table():
    for stage in STAGES:
        source = (REPO / Path(*stage.module.split("."))).with_suffix(".py").read_text()
        assert 'TAG = "' not in source, f"{stage.module} spells its tag; use stage_tag(__name__)"


def test_no_comment_cites_a_document_outside_the_repository():
    """SPEC.md and STYLE.md are not in the repository: code and scripts cite docs/ or say why themselves."""
    paths = [REPO / "run_sample.py"] + [p for folder in ("misc", "net", "step", "voc12", "bench", "script", "tests")
                                         for p in sorted((REPO / folder).rglob("*")) if p.suffix in (".py", ".sh")]
    for path in paths:
        if path == Path(__file__):
            continue
        cited = re.findall(r"\b(?:SPEC|STYLE)\b", path.read_text())
        assert not cited, f"{path.relative_to(REPO)} cites {cited[0]}, which is not in the repository; cite docs/ or say why"


def test_only_the_registry_reaches_a_familys_folding():
    """Re-parameterisation goes through net.backbones.reparameterize, whatever the family."""
    allowed = {"net/RepVGG.py", "net/backbones.py", "tests/test_repvgg.py", "tests/test_architecture.py"}
    paths = [REPO / "run_sample.py"] + [p for folder in ("misc", "net", "voc12", "step", "bench", "tests")
                                         for p in (REPO / folder).rglob("*.py")]
    for path in sorted(paths):
        relative = path.relative_to(REPO).as_posix()
        if relative in allowed:
            continue
        assert "repvgg_model_convert" not in path.read_text(), f"{relative} folds RepVGG itself; use backbones.reparameterize"
