"""The HTTP front door: app factory, request dependencies, security, middleware, routers."""
