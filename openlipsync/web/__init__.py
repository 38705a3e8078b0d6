"""The studio web page served by the API."""
