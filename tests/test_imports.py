"""Each module a user may import first imports on its own: the packages import each other, and a cycle shows only
in a fresh interpreter, for some orders."""

from __future__ import annotations

import subprocess
import sys

import pytest

MODULES = ["dsom_env", "dsom_env.env", "students.train", "students.distill", "students.evaluate", "agents.reinforce"]


@pytest.mark.parametrize("module", MODULES)
def test_the_module_imports_first_in_a_fresh_interpreter(module):
    completed = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True, text=True)
    assert completed.returncode == 0, completed.stderr
