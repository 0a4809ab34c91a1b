"""Kiln's tables (tortoise-orm). Migrations live in ``server/migrations``.

Every row that belongs to a tenant carries ``account_id``; the scoped
services in ``server.services`` filter by it in one place. ``LogLine`` has a
composite primary key (run, seq) that tortoise cannot express: it is created
by a SQL migration and read and written with plain SQL in ``server.logs``.

Status codes follow dbt Cloud (see :class:`RunStatus`).
"""

from __future__ import annotations

import enum

from tortoise import fields
from tortoise.indexes import Index
from tortoise.models import Model


class RunStatus(enum.IntEnum):
    QUEUED = 1
    STARTING = 2
    RUNNING = 3
    SUCCESS = 10
    ERROR = 20
    CANCELLED = 30

    @property
    def is_final(self) -> bool:
        return self >= RunStatus.SUCCESS

    @property
    def humanized(self) -> str:
        return self.name.capitalize()


FINAL_STATUSES = (RunStatus.SUCCESS, RunStatus.ERROR, RunStatus.CANCELLED)
ACTIVE_STATUSES = (RunStatus.QUEUED, RunStatus.STARTING, RunStatus.RUNNING)


class Role(enum.StrEnum):
    OWNER = "owner"
    ADMIN = "admin"
    DEVELOPER = "developer"
    ANALYST = "analyst"
    JOB_RUNNER = "job_runner"
    VIEWER = "viewer"


class Timestamped(Model):
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        abstract = True


class Account(Timestamped):
    id = fields.BigIntField(primary_key=True)
    name = fields.CharField(max_length=200, unique=True)
    run_slots = fields.IntField(default=5)

    class Meta:
        table = "account"


class User(Timestamped):
    id = fields.BigIntField(primary_key=True)
    email = fields.CharField(max_length=320, unique=True)  # stored lower-case
    name = fields.CharField(max_length=200, default="")
    password_hash = fields.CharField(max_length=200, null=True)
    is_active = fields.BooleanField(default=True)

    class Meta:
        table = "kiln_user"


class Membership(Timestamped):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="memberships", on_delete=fields.CASCADE
    )
    user = fields.ForeignKeyField(
        "models.User", related_name="memberships", on_delete=fields.CASCADE
    )
    role = fields.CharField(max_length=20)

    class Meta:
        table = "membership"
        unique_together = (("account", "user"),)


