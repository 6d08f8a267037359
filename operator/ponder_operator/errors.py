"""The operator's errors: one base class, each subclass saying what the caller should do.

Adapters and the API layer raise them; kopf handlers map them to kopf's own outcomes (a
spec nobody can serve is a permanent error, never retried as is)::

    PonderOperatorError
    ├── SpecError        a ReasoningService spec is invalid; ``field_path`` names the field
    └── ChildRejected    the API server refused a rendered child (400/422): the spec passed
                         the CRD and the models but not the child kind's validation
"""

from __future__ import annotations


class PonderOperatorError(Exception):
    """Base of every error the operator raises on purpose."""


class SpecError(PonderOperatorError, ValueError):
    """A ReasoningService spec failed validation; retrying with the same spec cannot help.

    ``field_path`` is the dotted path of the first offending field as a user writes it
    (``spec.scaling.minReplicas``, ``spec.budgets.tiers[1].maxTokens``); ``problems`` holds
    every ``(field_path, message)`` pair found, first one first.
    """

    def __init__(self, field_path: str, message: str,
                 problems: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(f"{field_path}: {message}")
        self.field_path = field_path
        self.message = message
        self.problems = problems or ((field_path, message),)


class ChildRejected(PonderOperatorError):
    """The API server refused a child the operator rendered (its message names the field).

    The spec got past the CRD's schema and the models, but the child's own validation
    (a Deployment's pod template, say) refuses what it became. Retrying the same spec
    cannot help; a new spec or a new validation rule can.
    """

    def __init__(self, kind: str, name: str, message: str) -> None:
        super().__init__(f"{kind} {name}: {message}")
        self.kind = kind
        self.name = name
        self.message = message
