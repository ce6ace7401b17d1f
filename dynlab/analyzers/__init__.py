"""Analyzers: the contract, declared parameters, the registry, and the built-ins."""

from dynlab.analyzers import _registry as registry
from dynlab.analyzers._contract import Analyzer, AnalyzerInputError, GroupView, Output, ParamInfo, RunView
from dynlab.analyzers._params import Boolean, Interval, Options, ParameterError, Text, param

__all__ = ["Analyzer", "AnalyzerInputError", "Boolean", "GroupView", "Interval", "Options",
           "Output", "ParamInfo", "ParameterError", "RunView", "Text", "param", "registry"]
