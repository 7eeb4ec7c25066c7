"""Least privilege on the broker: the ACLs of each FreshCart role, on the topics of one settings object.

producer   writes the events topic;
stream     reads the events and by-product topics, writes by-product, dead letters and its changelogs
           (transactions named after the changelog partitions), consumes in the stream group;
serving    writes the prediction log, reads the events topic (without a group: the purchases it leaves out
           of recommendations, :mod:`freshcart.serving.purchases`);
monitoring reads the prediction log and the dead letters, consumes in the prediction-ingest group, and
           describes the stream group (lag).
The admin principal is the broker's super user; it needs no ACL.
"""

from __future__ import annotations

from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

from freshcart.credentials import KAFKA_ROLES
from freshcart.settings import Settings

PREDICTIONS_INGEST_GROUP = "freshcart-predictions-ingest"
"""Prefix of the consumer groups that land the prediction log (``freshcart predictions ingest``)."""

READ = (ACLOperation.READ, ACLOperation.DESCRIBE)
WRITE = (ACLOperation.WRITE, ACLOperation.DESCRIBE)


def role_grants(settings: Settings) -> dict[str, list[tuple[ResourceType, str, ACLResourcePatternType,
                                                           tuple[ACLOperation, ...]]]]:
    """role -> (resource type, name, pattern type, operations) for every grant of that role."""
    topic, group, literal, prefixed = ResourceType.TOPIC, ResourceType.GROUP, ACLResourcePatternType.LITERAL, \
        ACLResourcePatternType.PREFIXED
    changelogs = [f"{settings.stream_group}-{name}-changelog" for name in (settings.events_topic,
                                                                          settings.product_topic)]
    return {
        "producer": [(topic, settings.events_topic, literal, WRITE)],
        "stream": [
            (topic, settings.events_topic, literal, READ),
            (topic, settings.product_topic, literal, READ + (ACLOperation.WRITE,)),
            (topic, settings.dlq_topic, literal, WRITE),
            *((topic, name, literal, READ + (ACLOperation.WRITE,)) for name in changelogs),
            *((ResourceType.TRANSACTIONAL_ID, name, prefixed, WRITE) for name in changelogs),
            (group, settings.stream_group, literal, READ),
        ],
        "serving": [(topic, settings.predictions_topic, literal, WRITE), (topic, settings.events_topic, literal, READ)],
        "monitoring": [
            (topic, settings.predictions_topic, literal, READ),
            (topic, settings.dlq_topic, literal, READ),
            (topic, settings.events_topic, literal, (ACLOperation.DESCRIBE,)),
            (topic, settings.product_topic, literal, (ACLOperation.DESCRIBE,)),
            (group, PREDICTIONS_INGEST_GROUP, prefixed, READ),
            (group, settings.stream_group, literal, (ACLOperation.DESCRIBE,)),
        ],
    }


def acl_specs(settings: Settings) -> list[ACL]:
    """The ALLOW ACLs of every role (from any host) for kafka-python's ``KafkaAdminClient.create_acls``."""
    acls = []
    for role, grants in role_grants(settings).items():
        for resource_type, name, pattern, operations in grants:
            for operation in operations:
                acls.append(ACL(principal=f"User:{KAFKA_ROLES[role]}", host="*", operation=operation,
                                permission_type=ACLPermissionType.ALLOW,
                                resource_pattern=ResourcePattern(resource_type, name, pattern)))
    return acls
