"""Reading a mutmut run back: each mutant's status, its change, where it is, and the reviewed
equivalents. Used by ``bench/mutation.py``; needs mutmut (the ``mutation`` extra) and the
project root as the working directory (mutmut keeps everything under ``mutants/``).
"""

from __future__ import annotations

import ast
import fnmatch
import re
from dataclasses import dataclass, field
from pathlib import Path

#: mutmut statuses that mean a test noticed the change.
KILLED = frozenset({"killed", "timeout", "segfault", "caught by type check"})


@dataclass(frozen=True, slots=True)
class Mutant:
    """One mutant: its id, status, and the change as (removed, added) source lines."""

    name: str
    path: str
    status: str
    line: int | None
    removed: tuple[str, ...]
    added: tuple[str, ...]

    @property
    def change(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """The change with whitespace runs folded, as equivalents are matched."""
        return tuple(map(_fold, self.removed)), tuple(map(_fold, self.added))


@dataclass(slots=True)
class Equivalent:
    """A reviewed entry of the equivalents file."""

    name: str
    removed: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    why: str = ""
    lineno: int = 0

    @property
    def change(self) -> tuple[tuple[str, ...], tuple[str, ...]]:
        return tuple(map(_fold, self.removed)), tuple(map(_fold, self.added))


def _fold(line: str) -> str:
    return " ".join(line.split())


def read_equivalents(path: Path) -> list[Equivalent]:
    """Blocks of ``<mutant id>`` then indented ``- old``, ``+ new`` and ``why: reason`` lines.

    Raises ValueError (with the line number) on a malformed block: an entry without a reason or
    without its change is exactly what the file must never hold.
    """
    entries: list[Equivalent] = []
    if not path.exists():
        return entries
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if not raw[0].isspace():
            entries.append(Equivalent(raw.strip(), lineno=number))
            continue
        if not entries:
            raise ValueError(f"{path}:{number}: indented line before any mutant id")
        text = raw.strip()
        entry = entries[-1]
        if text.startswith("- "):
            entry.removed.append(text[2:])
        elif text.startswith("+ "):
            entry.added.append(text[2:])
        elif text.startswith("why:"):
            entry.why = text[4:].strip()
        else:
            raise ValueError(f"{path}:{number}: expected '- old', '+ new' or 'why: reason'")
    for entry in entries:
        if not entry.why or not (entry.removed or entry.added):
            raise ValueError(f"{path}:{entry.lineno}: {entry.name} needs its change and a why")
    return entries


def mutant_globs(path: str, functions: tuple[str, ...]) -> list[str]:
    """mutmut name patterns for the mutants of ``functions`` (``Class.method`` for methods) in
    ``path``; all of the module's mutants when ``functions`` is empty."""
    module = path.removesuffix(".py").replace("/", ".")
    if not functions:
        return [f"{module}.*"]
    out = []
    for name in functions:
        cls, _, func = name.rpartition(".")
        mangled = f"x\u01c1{cls}\u01c1{func}" if cls else f"x_{func}"
        out.append(f"{module}.{mangled}__mutmut_*")
    return out


def load_mutants(path: str, globs: list[str], diffs: bool = True) -> list[Mutant]:
    """The mutants of ``path`` whose names match ``globs``, with status, change and line
    (the change and line of the mutants not killed only, and only with ``diffs``)."""
    from mutmut.mutation.data import SourceFileMutationData
    from mutmut.mutation.diff_apply import get_diff_for_mutant
    from mutmut.stats import status_by_exit_code

    data = SourceFileMutationData(path=path)
    data.load()
    source = Path(path).read_text()
    tree = ast.parse(source)
    out = []
    for name, code in data.exit_code_by_key.items():
        if not any(fnmatch.fnmatchcase(name, g) for g in globs):
            continue
        status = status_by_exit_code[code]
        diff = get_diff_for_mutant(name, path=path) if diffs and status not in KILLED else ""
        removed, added, offset = _change(diff)
        line = _locate(tree, source, name, removed, offset) if diff else None
        out.append(Mutant(name, path, status, line, removed, added))
    return sorted(out, key=lambda m: (m.line or 0, _number(m.name)))


def _number(name: str) -> int:
    match = re.search(r"__mutmut_(\d+)$", name)
    return int(match.group(1)) if match else 0


def _change(diff: str) -> tuple[tuple[str, ...], tuple[str, ...], int]:
    """Removed and added lines of a unified diff, and the 1-based line (within the function's
    text) of the first changed line."""
    removed: list[str] = []
    added: list[str] = []
    offset = 0
    at = 0
    for line in diff.splitlines():
        if line.startswith(("---", "+++")):
            continue
        if line.startswith("@@"):
            match = re.match(r"@@ -(\d+)", line)
            at = int(match.group(1)) if match else 0
            continue
        if line.startswith("-"):
            removed.append(line[1:].strip())
            offset = offset or at
        elif line.startswith("+"):
            added.append(line[1:].strip())
            offset = offset or at
        if not line.startswith("+"):
            at += 1
    return tuple(removed), tuple(added), offset


def _locate(tree: ast.Module, source: str, name: str, removed: tuple[str, ...], offset: int) -> int:
    """The source line the mutant changes: the removed line, searched inside its function."""
    from mutmut.utils.format_utils import orig_function_and_class_names_from_key

    func, cls = orig_function_and_class_names_from_key(name)
    node = _function(tree, func.rpartition(".")[2], cls)
    if node is None:
        return 0
    first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
    guess = first + max(offset - 1, 0)
    if not removed:
        return guess
    lines = source.splitlines()
    target = _fold(removed[0])
    hits = [n for n in range(first, node.end_lineno + 1) if _fold(lines[n - 1]) == target]
    return min(hits, key=lambda n: abs(n - guess)) if hits else guess


def _function(tree: ast.Module, func: str, cls: str | None) -> ast.FunctionDef | None:
    body = tree.body
    if cls:
        owner = next((n for n in body if isinstance(n, ast.ClassDef) and n.name == cls), None)
        body = owner.body if owner else []
    for node in body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == func:
            return node  # type: ignore[return-value]
    return None
