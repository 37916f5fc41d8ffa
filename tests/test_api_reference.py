"""The API reference is complete and clean: every documented member says what it takes and
what it gives, in a form mkdocstrings renders.

The modules are those named by the ``::: NAME`` lines of docs/reference/*.md (a page whose
options say ``members: false`` documents only the module's own docstring). The members are
those mkdocstrings shows with the options of mkdocs.yml: names not starting with ``_``
(``filters: ["!^_"]``), defined in the module or, when imported, listed in its ``__all__``;
in a public class its own (not inherited) public methods, properties and nested classes.
A member without a docstring is hidden by mkdocstrings (``show_if_no_docstring`` is off), so
it counts as missing. For each documented member:

- a function, method or class whose signature has parameters besides ``self`` / ``cls`` /
  ``*args`` / ``**kwargs`` has an ``Args:`` section naming each of them (``name:`` or
  ``name (type):``; a class documents its ``__init__`` there, as mkdocs.yml merges
  ``__init__`` into the class; a dataclass or NamedTuple may use ``Attributes:``); the
  section names nothing that is not a parameter, and gives a type where the signature has no
  annotation (griffe warns otherwise, and ``mkdocs build --strict`` fails);
- a function or method that returns something (an annotation other than None, or, with no
  annotation, a ``return value`` in its body) has a ``Returns:`` section (``Yields:`` for a
  generator); the section is one item (a continuation line is indented further: griffe reads
  each line at the item indent as another returned value);
- no docstring (module docstrings included) holds a Sphinx role such as ``:class:``:
  mkdocstrings prints those as raw text (use ``[`Name`][dotted.path]`` or backticks);
- no documented class shows a private base (``Bases: _Something``), and a base from this
  project is itself documented, so the reader can follow it.

Run as a script (``python tests/test_api_reference.py``) it prints the counts per module.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib
import inspect
import re
import sys
import textwrap
import types
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "reference"
PROJECT = ("grids", "spacetime_nets")

SPHINX_ROLE = re.compile(r":(class|meth|func|data|attr|mod|exc):`")
SECTION = re.compile(r"^([A-Za-z][\w ]*):\s*$")
ENTRY = re.compile(r"^(\*{0,2}\w+)\s*(\((.+)\))?\s*:(\s|$)")
PARAM_SECTIONS = {"args", "arguments", "params", "parameters", "keyword args", "keyword arguments"}
KNOWN_SECTIONS = PARAM_SECTIONS | {
    "attributes",
    "returns",
    "yields",
    "raises",
    "examples",
    "example",
    "note",
    "notes",
    "warns",
    "warnings",
    "receives",
    "other parameters",
}


# ----------------------------------------------------------------------------- the pages
def reference_modules() -> list[tuple[str, bool]]:
    """``(module name, documents its members)`` for each ``::: NAME`` line of the pages."""
    out = []
    for page in sorted(REFERENCE.glob("*.md")):
        lines = page.read_text(encoding="utf-8").splitlines()
        for i, line in enumerate(lines):
            m = re.match(r"^:::\s+([\w.]+)\s*$", line)
            if not m:
                continue
            members = True
            for opt in lines[i + 1 :]:
                if opt.strip() and not opt.startswith((" ", "\t")):
                    break
                if re.match(r"^\s+members:\s*(false|\[\s*\])\s*$", opt):
                    members = False
            out.append((m.group(1), members))
    return out


# ----------------------------------------------------------------------------- docstrings
def sections(doc: str) -> dict[str, list[tuple[int, list[str]]]]:
    """The Google sections of a cleaned docstring: title (lower case) -> items, each item
    ``(indent, lines)``; a title counts only with a blank line (or nothing) above it and an
    indented line below it, as griffe reads them."""
    lines = doc.splitlines()
    out: dict[str, list[tuple[int, list[str]]]] = {}
    i = 0
    while i < len(lines):
        m = SECTION.match(lines[i])
        below = lines[i + 1] if i + 1 < len(lines) else ""
        if (
            m
            and m.group(1).lower() in KNOWN_SECTIONS
            and (i == 0 or not lines[i - 1].strip())
            and below.startswith(" ")
        ):
            indent = len(below) - len(below.lstrip())
            items: list[tuple[int, list[str]]] = []
            i += 1
            while i < len(lines):
                line = lines[i]
                if not line.strip():
                    if items:
                        items[-1][1].append("")
                elif len(line) - len(line.lstrip()) == indent:
                    items.append((indent, [line.strip()]))
                elif len(line) - len(line.lstrip()) > indent:
                    if items:
                        items[-1][1].append(line.strip())
                else:
                    break
                i += 1
            out.setdefault(m.group(1).lower(), []).extend(items)
            continue
        i += 1
    return out


def entry_names(items: list[tuple[int, list[str]]]) -> dict[str, str | None]:
    """name -> type (None when none is given) of the items of an Args/Attributes section;
    an item that is not ``name:`` / ``name (type):`` maps ``'?' + line`` to None."""
    out: dict[str, str | None] = {}
    for _, lines in items:
        m = ENTRY.match(lines[0])
        if m:
            out[m.group(1).lstrip("*")] = m.group(3)
        else:
            out["?" + lines[0]] = None
    return out


# ----------------------------------------------------------------------------- members
def _defined_here(obj: object, module: types.ModuleType, name: str) -> bool:
    return (
        getattr(obj, "__module__", None) == module.__name__
        and getattr(obj, "__name__", None) == name
    )


def module_members(module: types.ModuleType) -> list[tuple[str, object]]:
    """The public functions and classes of ``module`` that mkdocstrings documents: defined
    there, or imported and listed in ``__all__`` (in source order where known)."""
    exported = set(getattr(module, "__all__", ()))
    out = []
    for name, obj in vars(module).items():
        if name.startswith("_") or isinstance(obj, types.ModuleType):
            continue
        target = inspect.unwrap(obj) if callable(obj) else obj
        if not (inspect.isclass(target) or inspect.isroutine(target)):
            continue
        if _defined_here(obj, module, name) or (
            name in exported and (getattr(obj, "__module__", None) or "").startswith(PROJECT)
        ):
            out.append((name, obj))
    return out


def class_members(cls: type) -> list[tuple[str, str, object]]:
    """``(name, kind, object)`` of a class's own public methods, properties and nested
    classes; kind is 'method', 'static', 'classmethod', 'property' or 'class'."""
    out = []
    for name, raw in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(raw, staticmethod):
            kind, obj = "static", raw.__func__
        elif isinstance(raw, classmethod):
            kind, obj = "classmethod", raw.__func__
        elif isinstance(raw, property):
            kind, obj = "property", raw.fget
        elif hasattr(raw, "func") and type(raw).__name__ == "cached_property":
            kind, obj = "property", raw.func
        elif inspect.isclass(raw):
            kind, obj = "class", raw
        elif inspect.isfunction(inspect.unwrap(raw)):
            kind, obj = "method", raw
        else:
            continue
        if obj is None or getattr(obj, "__name__", name) != name:
            continue  # an alias (``g = f``): griffe sees an attribute
        out.append((name, kind, obj))
    return out


# ----------------------------------------------------------------------------- checks
def _params(func, drop_first: bool, starred: bool = False) -> list[inspect.Parameter]:
    """The parameters of ``func`` (``self`` / ``cls`` dropped), ``*args`` / ``**kwargs``
    only with ``starred``."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):
        return []
    ps = list(sig.parameters.values())
    if drop_first and ps:
        ps = ps[1:]
    if starred:
        return ps
    return [p for p in ps if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def _is_record(cls: type) -> bool:
    return dataclasses.is_dataclass(cls) or (issubclass(cls, tuple) and hasattr(cls, "_fields"))


def _own_init(cls: type):
    """The ``__init__`` (else ``__new__``) that gives the class's signature, when it comes
    from this project; None for one inherited from torch, the standard library, object."""
    for klass in cls.__mro__:
        for attr in ("__init__", "__new__"):
            f = vars(klass).get(attr)
            if f is None:
                continue
            f = f.__func__ if isinstance(f, (staticmethod, classmethod)) else f
            if (getattr(f, "__module__", None) or "").startswith(PROJECT):
                return f
        if klass is not cls and not klass.__module__.startswith(PROJECT):
            return None
    return None


def _no_value(annotation) -> bool:
    return annotation in (None, type(None), "None", "NoReturn", "Never") or getattr(
        annotation, "_name", None
    ) in ("NoReturn", "Never")


def _returns_value(func) -> bool:
    """Whether the body returns a value (a ``return X`` with X not None), nested functions
    and classes aside."""
    try:
        src = textwrap.dedent(inspect.getsource(func))
        tree = ast.parse(src)
    except (OSError, TypeError, SyntaxError):
        return False
    fn = tree.body[0]
    todo = list(ast.iter_child_nodes(fn))
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Return) and node.value is not None:
            if not (isinstance(node.value, ast.Constant) and node.value.value is None):
                return True
        todo.extend(ast.iter_child_nodes(node))
    return False


