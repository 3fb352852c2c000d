"""The driving side over HTTP: the gate middleware, classification, dispatch, the admin routes."""
