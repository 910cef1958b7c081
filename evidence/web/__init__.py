"""The web app (`evidence serve`): a thin face over ``evidence.app``."""

from .app import Settings, create_app

__all__ = ["Settings", "create_app"]
