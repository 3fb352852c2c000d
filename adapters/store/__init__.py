"""The driven side: where the mode and its history are kept (SQLite), and the store factory."""
