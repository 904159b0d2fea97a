"""Who sent an AMQP submission: the agency RabbitMQ authenticated, from the ``user_id`` property.

RabbitMQ refuses a publish whose ``user_id`` differs from the user the connection
authenticated as (unless that user has the ``impersonator`` tag, which no MASP user has),
so a ``user_id`` on a message that reached us is proof of who published it. Adapters set
it to their RabbitMQ user; the broker maps that user to an agency (``MASP_AMQP_AGENCY_USERS``,
by default the user named like the agency). A message without ``user_id``, or from a user
that is no agency's, is refused; so is one that reached another agency's ingress queue
(RabbitMQ's topic permissions on ``masp.ingress`` already stop that in a deployment loaded
from ``deploy/rabbitmq/definitions.json``: this is the second lock on that door).

The broker's own RabbitMQ user (the user of ``MASP_AMQP_URL``) may publish into an
agency's ingress queue on that agency's behalf: the dead-letter replay does, and ``masp
demo``, ``masp serve --demo`` and ``masp bench`` run their in-process adapters on the broker's
connection. That user can read every queue already; the message's signature must still be
the agency's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from broker.errors import MisroutedSubmission, Unauthorized
from broker.settings import Settings


@dataclass(frozen=True)
class AmqpIdentities:
    users: Mapping[str, str]  # RabbitMQ user -> agency
    broker_user: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> AmqpIdentities:
        return cls(settings.amqp_users, settings.amqp_user)

    def agency_of(self, user_id: str | None, queue_agency: str) -> str:
        """The agency that published a message found on ``queue_agency``'s ingress queue.

        Raises ``Unauthorized`` (no agency authenticated) or ``MisroutedSubmission`` (an
        agency, but on another agency's queue: ``exc.agency`` says which).
        """
        if not user_id:
            raise Unauthorized("AMQP submission without the user_id property: set it to your "
                               "RabbitMQ user")
        agency = self.users.get(user_id)
        if agency is None:
            if user_id == self.broker_user:
                return queue_agency
            raise Unauthorized("the RabbitMQ user that published this is not an agency's")
        if agency != queue_agency:
            raise MisroutedSubmission(agency)
        return agency

