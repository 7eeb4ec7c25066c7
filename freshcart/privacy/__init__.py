"""Shoppers' privacy: pseudonymised user ids at the edge (``pseudonym``) and erasure requests (``forget``)."""
