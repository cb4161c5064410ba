"""Review: item state of a week (week.py), human decisions, the static page, and publishing."""
