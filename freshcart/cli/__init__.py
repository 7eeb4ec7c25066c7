"""The ``freshcart`` command line: one way in to every part of FreshCart.

``root`` holds the root command, ``common`` what every command shares (settings,
error exit, consoles, date parsers); each other module is one command group (``kafka_acls``:
one command of the ``services`` group) and imports only ``common``. This module adds the groups
to the root command, in the order ``freshcart --help`` lists them.
"""

from __future__ import annotations

from freshcart.cli import (config, demo, features, ingest, kafka_acls, monitor, privacy, recommend, serve, services,
                           simulate, stream, train)
from freshcart.cli.root import app, main

app.command("ingest-file")(ingest.ingest_file)
app.command("demo")(demo.demo_command)
app.command("simulate")(simulate.simulate)
app.command("ingest")(ingest.ingest)
app.command("train")(train.train)
app.command("evaluate")(train.evaluate)
app.command("promote")(train.promote)
app.command("rollback")(train.rollback)
app.command("evaluate-recommendations")(recommend.evaluate_recommendations)
app.command("train-ranker")(recommend.train_ranker)
app.command("serve")(serve.serve)
services.services_app.command("kafka-acls")(kafka_acls.kafka_acls)
app.add_typer(services.services_app, name="services")
app.add_typer(config.config_app, name="config")
app.add_typer(features.features_app, name="features")
app.add_typer(stream.stream_app, name="stream")
app.add_typer(monitor.monitor_app, name="monitor")
app.add_typer(serve.predictions_app, name="predictions")
app.add_typer(privacy.privacy_app, name="privacy")

__all__ = ["app", "main"]
