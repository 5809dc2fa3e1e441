"""The event bus: durable topics, at-least-once delivery, retries and dead letters.

For code that shoal runs, what to import is :func:`publish` (and :func:`publish_batch`;
stdlib only). The daemon
side lives in modules imported explicitly, never from here, so that importing ``shoal.events``
inside a function costs nothing:

bus         topics and queues over the state store; group commit (durable publish, then 202)
delivering  lease -> handler -> settle, one worker set per subscription
retrying    the pure retry policy: exponential backoff, then the dead-letter topic
sdk         ``shoal.events.publish(topic, data)`` from inside functions and services
"""

from shoal.events.sdk import publish, publish_batch

__all__ = ["publish", "publish_batch"]
