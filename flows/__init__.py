"""Prefect flows: thin arrangements of estampille's library stages."""
