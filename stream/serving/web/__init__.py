"""The worker's web server (Faust's own): the JSON API, the journey page and its live feed."""

from stream.serving.web.routes import register_views

__all__ = ["register_views"]
