"""The reason codes of failed and rejected rows are one list (labeler/reasons.py): the docs are
rendered from it, and the code emits its names, never a literal of its own."""
from __future__ import annotations

import ast
import re
from pathlib import Path

from conftest import ROOT

from labeler import reasons

CODE = re.compile(r"^[a-z]+(?:_[a-z]+)*$")
# Calls with a reason code as an argument, and its position: rejected_row(key, reason, ...),
# pairs_input._bad(loc, reason, ...), grade_stream._reject(reason, detail, mask, code, ...).
EMITTERS = {"rejected_row": 1, "_bad": 1, "_reject": 3}
# Names that hold a reason, as an attribute (r.error), a subscripted list (reason[i]) or a dict key.
HOLDERS = {"error", "errors", "reason", "_reason"}


def _name(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, ast.Subscript):
        return _name(node.value)
    return None


def _is_str(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _pair(node) -> bool:
    """A (reason, detail) tuple: a code-like string, then a message (text with a space, an f-string
    or a variable named like a detail)."""
    if not (isinstance(node, ast.Tuple) and len(node.elts) == 2 and _is_str(node.elts[0])):
        return False
    d = node.elts[1]
    return (isinstance(d, ast.JoinedStr) or _is_str(d) and " " in d.value
            or isinstance(d, ast.Name) and d.id in ("why", "detail", "msg", "message"))


def emitted_literals(source: str) -> list[tuple[int, str]]:
    """(line, code) of every string literal in `source` used as a failure reason: an argument of
    an emitter call, `error=`/`reason=`, a value given to an `error`/`reason` name, a dict's
    "reason" value, a comparison with an `error` column, a (reason, detail) pair returned or
    assigned, what a function named for a reason returns, or the prefix of a
    "reason<TAB>detail" string."""
    found = []

    def add(node):
        if _is_str(node) and CODE.match(node.value):
            found.append((node.lineno, node.value))

    def add_pairs(value):
        for t in [value, *(value.elts if isinstance(value, ast.Tuple) else [])]:
            if _pair(t):
                add(t.elts[0])

    tree = ast.parse(source)
    for f in ast.walk(tree):  # def status_reason(code): return "rate_limited" if ... else ...
        if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)) and "reason" in f.name:
            for r in ast.walk(f):
                if isinstance(r, ast.Return) and r.value is not None:
                    for v in ast.walk(r.value):
                        if isinstance(v, ast.JoinedStr):
                            break
                        add(v)
    for n in ast.walk(tree):
        if isinstance(n, ast.Call):
            at = EMITTERS.get(_name(n.func))
            if at is not None and len(n.args) > at:
                add(n.args[at])
            for k in n.keywords:
                if k.arg in ("error", "reason"):
                    add(k.value)
            if _name(n.func) == "equal" and len(n.args) == 2 and "error" in ast.unparse(n.args[0]):
                add(n.args[1])
        elif isinstance(n, ast.Assign):
            for t in n.targets:
                pairs = (zip(t.elts, n.value.elts) if isinstance(t, ast.Tuple) and isinstance(n.value, ast.Tuple)
                         and len(t.elts) == len(n.value.elts) else [(t, n.value)])
                for target, value in pairs:
                    if _name(target) in HOLDERS:
                        add(value)
            if len(n.targets) == 1 and isinstance(n.targets[0], ast.Name):
                add_pairs(n.value)  # err = ("missing_id", f"...")
        elif isinstance(n, ast.Return) and n.value is not None:
            add_pairs(n.value)  # return None, ("timeout", f"...")
        elif isinstance(n, ast.Dict):
            for k, v in zip(n.keys, n.values):
                if k is not None and _is_str(k) and k.value in HOLDERS:
                    add(v)
                    if isinstance(v, (ast.List, ast.BinOp)):  # "_reason": [None] * n + ["unknown_seed"] * m
                        for x in ast.walk(v):
                            if isinstance(x, ast.List):
                                for e in x.elts:
                                    add(e)
        elif isinstance(n, ast.Compare) and any(_name(x) in HOLDERS for x in [n.left, *n.comparators]):
            for x in [n.left, *n.comparators]:
                add(x)
        elif isinstance(n, ast.JoinedStr) and n.values and _is_str(n.values[0]) and "\t" in n.values[0].value:
            head = n.values[0].value.split("\t", 1)[0]
            if CODE.match(head):
                found.append((n.lineno, head))
    return found


