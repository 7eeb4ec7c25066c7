"""Recommendation: point-in-time replay of purchases and add-to-carts against strong baselines.

    log          events as dense integer columns in time order, grouped by user, session, item
    base         the recommender interface (fit, update, scores, recommend) and the shared tie-break
    baselines    global popularity, trending in the shopper's categories, item-kNN, session-kNN
    oracle       the simulator's true purchase probabilities of the shopper's views (the ceiling)
    reranking    the hook for a model (the champion, a learning-to-rank model) over candidates
    metrics      HR@10, NDCG@10, MRR, candidate recall@100/@500, coverage, popularity bias
    replay       the walk over a holdout period and ``evaluate_recommendations``
    tracking     ``log_to_mlflow``: the table as an MLflow run

The candidates of ``/recommend`` (not imported here: they import ``freshcart.serving.candidates``,
which imports the first three):

    cooccurrence      co-viewed and co-bought neighbours of every product, the one function
    session_index     the session-kNN index (recent sessions, product -> sessions)
    online_sources    what the service reads: the online neighbour view, the index and quota files
    candidate_replay  the service's sources over point-in-time replay state
    quotas            the blend's per-source quotas searched by replay, stored as a file and an MLflow run
    neighbour_tables  the materialize_features DAG's tasks: neighbours online, quotas chosen

The rankers of those candidates (the propensity champion, a learning-to-rank model), judged by replay:

    candidate_features  the blend's candidates as rows: features strictly before the query, source, ranks
    ranker              the XGBoost ``rank:ndcg`` model over candidate lists
    ranker_training     replayed days as ranking data; the ranker fitted and early-stopped on validation
    ranking_replay      a ranker's scores as rows of the replay table
    ranker_experiment   both rankers trained and judged on one shop's days (benchmark, tests)
    ranker_registry     ``freshcart-ranker``: registration, the gate, which ranker serves (ranker_pyfunc,
                        ranker_model_code: the registered model)
    ranker_job          the train_evaluate DAG's ``train_ranker`` over the offline store
"""

from __future__ import annotations

from freshcart.recommendation.base import Recommender, TieBreak
from freshcart.recommendation.baselines import ItemKNN, Popularity, SessionKNN, Trending
from freshcart.recommendation.log import EventLog, build_log, load_log
from freshcart.recommendation.oracle import Oracle
from freshcart.recommendation.replay import default_recommenders, evaluate_recommendations, replay
from freshcart.recommendation.reranking import CandidateRanker, Reranked
from freshcart.recommendation.tracking import log_to_mlflow

__all__ = ["CandidateRanker", "EventLog", "ItemKNN", "Oracle", "Popularity", "Recommender", "Reranked",
           "SessionKNN", "TieBreak", "Trending", "build_log", "default_recommenders", "evaluate_recommendations",
           "load_log", "log_to_mlflow", "replay"]
