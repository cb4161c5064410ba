"""Review: the static review page (and, later, the review web app and export)."""
