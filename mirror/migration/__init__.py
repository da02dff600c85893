"""Migration and integrity: `mirror verify` (is the copy identical?) and `mirror cutover` (move consumers)."""
