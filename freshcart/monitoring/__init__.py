"""Monitoring: feedback labels, drift and performance per window, verdicts and the retrain decision.

    reference    the sample of model inputs stored with every trained model version
    labels       predictions joined with what shoppers bought in (t, t + horizon]
    drift        per-column drift scores (Evidently's statistics) and thresholds calibrated on the reference
    performance  measured figures once labels exist, a confidence-based estimate before
    report       one window: sample, scores, verdicts, Evidently report, the monitoring tables
    verdict      retrain or not, with its reason (persistence, performance, cooldown, minimum size)
    tables       the Parquet tables the DAG, the plugin and the tests read
    workspace    the Evidently workspace and `evidently ui`
    tasks        the functions the `monitor_model` DAG calls, one per task
"""
