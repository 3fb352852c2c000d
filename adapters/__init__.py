"""servermode.adapters: HTTP, ASGI middleware, stores and CLI around servermode.core."""
