"""An example lamp-harness plugin distribution: the ``toy-sentiment`` task with its own data
source, the trainable ``user-prior`` personalizer, the ``prior-reader`` generator and a CSV
reporter."""

__version__ = "0.2.0"
