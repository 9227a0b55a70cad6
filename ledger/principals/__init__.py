"""People and pipelines, their roles and their API keys."""
