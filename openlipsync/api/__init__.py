"""The HTTP API: sync.so v2 wire-compatible routes over the store; never imports engine internals."""