class Token(Model):
    """An API token: ``service`` (belongs to the account) or ``personal`` (acts as its user)."""

    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="tokens", on_delete=fields.CASCADE
    )
    user = fields.ForeignKeyField(
        "models.User", related_name="tokens", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    kind = fields.CharField(max_length=20, default="service")
    role = fields.CharField(max_length=20)
    token_hash = fields.CharField(max_length=64, unique=True)
    prefix = fields.CharField(max_length=16)  # first characters, to recognise it in a list
    created_at = fields.DatetimeField(auto_now_add=True)
    last_used_at = fields.DatetimeField(null=True)
    expires_at = fields.DatetimeField(null=True)
    revoked_at = fields.DatetimeField(null=True)

    class Meta:
        table = "api_token"


class LoginSession(Model):
    """A browser session (cookie), created by the login mutation."""

    id = fields.BigIntField(primary_key=True)
    user = fields.ForeignKeyField(
        "models.User", related_name="login_sessions", on_delete=fields.CASCADE
    )
    token_hash = fields.CharField(max_length=64, unique=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    expires_at = fields.DatetimeField()
    last_used_at = fields.DatetimeField(null=True)

    class Meta:
        table = "login_session"


class Project(Timestamped):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="projects", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    repository_url = fields.CharField(max_length=1000, null=True)  # git remote
    bundled_path = fields.CharField(max_length=1000, null=True)  # a directory on the server
    subdirectory = fields.CharField(max_length=500, default="")
    default_branch = fields.CharField(max_length=200, default="main")
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "project"
        unique_together = (("account", "name"),)


class Connection(Timestamped):
    """Adapter type and the non-secret connection details (host, port, database, path)."""

    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="connections", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    adapter_type = fields.CharField(max_length=50)
    details = fields.JSONField(default=dict)

    class Meta:
        table = "warehouse_connection"
        unique_together = (("account", "name"),)


class Credentials(Timestamped):
    """Who dbt connects as. ``secrets`` holds the Fernet-encrypted JSON of the secret fields.

    ``user`` is set for a developer's own development credentials.
    """

    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="credentials", on_delete=fields.CASCADE
    )
    project = fields.ForeignKeyField(
        "models.Project", related_name="credentials", on_delete=fields.CASCADE
    )
    user = fields.ForeignKeyField(
        "models.User", related_name="credentials", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200, default="")
    adapter_type = fields.CharField(max_length=50)
    fields_json = fields.JSONField(default=dict)  # non-secret: schema, user, threads...
    secrets = fields.TextField(default="")  # encrypted JSON object

    class Meta:
        table = "credentials"


class Environment(Timestamped):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="environments", on_delete=fields.CASCADE
    )
    project = fields.ForeignKeyField(
        "models.Project", related_name="environments", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    kind = fields.CharField(max_length=20, default="deployment")  # development | deployment
    deployment_type = fields.CharField(max_length=20, null=True)  # production | staging
    dbt_version = fields.CharField(max_length=50, default="1.11")
    connection = fields.ForeignKeyField(
        "models.Connection", related_name="environments", null=True, on_delete=fields.SET_NULL
    )
    credentials = fields.ForeignKeyField(
        "models.Credentials", related_name="environments", null=True, on_delete=fields.SET_NULL
    )
    target_name = fields.CharField(max_length=100, default="default")
    threads = fields.IntField(default=4)
    custom_branch = fields.CharField(max_length=200, null=True)
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "environment"
        unique_together = (("project", "name"),)


class EnvVar(Timestamped):
    """A variable at project level, or overridden for an environment or a job.

    Names starting ``DBT_ENV_SECRET_`` are secret: ``value`` is encrypted and
    the API never returns it.
    """

    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="env_vars", on_delete=fields.CASCADE
    )
    project = fields.ForeignKeyField(
        "models.Project", related_name="env_vars", on_delete=fields.CASCADE
    )
    environment = fields.ForeignKeyField(
        "models.Environment", related_name="env_vars", null=True, on_delete=fields.CASCADE
    )
    job = fields.ForeignKeyField(
        "models.Job", related_name="env_vars", null=True, on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    value = fields.TextField()
    is_secret = fields.BooleanField(default=False)

    class Meta:
        table = "env_var"


class Job(Timestamped):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="jobs", on_delete=fields.CASCADE
    )
    project = fields.ForeignKeyField(
        "models.Project", related_name="jobs", on_delete=fields.CASCADE
    )
    environment = fields.ForeignKeyField(
        "models.Environment", related_name="jobs", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    steps = fields.JSONField(default=list)  # ["dbt build", ...]
    generate_docs = fields.BooleanField(default=False)
    run_freshness = fields.BooleanField(default=False)
    timeout_seconds = fields.IntField(default=0)  # 0 = no timeout
    threads = fields.IntField(null=True)
    target_name = fields.CharField(max_length=100, null=True)
    priority = fields.IntField(default=0)
    # schedule
    cron = fields.CharField(max_length=200, null=True)
    timezone = fields.CharField(max_length=100, default="UTC")
    catchup = fields.CharField(max_length=10, default="latest")  # latest | none
    catchup_cap = fields.IntField(default=1)
    schedule_epoch = fields.DatetimeField(null=True)  # ticks before this never fire
    last_tick_at = fields.DatetimeField(null=True)  # last evaluated tick
    next_tick_at = fields.DatetimeField(null=True, db_index=True)
    # job-completion trigger: run when `trigger_job` ends with one of `trigger_statuses`
    trigger_job = fields.ForeignKeyField(
        "models.Job", related_name="downstream_jobs", null=True, on_delete=fields.SET_NULL
    )
    trigger_statuses = fields.JSONField(default=list)
    triggers = fields.JSONField(default=dict)  # dbt Cloud's triggers object, as given
    deleted_at = fields.DatetimeField(null=True)

    class Meta:
        table = "job"


class Run(Model):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="runs", on_delete=fields.CASCADE
    )
    project = fields.ForeignKeyField(
        "models.Project", related_name="runs", on_delete=fields.CASCADE
    )
    environment = fields.ForeignKeyField(
        "models.Environment", related_name="runs", on_delete=fields.CASCADE
    )
    job = fields.ForeignKeyField("models.Job", related_name="runs", on_delete=fields.CASCADE)
    status = fields.SmallIntField(default=RunStatus.QUEUED)
    status_message = fields.TextField(null=True)
    trigger_kind = fields.CharField(max_length=20, default="manual")
    cause = fields.TextField(default="")
    triggered_by_user = fields.ForeignKeyField(
        "models.User", related_name="triggered_runs", null=True, on_delete=fields.SET_NULL
    )
    previous_run = fields.ForeignKeyField(  # retry source, or the upstream run of a chain
        "models.Run", related_name="followups", null=True, on_delete=fields.SET_NULL
    )
    git_branch = fields.CharField(max_length=200, null=True)
    git_sha = fields.CharField(max_length=64, null=True)
    steps_spec = fields.JSONField(default=list)  # the resolved commands, fixed at trigger time
    overrides = fields.JSONField(default=dict)
    timeout_seconds = fields.IntField(default=0)
    priority = fields.IntField(default=0)
    scheduled_for = fields.DatetimeField(null=True)
    attempt = fields.IntField(default=1)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)
    dequeued_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    heartbeat_at = fields.DatetimeField(null=True)
    cancel_requested_at = fields.DatetimeField(null=True)
    cancel_reason = fields.TextField(null=True)
    worker_handle = fields.CharField(max_length=200, null=True)
    launcher = fields.CharField(max_length=20, null=True)
    worker_token_hash = fields.CharField(max_length=64, null=True, unique=True)
    artifacts_saved = fields.BooleanField(default=False)
    logs_archived = fields.BooleanField(default=False)
    log_seq = fields.IntField(default=0)  # highest log seq stored

    class Meta:
        table = "run"
        unique_together = (("job", "scheduled_for"),)
        indexes = (
            Index(fields=("account_id", "status")),
            Index(fields=("job_id", "status")),
            Index(fields=("account_id", "created_at")),
            Index(fields=("environment_id", "created_at")),
            Index(fields=("project_id", "created_at")),
        )


