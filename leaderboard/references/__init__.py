"""Reference numbers of the LaMP and PPlug papers, as data files (REFERENCE §8)."""
