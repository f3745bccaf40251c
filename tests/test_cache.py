"""Resuming from a checkpoint: which configuration changes are refused."""

from __future__ import annotations

import pytest

from dsom_env.cache import check_resumable

SAVED = {"rank": 8, "episodes": 2, "reinforce": {"advantage": "sign", "hidden": 64}}


def test_settings_the_checkpoint_predates_are_not_compared_at_any_depth():
    current = {**SAVED, "new_option": True, "reinforce": {**SAVED["reinforce"], "initial_open": 0.9}}
    check_resumable("run/checkpoint.pt", SAVED, current, (), "fix it")


@pytest.mark.parametrize("current, named", [({**SAVED, "rank": 16}, "rank"),
                                            ({**SAVED, "reinforce": {"advantage": "scaled", "hidden": 64}},
                                             "reinforce.advantage")])
def test_a_changed_setting_is_refused_by_its_dotted_name(current, named):
    with pytest.raises(ValueError, match=rf"run/checkpoint.pt was written with another configuration \({named} differ"
                                         r"\); fix it"):
        check_resumable("run/checkpoint.pt", SAVED, current, (), "fix it")


def test_a_setting_that_may_change_is_not_refused():
    check_resumable("run/checkpoint.pt", SAVED, {**SAVED, "episodes": 5}, ("episodes",), "fix it")
