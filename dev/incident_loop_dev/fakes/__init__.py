"""Fake external services for tests and local runs: real HTTP servers on 127.0.0.1 speaking the real APIs'
JSON, counting calls, with scripted failures (docs/skills.md, "Fake receivers").

    from incident_loop_dev.fakes import FakeSlack, FakeVoyage, FakeWebhookReceiver

    with FakeWebhookReceiver(secrets=[secret]) as hook, FakeVoyage() as voyage, FakeSlack() as slack:
        hook.fail(500, times=2); voyage.fail(429, retry_after="1"); slack.stall(5.0)
        ...  # hook.url, voyage.url, slack.base_url / slack.webhook_url; then .calls and each one's counters

fake_services() starts all three and gives the settings and SSM parameters that point the skills at them;
ScriptedTransport and FakeClock are the in-memory stand-ins for unit tests; aws.py creates the skills'
tables on moto and wires their breakers; emf.py reads the metrics a test captured.
"""

from incident_loop_dev.fakes.server import Call, FakeServer
from incident_loop_dev.fakes.services import FakeServices, fake_services
from incident_loop_dev.fakes.slack import FakeSlack, Message
from incident_loop_dev.fakes.transport import FakeClock, ScriptedTransport, response
from incident_loop_dev.fakes.voyage import FakeVoyage, embedding
from incident_loop_dev.fakes.webhook import FakeWebhookReceiver

__all__ = ["Call", "FakeClock", "FakeServer", "FakeServices", "FakeSlack", "FakeVoyage", "FakeWebhookReceiver",
           "Message", "ScriptedTransport", "embedding", "fake_services", "response"]
