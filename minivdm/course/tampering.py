"""Does a submission rebind what the check cells rely on?

The checks compare a learner's function with minivdm's reference (``reference.v_from_x0_eps``) through
helpers (``check_function_output``). Code in an answer cell can rebind either, ``reference.v_from_x0_eps =
v_from_x0_eps`` or ``check_close = lambda *args, **kwargs: None``, and every check passes; taking the
check cells from the released exercise cannot stop that, since the answer runs first. This reads the
submission's own cells (those not in the released exercise) and names every line that assigns, deletes,
redefines or re-imports a name the released exercise imports from minivdm, or assigns (``setattr``s) an
attribute of a minivdm module or object however it was imported. It
flags; it does not grade: a flagged notebook deserves a reader.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass

import nbformat

from minivdm.course.check_cells import normalized


def minivdm_imports(cells: list[nbformat.NotebookNode]) -> frozenset[str]:
    """The names the released exercise binds by importing from minivdm (``reference``, ``check_close``...)."""
    names = set()
    for tree in _parsed(cell.source for cell in cells if cell.cell_type == "code"):
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "minivdm":
                names.update(alias.asname or alias.name for alias in node.names)
            elif isinstance(node, ast.Import):
                names.update(alias.asname or alias.name.split(".")[0] for alias in node.names
                             if alias.name.split(".")[0] == "minivdm")
    return frozenset(names)


def _parsed(sources):
    for source in sources:
        # IPython's %magic and !shell lines are not Python
        text = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.splitlines())
        try:
            yield ast.parse(text)
        except SyntaxError:
            continue


def _root(node: ast.AST) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        node = node.value
    return node.id if isinstance(node, ast.Name) else None


def _targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        return [element for target in node.targets for element in _flattened(target)]
    if isinstance(node, (ast.AugAssign, ast.AnnAssign)):
        return [node.target]
    if isinstance(node, ast.Delete):
        return list(node.targets)
    return []


def _flattened(target: ast.AST) -> list[ast.AST]:
    if isinstance(target, (ast.Tuple, ast.List)):
        return [element for item in target.elts for element in _flattened(item)]
    return [target]


@dataclass(frozen=True)
class Rebinding:
    cell_index: int
    line: int
    text: str


def rebindings(notebook: nbformat.NotebookNode, released_sources: frozenset[str],
               protected: frozenset[str]) -> list[Rebinding]:
    """Every line of the submission's own cells that rebinds a protected name or an attribute of one."""
    own_cells = [(index, cell) for index, cell in enumerate(notebook.cells)
                 if cell.cell_type == "code" and normalized(cell.source) not in released_sources]
    # an attribute of any minivdm module, however the submission imported it (`import minivdm.course.checks as c`)
    modules = protected | minivdm_imports([cell for _, cell in own_cells])
    found = []
    for index, cell in own_cells:
        for tree in _parsed([cell.source]):
            for node in ast.walk(tree):
                hits = [target for target in _targets(node)
                        if (target if isinstance(target, ast.Name) else None) is not None and target.id in protected
                        or not isinstance(target, ast.Name) and _root(target) in modules]
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name in protected:
                    hits.append(node)
                if isinstance(node, (ast.Import, ast.ImportFrom)) and not (
                        isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "minivdm"):
                    if any((alias.asname or alias.name.split(".")[0]) in protected for alias in node.names):
                        hits.append(node)
                if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                        and node.func.id in ("setattr", "delattr") and node.args and _root(node.args[0]) in modules):
                    hits.append(node)
                if hits:
                    line = cell.source.splitlines()[node.lineno - 1].strip()
                    found.append(Rebinding(index, node.lineno, line))
    return sorted(set(found), key=lambda item: (item.cell_index, item.line))
