"""Every message the plugin shows a user is on the docs' Troubleshooting page
(``docs/troubleshooting.rst``), with its cause and fix.

The messages are collected from the code itself, so a new one cannot slip past the docs:
every string (literal or f-string) that reaches the user through

- a log call at warning level or above, or at info level when it starts ``perfx:``;
- ``sys.stderr.write`` or ``print(..., file=sys.stderr)``;
- one of the plugin's exceptions (``PerfxError`` and its subclasses: the CLI and the
  plugin print them as ``perfx: <message>``);
- ``problems.append``, ``problems.extend`` or ``clashes[...] =``, the lines every check
  collects for its ``ConfigError``;

following a variable assigned in the same function, and a call to a function of the same
module, to the strings they hold or return. Placeholders (``{value}``, ``%s``) become
``{}``. A message's key is its first six fixed words (or all there are), each
placeholder between them standing for any text; it must be found within one literal of the
page (``perfx: run RUN_ID does not exist on URL``), so the docs may name placeholders as
they like, the end of a message may be reworded, and the prose around it does not count.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass

import docutils.core
import docutils.nodes
import pytest

from locust_perfx import exceptions
from tests.fixtures.locust import ROOT

PACKAGE = ROOT / "locust_perfx"
PAGE = ROOT / "docs" / "troubleshooting.rst"
SECTION = "Troubleshooting"
PREFIX = "perfx: "
HOLE = "{}"
PERCENT = re.compile(r"%[-+ #0]*\d*(?:\.\d+)?[sdrfgi]")
ALWAYS_SHOWN = frozenset({"warning", "error", "exception", "critical"})
ERRORS = frozenset(
    name
    for name, cls in inspect.getmembers(exceptions, inspect.isclass)
    if issubclass(cls, exceptions.PerfxError)
)


LEADING_WORDS = 6
WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Message:
    pattern: str
    where: str

    @property
    def key(self) -> re.Pattern[str]:
        """The leading fixed words, any text standing for the placeholders between them."""
        taken: list[str] = []
        wanted = LEADING_WORDS
        for part in self.pattern.split(HOLE):
            fixed = " ".join(part.split())
            words = list(WORD.finditer(fixed))
            if len(words) >= wanted:
                taken.append(re.escape(fixed[: words[wanted - 1].end()]))
                break
            taken.append(re.escape(fixed))
            wanted -= len(words)
        return re.compile(".*?".join(taken))


def pattern(node: ast.expr) -> str | None:
    """The text of a string expression with ``{}`` for what varies; None if not text."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return PERCENT.sub(HOLE, node.value)
    if isinstance(node, ast.JoinedStr):
        return "".join(
            part.value if isinstance(part, ast.Constant) else HOLE for part in node.values
        )
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = pattern(node.left), pattern(node.right)
        if left is None and right is None:
            return None
        return (left or HOLE) + (right or HOLE)
    if isinstance(node, ast.IfExp):  # an optional part inside a longer message
        return HOLE
    return None


