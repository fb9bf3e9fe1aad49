"""Built-in LaMP task plugins of lamp-harness."""
