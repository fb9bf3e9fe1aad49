"""lamp-harness: a plugin-based benchmark harness for personalized language models on LaMP."""

__version__ = "0.1.0"
