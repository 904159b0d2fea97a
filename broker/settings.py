"""Deployment settings, read once from the environment (``MASP_*``) at the edge."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import unquote, urlparse

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from broker.agencies import AgencyOptions, AlgName, DeliveryMode
from broker.audit.note import CosignatureVerifier, NoteError
from broker.crypto.keys import AGENCIES
from broker.errors import ConfigurationError
from broker.transport.topology import normalise_namespace


class WitnessEndpoint(BaseModel):
    """One C2SP tlog-witness the broker submits checkpoints to: its submission prefix and key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="submission prefix: the broker POSTs <url>/add-checkpoint")
    vkey: str = Field(description="the witness's cosignature/v1 verifier key (name+id+key)")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parsed = urlparse(value)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError("MASP_WITNESSES: a witness url must be an http(s) URL with a host")
        if parsed.query or parsed.fragment or parsed.username or parsed.password:
            raise ValueError("MASP_WITNESSES: a witness url takes no query, fragment or credentials")
        return value.rstrip("/")

    @field_validator("vkey")
    @classmethod
    def _cosignature_key(cls, value: str) -> str:
        try:
            CosignatureVerifier.from_vkey(value)
        except NoteError as exc:
            raise ValueError(f"MASP_WITNESSES: not a cosignature/v1 vkey: {exc}") from None
        return value

    @property
    def verifier(self) -> CosignatureVerifier:
        return CosignatureVerifier.from_vkey(self.vkey)

    @property
    def name(self) -> str:
        return self.verifier.name


