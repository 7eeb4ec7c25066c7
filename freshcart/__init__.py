"""FreshCart: workflow-orchestrated MLOps for e-commerce purchase propensity and recommendation."""

__version__ = "0.1.0"