class RunStep(Model):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="run_steps", on_delete=fields.CASCADE
    )
    run = fields.ForeignKeyField("models.Run", related_name="steps", on_delete=fields.CASCADE)
    index = fields.IntField()  # 1-based, like dbt Cloud
    name = fields.CharField(max_length=500)
    kind = fields.CharField(max_length=20, default="dbt")  # clone | deps | dbt | docs | freshness
    command = fields.TextField(default="")
    status = fields.SmallIntField(default=RunStatus.QUEUED)
    status_message = fields.TextField(null=True)
    started_at = fields.DatetimeField(null=True)
    finished_at = fields.DatetimeField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    updated_at = fields.DatetimeField(auto_now=True)

    class Meta:
        table = "run_step"
        unique_together = (("run", "index"),)


class Artifact(Model):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="artifacts", on_delete=fields.CASCADE
    )
    run = fields.ForeignKeyField("models.Run", related_name="artifacts", on_delete=fields.CASCADE)
    step_index = fields.IntField()
    path = fields.CharField(max_length=1000)  # relative to target/, e.g. manifest.json
    size = fields.BigIntField()
    sha256 = fields.CharField(max_length=64)
    object_key = fields.CharField(max_length=1500)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "artifact"
        unique_together = (("run", "step_index", "path"),)


