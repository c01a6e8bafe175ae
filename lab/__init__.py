"""lab: a terminal lab console for image-classification experiments in PyTorch.

The package is the headless engine; it never imports Textual (see ``tests/test_import_hygiene.py``).
"""

__version__ = "0.1.0"
