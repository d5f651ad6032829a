"""workbench: see, test and compare five ideas for making LLMs cheaper, hands-on.

The package is a map of the ideas: shared layers (models, data, runs, train, plots, notebook)
below, one module or subpackage per idea above them, notebooks on top.
"""

__version__ = "0.1.0"