def _sources():
    return sorted(p for p in (ROOT / "labeler").rglob("*.py") if p.name != "reasons.py")


def test_docs_are_rendered_from_the_list():
    """docs/reasons.md is `reasons.markdown()`; after editing the list, regenerate it with:
    .venv/bin/python -c 'from labeler import reasons; print(reasons.markdown(), end="")' > docs/reasons.md"""
    assert (ROOT / "docs" / "reasons.md").read_text() == reasons.markdown()


def test_the_list_is_well_formed():
    from labeler.stages import NAMES

    names = [r.name for r in reasons.REASONS]
    assert len(names) == len(set(names))
    for r in reasons.REASONS:
        assert CODE.match(r.name), r.name
        assert r.stages and set(r.stages) <= set(NAMES), (r.name, r.stages)
        assert r.meaning.strip() and r.action.strip(), r.name
        assert getattr(reasons, r.name.upper()) == r.name  # reasons.NO_GRADE_TOKEN, ...
    assert reasons.TRANSIENT == {"connection_error", "timeout", "server_error", "rate_limited"}
    assert reasons.check("no_grade_token") == "no_grade_token"
    try:
        reasons.check("no_such_reason")
    except KeyError as e:
        assert "labeler/reasons.py" in str(e)
    else:
        raise AssertionError("check accepted an unlisted reason")


def test_engines_keep_the_transient_name():
    from labeler.engines.base import TRANSIENT_ERRORS

    assert TRANSIENT_ERRORS is reasons.TRANSIENT


def test_the_code_emits_only_listed_reasons():
    """No literal reason at an emit site that the list lacks (a new one must be listed, with what
    it means and what to do)."""
    unknown = [f"{p.relative_to(ROOT)}:{line}: {code!r}" for p in _sources()
               for line, code in emitted_literals(p.read_text()) if code not in reasons.NAMES]
    assert not unknown, "reasons not in labeler/reasons.py:\n" + "\n".join(unknown)


def test_the_code_names_reasons_through_the_list():
    """Listed reasons are written as reasons.X, not as string literals, outside labeler/reasons.py."""
    literal = [f"{p.relative_to(ROOT)}:{line}: {code!r}" for p in _sources()
               for line, code in emitted_literals(p.read_text()) if code in reasons.NAMES]
    assert not literal, "use the names of labeler.reasons:\n" + "\n".join(literal)


def test_the_scan_finds_literal_reasons():
    """The scan recognises every way the code has written a reason."""
    src = '''
def f(r, reason, detail, errors, i, loc, t):
    rejected_row(loc, "a_one", "detail")
    _bad(loc, "a_two", f"{loc}: broken", "raw")
    _reject(reason, detail, [True], "a_three", str)
    Completion(None, error="a_four", detail="x")
    r.error, r.detail = "a_five", f"{i} no"
    reason[i], detail[i] = "a_six", "some words"
    status, errors[i] = "failed", "a_seven"
    x = {"key": loc, "reason": "a_eight", "detail": ""}
    y = r.error == "a_nine"
    z = pc.equal(t.column("error"), "a_ten")
    w = f"a_eleven\\t{detail}\\t{r}"
    err = ("a_thirteen", f"{loc}: seen")
    cols = {"_reason": [None] * 2 + ["a_fourteen"] * 3}
    if r:
        return "a_fifteen", why
    return None, ("a_twelve", f"{loc}: no id")


def status_reason(code):
    return "a_sixteen" if code == 429 else "a_seventeen"
'''
    got = sorted(code for _, code in emitted_literals(src))
    assert got == sorted(["a_one", "a_two", "a_three", "a_four", "a_five", "a_six", "a_seven", "a_eight",
                          "a_nine", "a_ten", "a_eleven", "a_twelve", "a_thirteen", "a_fourteen", "a_fifteen",
                          "a_sixteen", "a_seventeen"])