class Collector(ast.NodeVisitor):
    """The user-facing messages of one module."""

    def __init__(self, tree: ast.Module, where: str) -> None:
        self.where = where
        self.functions: dict[str, list[ast.FunctionDef]] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef):  # methods of two classes may share a name
                self.functions.setdefault(node.name, []).append(node)
        self.scope: ast.AST = tree
        self.messages: list[Message] = []

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        outer, self.scope = self.scope, node
        self.generic_visit(node)
        self.scope = outer

    def visit_Call(self, node: ast.Call) -> None:
        for shown in self.shown_by(node):
            self.collect(shown, set())
        self.generic_visit(node)

    def visit_Assign(self, node: ast.Assign) -> None:
        for target in node.targets:
            if isinstance(target, ast.Subscript) and _named(target.value, "clashes"):
                self.collect(node.value, set())
        self.generic_visit(node)

    def shown_by(self, call: ast.Call) -> list[ast.expr]:
        """The arguments of ``call`` that reach the user."""
        func, args = call.func, call.args
        if not args:
            return []
        if isinstance(func, ast.Attribute) and _named(func.value, "logger"):
            first = pattern(args[0]) or ""
            shown = func.attr in ALWAYS_SHOWN or (func.attr == "info" and first.startswith(PREFIX))
            return [args[0]] if shown else []
        if isinstance(func, ast.Attribute) and func.attr == "write" and _is_stderr(func.value):
            return [args[0]]
        if _named(func, "print") and any(
            k.arg == "file" and _is_stderr(k.value) for k in call.keywords
        ):
            return [args[0]]
        if _named(func, *ERRORS):
            return [args[0]]
        if isinstance(func, ast.Attribute) and func.attr in ("append", "extend"):
            return [args[0]] if _named(func.value, "problems") else []
        return []

    def collect(self, node: ast.expr, seen: set[str]) -> None:
        """Add the messages ``node`` may hold: its text, or the text it is built from."""
        if isinstance(node, ast.List | ast.Tuple):
            for item in node.elts:
                self.collect(item, seen)
        elif isinstance(node, ast.ListComp | ast.GeneratorExp):
            self.collect(node.elt, seen)
        elif isinstance(node, ast.IfExp):
            self.collect(node.body, seen)
            self.collect(node.orelse, seen)
        elif isinstance(node, ast.BoolOp):
            for value in node.values:
                self.collect(value, seen)
        elif isinstance(node, ast.Name):
            for value in _assigned(self.scope, node.id):
                self.collect(value, seen)
        elif isinstance(node, ast.Call) and (name := _callee(node)) in self.functions:
            if name not in seen:
                for function in self.functions[name]:
                    for value in _returned(function):
                        self.collect(value, seen | {name})
        elif (text := pattern(node)) is not None:
            shown = text.removeprefix(PREFIX)
            if shown.replace(HOLE, "").strip():  # not a relay of another message: "perfx: {err}"
                self.messages.append(Message(shown, f"{self.where}:{node.lineno}"))


def _named(node: ast.expr, *names: str) -> bool:
    return (isinstance(node, ast.Name) and node.id in names) or (
        isinstance(node, ast.Attribute) and node.attr in names
    )


def _is_stderr(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "stderr"


def _callee(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Name):
        return func.id
    return func.attr if isinstance(func, ast.Attribute) else None


def _assigned(scope: ast.AST, name: str) -> Iterator[ast.expr]:
    for node in ast.walk(scope):
        if isinstance(node, ast.Assign) and any(_named(t, name) for t in node.targets):
            yield node.value


def _returned(function: ast.AST) -> Iterator[ast.expr]:
    for node in ast.walk(function):
        if isinstance(node, ast.Return) and node.value is not None:
            yield node.value


def collect_messages() -> list[Message]:
    """Every user-facing message of ``locust_perfx/*.py``, one per pattern."""
    found: dict[str, Message] = {}
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text())
        collector = Collector(tree, path.name)
        collector.visit(tree)
        for message in collector.messages:
            found.setdefault(message.pattern, message)
    return list(found.values())


@functools.cache
def documented() -> str:
    """The literal text of the Troubleshooting page, one line per literal."""
    tree = docutils.core.publish_doctree(
        PAGE.read_text(), settings_overrides={"report_level": 5, "doctitle_xform": False}
    )
    for section in tree.findall(docutils.nodes.section):
        if section[0].astext() == SECTION:
            literals = section.findall(docutils.nodes.literal)
            return "\n".join(" ".join(literal.astext().split()) for literal in literals)
    raise AssertionError(f"{PAGE} has no {SECTION} section")


MESSAGES = collect_messages()


def test_the_collector_finds_the_messages_it_is_meant_to() -> None:
    patterns = {message.pattern for message in MESSAGES}
    assert "every worker is gone (heartbeat timeout); ending the run" in patterns  # logger
    assert "{} exists and differs; pass --force to overwrite it" in patterns  # stderr
    assert "{}; retrying in {} s" in patterns  # logger, %-style
    assert "{} rejected the user and password (HTTP 401); pass --influxdb-token USER:PASSWORD" in (
        patterns  # a branch of its own, not a word picked inside an f-string
    )
    assert any(p.startswith("run {} does not exist on {}") for p in patterns)  # exception


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.where)
def test_every_message_is_documented_with_its_cause_and_fix(message: Message) -> None:
    assert message.key.search(documented()), (
        f"{message.where}: {message.pattern!r} is not in {PAGE.name} "
        f"(looked for /{message.key.pattern}/ in a literal)"
    )
