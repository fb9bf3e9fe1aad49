"""`lamp train` (being written: registers nothing yet)."""
