"""Celery tasks: the only place that calls the engine on behalf of the API."""
