"""The conformance kit for analyzer authors (built-in and plugin alike).

    from dynlab.testing import check_analyzer

    def test_conforms():
        check_analyzer(LayerNorms)          # or check_analyzer("layer-norms"), the registered one

``check_analyzer`` runs the analyzer contract (DESIGN.md, "Analyzers") as executable checks:
declaration (frozen dataclass, kebab-case name = entry-point name, version, one-line description,
scope, outputs), parameters (declared, valid defaults, round trip through Python values and CLI
strings, generated invalid values refused), and computing on a small synthetic run (declared
outputs with their dims, deterministic, survives a store round trip, one-checkpoint runs handled).
It raises AssertionError naming the first broken rule.

:class:`MemoryRun` and :class:`MemoryGroup` are in-memory views, for unit tests of an analyzer
without a store; :func:`synthetic_run` / :func:`synthetic_group` are the ones the checks use.
"""

from dynlab.testing._checks import check_analyzer
from dynlab.testing._memory import MemoryGroup, MemoryRun
from dynlab.testing._synthetic import synthetic_group, synthetic_run

__all__ = ["MemoryGroup", "MemoryRun", "check_analyzer", "synthetic_group", "synthetic_run"]
