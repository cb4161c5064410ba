"""Adding a stage is one entry and one function (issue 27): a stage that gives something the first
stages did not declare is kept and handed to the stages that take it, without touching pipeline.py;
a table that takes what nobody gave yet, or gives one name twice, fails when it is declared."""

from __future__ import annotations

import pytest

from estampille.pipeline import Stage, WeekResults, check_declaration


def test_a_new_stage_s_result_reaches_the_stages_after_it():
    plan = Stage(name="plan", task="plan", run=lambda batch: ["slot-1", "slot-2"], gives="slots")
    count = Stage(name="count", task="count", run=lambda batch, slots: len(slots), takes=("slots",), gives="counted")
    report = Stage(name="report", task="report", run=lambda batch, n: f"{n} slots", takes=("counted",), gives="summary")
    check_declaration([plan, count, report])
    made = WeekResults()
    for stage in (plan, count, report):
        made.keep(stage, stage.run(None, *made.inputs(stage)))
    assert made.slots == ["slot-1", "slot-2"] and made.more == {"counted": 2, "summary": "2 slots"}


def test_a_wrong_table_fails_when_declared():
    plan = Stage(name="plan", task="plan", run=lambda batch: [], gives="slots")
    early = Stage(name="early", task="early", run=lambda batch, x: x, takes=("counted",), gives="other")
    with pytest.raises(TypeError, match="before a stage gives it"):
        check_declaration([plan, early])
    twice = Stage(name="again", task="again", run=lambda batch: [], gives="slots")
    with pytest.raises(TypeError, match="another stage gives"):
        check_declaration([plan, twice])