def _is_iterator_annotation(annotation) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return bool(re.match(r"^(typing\.|collections\.abc\.)?(Iterator|Generator|Iterable)\b", text))


class Report:
    """Offences (``path: what``) and counts."""

    def __init__(self) -> None:
        self.offences: list[str] = []
        self.counts: Counter = Counter()
        self.per_module: dict[str, Counter] = {}
        self.seen: set[int] = set()
        self.documented: set[int] = set()
        self.bases: list[tuple[str, str, type]] = []

    def add(self, module: str, path: str, what: str, kind: str) -> None:
        self.offences.append(f"{path}: {what}")
        self.counts[kind] += 1
        self.per_module.setdefault(module, Counter())[kind] += 1

    def tick(self, module: str, kind: str) -> None:
        self.counts[kind] += 1
        self.per_module.setdefault(module, Counter())[kind] += 1


def _check_roles(rep: Report, mod: str, path: str, doc: str | None) -> None:
    if doc and SPHINX_ROLE.search(doc):
        roles = sorted(set(SPHINX_ROLE.findall(doc)))
        rep.add(mod, path, f"Sphinx role(s) {', '.join(':' + r + ':' for r in roles)}", "roles")


def _starred(func, drop_first: bool) -> dict[str, inspect.Parameter]:
    return {
        p.name: p
        for p in _params(func, drop_first, starred=True)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def _check_args(rep, mod, path, docs, params, starred, allow_attributes=False):
    """Check the Args (or Attributes) of ``docs``, the docstrings that document ``params``
    (a function's docstring; a class's docstring and its own ``__init__``'s); ``starred``:
    the names of ``*args`` / ``**kwargs``, which the section may name too."""
    secs: dict[str, list] = {}
    for d in docs:
        for k, v in sections(d).items():
            secs.setdefault(k, []).extend(v)
    named: dict[str, str | None] = {}
    for title in PARAM_SECTIONS:
        named.update(entry_names(secs.get(title, [])))
    listed = dict(named)
    if allow_attributes:
        listed.update(entry_names(secs.get("attributes", [])))
    by_name = {p.name: p for p in params}
    by_name.update(starred)
    missing = [p.name for p in params if p.name not in listed]
    if missing:
        has = bool(named) or (allow_attributes and "attributes" in secs)
        what = "Args: missing " if has else "no Args: section for "
        rep.add(mod, path, what + ", ".join(missing), "missing_args")
    for name, typ in named.items():
        if name.startswith("?"):
            rep.add(mod, path, f"Args: item is not 'name: text': {name[1:]!r}", "format")
        elif name not in by_name:
            rep.add(mod, path, f"Args: {name!r} is not a parameter", "format")
        elif typ is None and by_name[name].annotation is inspect.Parameter.empty:
            rep.add(mod, path, f"Args: {name!r} has no type and no annotation", "format")


def _check_returns(rep, mod, path, func, doc):
    try:
        ann = inspect.signature(func).return_annotation
    except (TypeError, ValueError):
        return
    gen = inspect.isgeneratorfunction(inspect.unwrap(func))
    if ann is inspect.Signature.empty:
        if not gen and not _returns_value(inspect.unwrap(func)):
            return
    elif _no_value(ann):
        return
    secs = sections(doc or "")
    if gen or (ann is not inspect.Signature.empty and _is_iterator_annotation(ann)):
        ok = "yields" in secs or "returns" in secs
        need = "Yields:"
    else:
        ok = "returns" in secs
        need = "Returns:"
    if not ok:
        rep.add(mod, path, f"no {need} section", "missing_returns")
        return
    items = secs.get("returns", []) or secs.get("yields", [])
    is_tuple = ann is not inspect.Signature.empty and re.match(r"^(tuple|Tuple)\[", str(ann))
    if len(items) > 1 and not is_tuple:
        rep.add(
            mod,
            path,
            f"{need} {len(items)} items at one indent (indent continuation lines further)",
            "format",
        )
    if ann is inspect.Signature.empty:
        for _, lines in items:
            m = re.match(r"^(?:(\w+)?\s*(?:\((.+)\))?:\s*)?", lines[0])
            if not (m and m.group(2)):
                rep.add(mod, path, f"{need} no type and no return annotation", "format")
                break


def check_function(rep, mod, path, func, drop_first, is_property=False):
    rep.tick(mod, "members")
    doc = inspect.getdoc(func) if func.__doc__ else None
    if not doc:
        rep.add(mod, path, "no docstring (mkdocstrings hides it)", "missing_doc")
    _check_roles(rep, mod, path, doc)
    if is_property:
        return
    _check_args(rep, mod, path, [doc or ""], _params(func, drop_first), _starred(func, drop_first))
    _check_returns(rep, mod, path, func, doc)


def check_class(rep, mod, path, cls):
    if id(cls) in rep.seen:
        return
    rep.seen.add(id(cls))
    rep.documented.add(id(cls))
    rep.tick(mod, "members")
    doc = cls.__doc__ if "__doc__" in vars(cls) else None
    doc = inspect.cleandoc(doc) if doc else None
    init = vars(cls).get("__init__")
    init_doc = inspect.getdoc(init) if init is not None and init.__doc__ else None
    if not doc and not init_doc:
        rep.add(mod, path, "no docstring (mkdocstrings hides it)", "missing_doc")
    _check_roles(rep, mod, path, doc)
    _check_roles(rep, mod, path + ".__init__", init_doc)
    record = _is_record(cls)
    f = None if record else _own_init(cls)
    params = _params(cls, False) if record else _params(f, True) if f is not None else []
    starred = _starred(f, True) if f is not None else {}
    _check_args(rep, mod, path, [doc or "", init_doc or ""], params, starred, record)
    for base in cls.__bases__:
        rep.bases.append((mod, path, base))
    for name, kind, obj in class_members(cls):
        sub = f"{path}.{name}"
        if kind == "class":
            check_class(rep, mod, sub, obj)
        else:
            check_function(
                rep,
                mod,
                sub,
                obj,
                drop_first=kind in ("method", "classmethod"),
                is_property=kind == "property",
            )


def run_checks() -> Report:
    rep = Report()
    for name, members in reference_modules():
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError:  # an object's path, module.name (a function a page
            # documents by itself, e.g. one its submodule's name hides)
            parent, _, attr = name.rpartition(".")
            obj = getattr(importlib.import_module(parent), attr)
            check_function(rep, parent, name, obj, drop_first=False)
            continue
        rep.tick(name, "members")
        _check_roles(rep, name, name, module.__doc__)
        if not module.__doc__:
            rep.add(name, name, "no module docstring", "missing_doc")
        if not members:
            continue
        for mname, obj in module_members(module):
            path = f"{name}.{mname}"
            if inspect.isclass(obj):
                check_class(rep, name, path, obj)
            else:
                check_function(rep, name, path, obj, drop_first=False)
    for mod, path, base in rep.bases:
        if base.__name__.startswith("_"):
            rep.add(mod, path, f"private base {base.__module__}.{base.__qualname__}", "bases")
        elif base.__module__.startswith(PROJECT) and id(base) not in rep.documented:
            rep.add(
                mod,
                path,
                f"base {base.__module__}.{base.__qualname__} is documented on no page",
                "bases",
            )
    return rep


def test_api_reference():
    rep = run_checks()
    assert rep.counts["members"] > 100, "no members found: are the reference pages there?"
    if rep.offences:
        pytest.fail(
            f"{len(rep.offences)} problem(s) in the API reference "
            f"({rep.counts['members']} members checked):\n" + "\n".join(rep.offences),
            pytrace=False,
        )


KINDS = ("members", "missing_doc", "missing_args", "missing_returns", "roles", "bases", "format")


def main() -> int:
    rep = run_checks()
    width = max(len(m) for m in rep.per_module)
    print(f"{'module':<{width}}  " + "  ".join(f"{k:>15}" for k in KINDS))
    for mod, c in rep.per_module.items():
        print(f"{mod:<{width}}  " + "  ".join(f"{c[k]:>15}" for k in KINDS))
    print(f"{'TOTAL':<{width}}  " + "  ".join(f"{rep.counts[k]:>15}" for k in KINDS))
    print(
        f"\nmembers checked: {rep.counts['members']}; members missing Args: "
        f"{rep.counts['missing_args']}; missing Returns: {rep.counts['missing_returns']}; "
        f"without a docstring: {rep.counts['missing_doc']}; Sphinx roles: {rep.counts['roles']}; "
        f"private or undocumented bases: {rep.counts['bases']}; "
        f"format: {rep.counts['format']}"
    )
    if "-v" in sys.argv:
        print("\n".join(rep.offences))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
