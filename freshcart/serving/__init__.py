"""Serving: online features, the champion model, candidates and scoring, without a web framework.

``bentos/service.py`` (BentoML) is the HTTP adapter of :class:`freshcart.serving.scoring.ScoringService`.
"""
