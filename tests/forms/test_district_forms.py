"""The district's models (bpmn/): every user task declares a form, and staff read Chinese in it."""

from __future__ import annotations

import pytest

from engine.definitions.compiler import Checkers, compile_resources
from tests.scenarios.models import BPMN_DIR, CHINESE, DISTRICT_MODELS

NO_CHECKS = Checkers(expression=lambda _text: None, script=lambda _text: None)


@pytest.mark.parametrize("key", DISTRICT_MODELS)
def test_every_user_task_of_a_district_process_has_a_form_in_chinese(key: str) -> None:
    if not (BPMN_DIR / f"{key}.bpmn").is_file():
        pytest.skip(f"bpmn/{key}.bpmn is not there yet")
    # One deployment of the whole directory: processes call each other and use the decision tables.
    resources = [
        (p.name, p.read_bytes()) for p in sorted(BPMN_DIR.iterdir()) if p.suffix in (".bpmn", ".dmn")
    ]
    model = compile_resources(resources, NO_CHECKS).processes[key]
    specs = [model.spec, *(s for s in model.subprocess_specs.values() if s is not None)]
    tasks = [t for spec in specs for t in spec.task_specs.values() if hasattr(t, "assignment")]
    assert tasks, f"{key} has no user task"
    for task in tasks:
        where = f"{key}: {task.bpmn_id} ({task.bpmn_name})"
        assert task.form.declared, f"{where} declares no camunda:formData"
        assert task.form.fields, f"{where}: the form has no fields"
        for item in task.form.fields:
            assert CHINESE.search(item.label), f"{where}: field {item.id} label {item.label!r} is not Chinese"
            for option in item.options:
                assert CHINESE.search(option.name), f"{where}: {item.id} option {option.id} is not Chinese"
