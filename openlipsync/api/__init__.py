"""The HTTP API: sync.so v2 wire-compatible routes over the store.

It never imports engine internals; the worker does.
"""