class Settings(BaseSettings):
    #: MASP_SECRETS_DIR (e.g. /run/secrets): a file there named like the variable
    #: (``masp_amqp_url``, ``masp_database_url``, ...) supplies its value, so no password sits in
    #: the environment or in a compose/manifest file.
    model_config = SettingsConfigDict(env_prefix="MASP_", env_file=".env", extra="ignore",
                                      secrets_dir=os.environ.get("MASP_SECRETS_DIR") or None)

    state_dir: Path = Field(default=Path("var"), description="keys, database, exports")
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    amqp_ca_file: Path | None = Field(default=None, description="CA that signed RabbitMQ's certificate")
    amqp_cert_file: Path | None = Field(default=None, description="client certificate for mutual TLS")
    amqp_key_file: Path | None = Field(default=None, description="its key, if not in the certificate file")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy async URL; default SQLite under the state dir"
    )
    dsa_dir: Path = Path("deploy/dsa")
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    deployment: str = Field(default="dev", description="names the audit log origin")
    #: Prefix for every exchange and queue, so several deployments (or tests) share a vhost:
    #: ``demo1`` names ``demo1.masp.ingress`` (the dot is added when missing).
    namespace: str = ""
    max_message_bytes: int = 256 * 1024
    rate_limit: str = Field(default="600/minute", description="submissions per agency, HTTP and AMQP "
                            "together (limits notation, per broker process); empty for none")
    #: MASP_AMQP_AGENCY_USERS=police=hiow-police,nhs=hiow-nhs: the RabbitMQ user an agency
    #: publishes to masp.ingress as, where it is not the agency's own name (the default).
    amqp_agency_users: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="agency=rabbitmq-user pairs, comma-separated; unlisted "
        "agencies publish as the user named like the agency")
    #: MASP_DELIVERY_MODES=advocacy=mailbox: agencies that receive over the HTTP mailbox only
    #: (nothing is published to their inbox queue); the others over AMQP (docs/spec/mailbox.md).
    delivery_modes: Annotated[dict[str, DeliveryMode], NoDecode] = Field(
        default_factory=dict, description="agency=amqp|mailbox pairs, comma-separated; unlisted "
        "agencies receive over AMQP, with the mailbox as a fallback")
    #: MASP_JWS_ALG_NAMES=probation=EdDSA: the JWS alg name on what the broker signs for an
    #: agency, for libraries that know only RFC 8037's EdDSA (docs/spec/jose-profile.md).
    jws_alg_names: Annotated[dict[str, AlgName], NoDecode] = Field(
        default_factory=dict, description="agency=Ed25519|EdDSA pairs, comma-separated; unlisted "
        "agencies get Ed25519 (RFC 9864)")
    ingress_refusal_rate: float = Field(
        default=200.0, ge=0, description="AMQP submissions refused unread (over the rate limit, "
        "unauthenticated) per agency queue and second, per broker process; a flood beyond it waits "
        "in its own queue. 0: unpaced")
    refusal_window_s: float = Field(
        default=60.0, gt=0, description="repeated ingress refusals of one kind from one sender are "
        "audited once per window, with a count and digests")
    max_clock_skew_s: int = 300
    delivery_limit: int = 5
    delivery_expiry_s: int = Field(
        default=24 * 3600, gt=0, description="an unacknowledged delivery expires after this (NDR to sender)")
    timer_interval_s: float = Field(default=15.0, gt=0, description="how often safeguarding timers run")
    auth_token_max_age_s: int = 300
    witness_every_s: float = Field(default=30.0, gt=0, description="how often adapters cosign checkpoints, "
                                   "and how often the broker submits new ones to MASP_WITNESSES")
    #: MASP_WITNESSES='[{"url": "https://witness.example/w1", "vkey": "witness.example/w1+..."}]':
    #: C2SP tlog-witness witnesses the broker submits its checkpoints to (``add-checkpoint``);
    #: ``vkey`` is the witness's pinned ``cosignature/v1`` verifier key.
    witnesses: list[WitnessEndpoint] = Field(
        default_factory=list, description="standard witnesses (JSON list of {url, vkey}) the broker "
        "pushes checkpoints to with the C2SP tlog-witness protocol")
    witness_timeout_s: float = Field(default=10.0, gt=0, description="timeout of each request to a witness")
    witness_quorum: int = Field(default=2, ge=0, description="witness cosignatures that publish a checkpoint")
    log_json: bool = Field(default=False, description="JSON log lines (production) instead of console")
    log_level: str = "INFO"
    log_library_level: str = Field(default="WARNING", description="aio-pika, uvicorn, sqlalchemy, ...")
    otlp_endpoint: str | None = Field(
        default=None, description="OTLP/HTTP collector base URL (…:4318); traces and metrics are exported "
        "there when set; needs the opentelemetry-exporter-otlp-proto-http package")
    trace_sample_ratio: float = Field(default=1.0, ge=0, le=1, description="share of new traces sampled")
    ack_overdue_s: int = Field(default=3600, gt=0, description="unacknowledged this long: overdue")
    ops_sample_s: float = Field(default=15.0, gt=0, description="gauges and consumer watchdog period")
    pseudonym_secret: str | None = Field(
        default=None, description="deployment secret for subject pseudonyms; file under state dir if unset"
    )
    # --- the web console (/ui): see docs/console.md ---
    ui_token_signin: bool = Field(
        default=True, description="sign in to /ui by pasting a role token (development); off in production")
    oidc_issuer: str | None = Field(
        default=None, description="OpenID Provider issuer URL; set to enable OIDC sign-in to /ui")
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = Field(default=None, description="confidential client secret")
    oidc_redirect_uri: str | None = Field(
        default=None, description="this console's callback as registered: https://host/ui/oidc/callback")
    oidc_role_claim: str = Field(default="masp_role", description="ID-token claim naming the MASP role")
    oidc_scopes: str = "openid profile"
    ui_cookie_secure: Literal["auto", "always"] = Field(
        default="auto", description="console cookies Secure: `auto` when the request came over HTTPS "
        "(directly or as a trusted proxy reports it), `always` whatever the request says (production)")
    # --- behind a TLS-terminating proxy: see docs/console.md ---
    forwarded_allow_ips: str = Field(
        default="127.0.0.1,::1", description="comma-separated addresses or networks (CIDR) of the proxies "
        "whose X-Forwarded-Proto and X-Forwarded-For are believed (uvicorn's --forwarded-allow-ips); "
        "`*` believes every peer, empty none")

    @field_validator("forwarded_allow_ips")
    @classmethod
    def _proxy_addresses(cls, value: str) -> str:
        """uvicorn takes anything it cannot parse as a literal host name that never matches a
        TCP peer, so a typo would silently trust no proxy (or, mixed with ``*``, make ``*``
        such a literal too): refuse it at start-up instead."""
        items = [item.strip() for item in value.split(",") if item.strip()]
        if "*" in items and items != ["*"]:
            raise ValueError("MASP_FORWARDED_ALLOW_IPS: '*' cannot be combined with addresses")
        for item in items:
            if item == "*":
                continue
            try:
                ipaddress.ip_network(item) if "/" in item else ipaddress.ip_address(item)
            except ValueError:
                raise ValueError(f"MASP_FORWARDED_ALLOW_IPS: {item!r} is not an IP address or network "
                                 "(a network's host bits must be zero)") from None
        return ",".join(items)

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str) -> str:
        try:
            return normalise_namespace(value)
        except ConfigurationError as exc:
            raise ValueError(exc.detail) from None

    @field_validator("amqp_agency_users", mode="before")
    @classmethod
    def _agency_users(cls, value: object) -> object:
        return _agency_pairs(value, "amqp_agency_users", "user")

    @field_validator("delivery_modes", mode="before")
    @classmethod
    def _delivery_modes(cls, value: object) -> object:
        return _agency_pairs(value, "MASP_DELIVERY_MODES", "amqp|mailbox")

    @field_validator("jws_alg_names", mode="before")
    @classmethod
    def _alg_names(cls, value: object) -> object:
        return _agency_pairs(value, "MASP_JWS_ALG_NAMES", "Ed25519|EdDSA")

    @model_validator(mode="after")
    def _options_name_agencies(self) -> Settings:
        for what, pairs in (("MASP_DELIVERY_MODES", self.delivery_modes),
                            ("MASP_JWS_ALG_NAMES", self.jws_alg_names)):
            unknown = set(pairs) - set(AGENCIES)
            if unknown:
                raise ValueError(f"{what}: not agencies: {', '.join(sorted(unknown))}")
        return self

    @property
    def agency_options(self) -> AgencyOptions:
        return AgencyOptions(dict(self.delivery_modes), dict(self.jws_alg_names))

    @model_validator(mode="after")
    def _agency_users_are_one_to_one(self) -> Settings:
        unknown = set(self.amqp_agency_users) - set(AGENCIES)
        if unknown:
            raise ValueError(f"amqp_agency_users: not agencies: {', '.join(sorted(unknown))}")
        users = list(self.amqp_users.values())
        if len(users) != len(AGENCIES):
            raise ValueError("amqp_agency_users: two agencies would share one RabbitMQ user")
        return self

    @model_validator(mode="after")
    def _witnesses_are_distinct(self) -> Settings:
        names = [w.name for w in self.witnesses]
        if len(set(names)) != len(names):
            raise ValueError("MASP_WITNESSES: two witnesses share a key name")
        if self.audit_origin in names:
            raise ValueError("MASP_WITNESSES: a witness cannot be named like the audit log's origin")
        return self

    @property
    def amqp_users(self) -> dict[str, str]:
        """RabbitMQ user -> the agency it authenticates (``amqp_agency_users``, else the agency's name)."""
        return {self.amqp_agency_users.get(a, a): a for a in AGENCIES}

    @property
    def amqp_user(self) -> str | None:
        """The RabbitMQ user this process connects as (from ``amqp_url``), if the URL names one."""
        user = urlparse(self.amqp_url).username
        return unquote(user) if user else None

    @property
    def keys_dir(self) -> Path:
        return self.state_dir / "keys"

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.state_dir / 'masp.db').resolve()}"

    @property
    def audit_origin(self) -> str:
        return f"masp.audit/{self.deployment}"


def _agency_pairs(value: object, what: str, shape: str) -> object:
    """``police=a,nhs=b`` as a dict; each agency once. Values are checked by the field's type."""
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    for item in filter(None, (p.strip() for p in value.split(","))):
        agency, sep, chosen = (x.strip() for x in item.partition("="))
        if not sep or not agency or not chosen:
            raise ValueError(f"{what}: expected agency={shape}, got {item!r}")
        if agency in pairs:
            raise ValueError(f"{what}: {agency} is named twice")
        pairs[agency] = chosen
    return pairs
