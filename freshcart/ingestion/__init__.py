"""Offline ingestion: public files and landed records -> the offline event store, validated.

    file (REES46, Taobao, native) --formats--> raw chunks --sessions (ids, 30-min gaps)--+
                                                                                        +--validation--> offline store
    landing/arrival_date=D/*.jsonl|*.parquet --landing_readers--> raw chunks ------------+   events/event_date=D'/

``file_ingest`` drives the first path (``freshcart ingest-file``), ``interval_ingest``
the second (``freshcart ingest --start --end``, the ``ingest_events`` DAG);
``landing`` writes the landing zone. Rejected records are kept with their reason,
and valid records are never dropped because of them.
"""
