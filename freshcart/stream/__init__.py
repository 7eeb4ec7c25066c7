"""The stream processor: Kafka events -> the shared feature logic -> Feast online store and offline tables."""