class IdeSession(Timestamped):
    """One develop server for one user and project; the row is reused across restarts."""

    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="ide_sessions", on_delete=fields.CASCADE
    )
    user = fields.ForeignKeyField(
        "models.User", related_name="ide_sessions", on_delete=fields.CASCADE
    )
    project = fields.ForeignKeyField(
        "models.Project", related_name="ide_sessions", on_delete=fields.CASCADE
    )
    state = fields.CharField(max_length=20, default="pending")
    failure_reason = fields.TextField(null=True)
    spawner = fields.CharField(max_length=20, default="local")
    spawner_state = fields.JSONField(default=dict)
    endpoint_host = fields.CharField(max_length=255, null=True)
    endpoint_port = fields.IntField(null=True)
    secret = fields.TextField(null=True)  # encrypted: the gateway presents it to the develop server
    last_activity_at = fields.DatetimeField(null=True)
    started_at = fields.DatetimeField(null=True)
    stopped_at = fields.DatetimeField(null=True)

    class Meta:
        table = "ide_session"
        unique_together = (("user", "project"),)


class Webhook(Timestamped):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="webhooks", on_delete=fields.CASCADE
    )
    name = fields.CharField(max_length=200)
    description = fields.TextField(default="")
    url = fields.CharField(max_length=2000)
    secret = fields.TextField()  # encrypted HMAC key
    event_types = fields.JSONField(default=list)
    job_ids = fields.JSONField(default=list)  # empty = every job
    active = fields.BooleanField(default=True)

    class Meta:
        table = "webhook"


class WebhookDelivery(Model):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="webhook_deliveries", on_delete=fields.CASCADE
    )
    webhook = fields.ForeignKeyField(
        "models.Webhook", related_name="deliveries", on_delete=fields.CASCADE
    )
    event_id = fields.CharField(max_length=100)
    event_type = fields.CharField(max_length=50)
    run = fields.ForeignKeyField(
        "models.Run", related_name="webhook_deliveries", null=True, on_delete=fields.SET_NULL
    )
    payload = fields.TextField()  # the exact body that is signed and sent
    status = fields.CharField(max_length=20, default="pending")  # pending | delivered | failed
    attempts = fields.IntField(default=0)
    next_attempt_at = fields.DatetimeField(null=True, db_index=True)
    last_status_code = fields.IntField(null=True)
    last_error = fields.TextField(null=True)
    created_at = fields.DatetimeField(auto_now_add=True)
    delivered_at = fields.DatetimeField(null=True)

    class Meta:
        table = "webhook_delivery"
        unique_together = (("webhook", "event_id"),)


class AuditEvent(Model):
    id = fields.BigIntField(primary_key=True)
    account = fields.ForeignKeyField(
        "models.Account", related_name="audit_events", on_delete=fields.CASCADE
    )
    actor_user = fields.ForeignKeyField(
        "models.User", related_name="audit_events", null=True, on_delete=fields.SET_NULL
    )
    actor_token = fields.ForeignKeyField(
        "models.Token", related_name="audit_events", null=True, on_delete=fields.SET_NULL
    )
    action = fields.CharField(max_length=100)
    object_type = fields.CharField(max_length=50)
    object_id = fields.BigIntField(null=True)
    details = fields.JSONField(default=dict)
    created_at = fields.DatetimeField(auto_now_add=True)

    class Meta:
        table = "audit_event"
        indexes = (Index(fields=("account_id", "created_at")),)


class SchedulerLease(Model):
    """Which scheduler process holds which role, for /metrics and operators (not for locking)."""

    name = fields.CharField(max_length=100, primary_key=True)
    holder = fields.CharField(max_length=200)
    renewed_at = fields.DatetimeField()

    class Meta:
        table = "scheduler_lease"
