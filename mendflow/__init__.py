"""mendflow: maintenance missions for Python repositories, as Prefect flows."""

__version__ = "0.1.0"
