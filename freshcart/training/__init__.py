"""Training, evaluation and the model registry of the propensity models.

Modules, in the order a training run uses them::

    data        training set (read or built), split by time, model inputs, data hash
    xgb_model   XGBoost (hist) with early stopping
    din_model   the attention model (Deep Interest Network style), its encoder
    din_train   seeded mini-batch training with early stopping, CPU or CUDA
    evaluate    propensity and ranking metrics, popularity baseline, oracle AUC
    plots       ROC, PR, calibration, importance, attention plots
    train       one MLflow-tracked training run that registers the model
    pyfunc      the registered pyfunc model
    registry    tracking store per profile, aliases, environment
    promote     promotion only when better, rollback, decisions recorded
    report, demo, ui   metrics table, the demo step, `make mlflow-ui`
"""
