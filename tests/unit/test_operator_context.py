"""The operator's typed memo: kopf's per-resource copies share the operator's wiring."""

from __future__ import annotations

import copy
from typing import Any

import kopf
import pytest

from ponder_operator import handlers
from ponder_operator.context import OperatorContext
from ponder_operator.settings import OperatorSettings


def test_a_resource_copy_of_the_context_shares_its_clients_and_records() -> None:
    context = OperatorContext(settings=OperatorSettings())
    context.options = object()  # type: ignore[assignment]
    resource_memo = copy.copy(context)  # what kopf does for each resource
    resource_memo.reconciled["uid-1"] = 3
    assert context.reconciled == {"uid-1": 3}
    assert resource_memo.options is context.options
    assert resource_memo.settings is context.settings


def test_the_startup_handler_refuses_a_memo_that_is_not_the_context() -> None:
    settings: Any = kopf.OperatorSettings()
    with pytest.raises(kopf.PermanentError, match="ponder-operator"):
        handlers.configure(settings=settings, memo=kopf.Memo())
