"""An example third-party lamp-harness plugin that adds one retriever, ``overlap``."""

__version__ = "0.1.0"
