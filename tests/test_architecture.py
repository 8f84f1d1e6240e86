"""The layering of docs/ARCHITECTURE.md, checked on the source: who may import whom."""
from __future__ import annotations

import ast
from pathlib import Path

from step.stages import STAGES

REPO = Path(__file__).resolve().parents[1]
STAGE_MODULES = {s.module for s in STAGES}


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


def test_every_stage_in_the_table_exists_and_no_stage_imports_another():
    for path in sorted((REPO / "step").glob("*.py")):
        name = module_name(path)
        others = {m for m in imports(path) if m in STAGE_MODULES and m != name}
        if name in STAGE_MODULES:
            assert not others, f"{name} imports the stage module(s) {sorted(others)}; move the shared code to a kit module"
        else:  # a kit module serves stages; it never reaches into one
            assert not others, f"kit module {name} imports stage module(s) {sorted(others)}"
    for module in STAGE_MODULES:
        assert (REPO / Path(*module.split("."))).with_suffix(".py").is_file(), module


def test_layers_import_only_downwards():
    rules = {"misc": ("net", "step", "voc12", "run_sample", "bench", "webapp"),
             "net": ("step", "voc12", "run_sample", "bench", "webapp"),
             "voc12": ("step", "net", "run_sample", "bench", "webapp"),
             "step": ("run_sample", "bench", "webapp"),
             "bench": ("step", "run_sample", "webapp"),
             "webapp": ("step", "run_sample", "bench")}  # the web app reads files; nothing imports it
    for folder, forbidden in rules.items():
        for path in sorted((REPO / folder).glob("*.py")):
            bad = {m for m in imports(path) if m.split(".")[0] in forbidden}
            assert not bad, f"{module_name(path)} imports {sorted(bad)}, which is above it (docs/ARCHITECTURE.md)"
    assert not {m for m in imports(REPO / "run_sample.py") if m.split(".")[0] == "webapp"}


def test_stage_tags_come_from_the_table():
    for stage in STAGES:
        source = (REPO / Path(*stage.module.split("."))).with_suffix(".py").read_text()
        assert 'TAG = "' not in source, f"{stage.module} spells its tag; use stage_tag(__name__)"


def test_no_comment_cites_a_document_outside_the_repository():
    for folder in ("misc", "net", "step", "voc12", "bench", "script", "webapp"):
        for path in sorted((REPO / folder).glob("*")):
            if path.suffix in (".py", ".sh"):
                assert "SPEC" not in path.read_text(), f"{path.relative_to(REPO)} cites SPEC; cite docs/ or say why"
    assert "SPEC" not in (REPO / "run_sample.py").read_text()
