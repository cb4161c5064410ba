"""The review and audit web pages (`estampille serve`)."""
