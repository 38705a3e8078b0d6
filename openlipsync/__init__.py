"""openlipsync: a self-hosted lip-sync service that speaks the sync.so v2 REST API."""

__version__ = "0.1.0"
