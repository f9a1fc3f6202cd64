"""The script engine every caseflow workflow runs with: the safe evaluator plus the injected clock.

The library's default engine hands model text to ``eval``/``exec``; this one hands it to
:class:`engine.lang.expressions.Evaluator`, which interprets a whitelisted tree and never executes Python.
The engine is not part of a saved instance, so the runtime sets it again on every load.
"""

from __future__ import annotations

from collections import ChainMap
from collections.abc import Callable, Mapping
from datetime import datetime, tzinfo
from typing import Any

from SpiffWorkflow.bpmn.exceptions import WorkflowTaskException
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine

from engine.calendar import BusinessCalendar
from engine.lang.expressions import Evaluator, ExpressionError


class _SafeEnvironment:
    """Stands in for the library's ``TaskDataEnvironment`` where the library calls it directly."""

    def __init__(self, evaluator: Evaluator) -> None:
        self.evaluator = evaluator
        self.globals: dict[str, Any] = {}

    def evaluate(
        self, expression: str, context: Mapping[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> Any:
        scope = ChainMap(dict(external_context or {}), dict(context)) if external_context else context
        return self.evaluator.evaluate(expression, scope)

    def execute(
        self, script: str, context: dict[str, Any], external_context: Mapping[str, Any] | None = None
    ) -> bool:
        self.evaluator.execute_script(script, context)
        return True

    def call_service(self, context: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("service tasks are jobs completed through the engine")


class SafeScriptEngine(PythonScriptEngine):  # type: ignore[misc]
    def __init__(
        self,
        clock: Callable[[], datetime],
        timezone: tzinfo,
        functions: Mapping[str, Callable[..., Any]] | None = None,
        calendar: BusinessCalendar | None = None,
    ) -> None:
        self._clock = clock
        self._timezone = timezone
        self._calendar = calendar or BusinessCalendar.official()
        self.evaluator = Evaluator({"now": clock, **(functions or {})})
        super().__init__(environment=_SafeEnvironment(self.evaluator))

    def now(self) -> datetime:
        return self._clock()

    @property
    def timezone(self) -> tzinfo:
        return self._timezone

    @property
    def business_calendar(self) -> BusinessCalendar:
        """Working days for timers and due dates with ``caseflow:calendar`` (see :mod:`engine.calendar`)."""
        return self._calendar

    def validate(self, expression: str) -> None:
        try:
            self.evaluator.check(expression)
        except ExpressionError as exc:
            raise SyntaxError(str(exc)) from None

    def evaluate(self, task: Any, expression: str, external_context: Mapping[str, Any] | None = None) -> Any:
        scope: Mapping[str, Any] = task.data
        if external_context:
            scope = ChainMap(dict(external_context), task.data)
        try:
            return self.evaluator.evaluate(expression, scope)
        except ExpressionError as exc:
            raise WorkflowTaskException(str(exc), task=task, exception=exc) from None

    def execute(self, task: Any, script: str, external_context: Mapping[str, Any] | None = None) -> bool:
        try:
            self.evaluator.execute_script(script, task.data)
        except ExpressionError as exc:
            raise WorkflowTaskException(str(exc), task=task, exception=exc) from None
        return True

    def call_service(self, task: Any, **kwargs: Any) -> Any:
        raise WorkflowTaskException("service tasks are jobs completed through the engine", task=task)
