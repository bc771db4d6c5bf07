"""HTTP APIs (optional extra 'api'): a Subscriber manages its replica lists; a Leader tells
Subscribers where to stream from and shows what each of them holds."""

from __future__ import annotations

from fastapi import FastAPI

from pgsync_dossier.config import Config


def create_app(config: Config) -> FastAPI:
    """The app for this node's role: a relay's is a Subscriber's that also tells downstream
    Subscribers, given its web address, where to stream from, and shows what it publishes."""
    if config.role == "leader":
        from pgsync_dossier.api.leader_app import create_leader_app

        return create_leader_app(config)
    from pgsync_dossier.api.subscriber_app import create_subscriber_app

    app = create_subscriber_app(config)
    if config.role == "relay":
        from pgsync_dossier.api.leader_app import RELAY_PUBLISHED_PATH, install_handshake, install_published

        install_handshake(app, config)
        install_published(app, config, RELAY_PUBLISHED_PATH)
    return app
