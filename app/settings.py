"""One settings object per process, from environment variables ``BILLING_*``."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BILLING_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="PostgreSQL/TimescaleDB URL; unset = embedded PostgreSQL under var_dir",
    )
    var_dir: Path = Field(default=Path("var"), description="state folder for the embedded mode")
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    pool_size: int = Field(default=8, ge=1, le=100)
    forwarded_allow_ips: str | None = Field(
        default=None,
        description="behind a TLS proxy: its address(es), comma-separated, whose "
        "X-Forwarded-For/-Proto are trusted; unset = proxy headers ignored",
    )
    cookie_secure: bool = Field(default=True, description="set false only for plain local HTTP")
    session_idle_minutes: int = Field(default=30, ge=1)
    session_absolute_hours: int = Field(default=12, ge=1)
    payment_days: int = Field(default=15, ge=0, le=120, description="due date = issue + N days")
    recipient_account: str = Field(
        default="1549990000000053",
        description="the utility's BiH bank account (16 digits, MOD 97-10)",
    )
    operator_token: SecretStr | None = Field(
        default=None, description="bearer token for operator calls (close) until operator accounts"
    )
    simulator_interval_s: float = Field(default=10.0, gt=0, description="seconds between sends")
    simulator_read_minutes: int = Field(
        default=15, ge=1, description="each meter reads every N min"
    )
    demo_customers: int = Field(default=2000, ge=1, description="demo size on first start")
    demo_months: int = Field(default=24, ge=1, le=60)

    # streaming on real infrastructure (unset bootstrap = the in-process chain)
    kafka_bootstrap: str | None = Field(default=None, description="host:port[,host:port]")
    kafka_reads_topic: str = "meter.reads.v1"
    kafka_dlq_topic: str = "meter.reads.dlq.v1"
    kafka_consumer_group: str = "billing-stream"
    worker_engine: Literal["aiokafka", "faust"] = Field(
        default="faust", description="the Faust agent, or the leaner batch loop on aiokafka"
    )
    publish_events: bool | None = Field(
        default=None,
        description="the worker role (and `run` with Kafka) sends the outbox to Kafka; unset"
        " = on when kafka_bootstrap is set",
    )
    worker_batch_size: int = Field(default=5000, ge=1, le=100_000)
    worker_batch_seconds: float = Field(default=0.5, gt=0)
    mqtt_host: str = "127.0.0.1"
    mqtt_port: int = Field(default=11883, ge=1, le=65535)
    mqtt_username: str = "ingest"
    mqtt_password: SecretStr | None = None
    mqtt_topic: str = "amr/#"
    metrics_port: int | None = Field(default=None, description="Prometheus port of worker/gateway")
