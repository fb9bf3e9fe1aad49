"""`lamp leaderboard` (being written: registers nothing yet)."""
