"""Griffe extensions for the API reference: doctest examples as code, and
the constructor signatures the optimizers declare.

The package's docstrings follow Keras' layout: `Example:`, a blank line,
then `>>>` lines at the docstring's own indentation. Griffe's Google
parser reads a section only from lines indented under its title, so it
would render those lines as Markdown quotes (`>`). This extension fences
each run of `>>>` lines and their output (up to a blank line) as a
`python` code block before the docstring is parsed; the docstrings, and
the doctests that tests/test_docs.py runs from them, stay as they are.

The `keras_decay.optimizers` classes inherit `__init__(*args, ...,
**kwargs)` from their keras_decay bases, which pass Keras' arguments on;
each class declares its real arguments as `__signature__` (what
`inspect.signature` and `help()` show). `Signatures` gives Griffe that
signature as the class's `__init__`, so that the reference shows it and
checks the documented arguments against it.

Loaded by mkdocs.yml (`plugins.mkdocstrings...extensions`).
"""

import inspect

import griffe


def fence_doctests(text):
    """`text` with each `>>>` example (to the next blank line) fenced."""
    lines = text.split("\n")
    out = []
    in_fence = in_example = False
    indent = ""
    for line in lines:
        stripped = line.lstrip()
        if in_example and not stripped:
            out.append(f"{indent}```")
            in_example = False
        if not in_example and stripped.startswith("```"):
            in_fence = not in_fence
        elif not in_fence and not in_example and stripped.startswith(">>>"):
            indent = line[: len(line) - len(stripped)]
            out.append(f"{indent}```python")
            in_example = True
        out.append(line)
    if in_example:
        out.append(f"{indent}```")
    return "\n".join(out)


class DoctestBlocks(griffe.Extension):
    """Fences the doctest examples of every docstring Griffe reads."""

    def on_instance(self, *, obj, **kwargs):
        if obj.docstring is not None:
            obj.docstring.value = fence_doctests(obj.docstring.value)


class NoDunders(griffe.Extension):
    """Leaves a class's special attributes (`__doc__`, `__module__`,
    `__signature__`, ...) out of its reference; `__init__`'s parameters
    are shown as the class's."""

    def on_class_members(self, *, cls, **kwargs):
        for name in list(cls.members):
            if name.startswith("__") and name != "__init__":
                cls.del_member(name)


class Signatures(griffe.Extension):
    """A class's own `__signature__` as the parameters of its `__init__`."""

    def on_class_members(self, *, node, cls, **kwargs):
        signature = vars(node.obj).get("__signature__")
        if not isinstance(signature, inspect.Signature):
            return
        self_parameter = griffe.Parameter(
            "self", kind=griffe.ParameterKind.positional_or_keyword
        )
        parameters = [self_parameter] + [
            griffe.Parameter(
                p.name,
                kind=griffe.ParameterKind[p.kind.name.lower()],
                default=None if p.default is p.empty else repr(p.default),
            )
            for p in signature.parameters.values()
        ]
        cls.set_member(
            "__init__",
            griffe.Function(
                "__init__", parameters=griffe.Parameters(*parameters)
            ),
        )
