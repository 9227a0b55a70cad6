"""One router per resource; each parses the request and calls one service function."""
