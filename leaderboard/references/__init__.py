"""Reference numbers of the LaMP and PPlug papers, as data files (see README.md here)."""
