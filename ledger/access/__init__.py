"""Access requests, steward review and signed grants."""
