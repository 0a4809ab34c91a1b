from tortoise import migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Log lines: composite primary key (run, seq), which tortoise models cannot express."""

    dependencies = [("models", "0001_initial")]

    operations = [
        ops.RunSQL(
            [
                """
                CREATE TABLE IF NOT EXISTS log_line (
                    run_id BIGINT NOT NULL REFERENCES run (id) ON DELETE CASCADE,
                    seq INT NOT NULL,
                    account_id BIGINT NOT NULL,
                    step_index INT,
                    ts TIMESTAMPTZ NOT NULL,
                    level VARCHAR(10) NOT NULL DEFAULT 'info',
                    message TEXT NOT NULL,
                    event_name VARCHAR(100),
                    node_id VARCHAR(500),
                    PRIMARY KEY (run_id, seq)
                )
                """,
                "CREATE INDEX IF NOT EXISTS idx_log_line_run_step ON log_line (run_id, step_index, seq)",
                # at most one live develop server per user and project is enforced by the
                # unique (user, project) row; runs in flight are looked up by status often
                "CREATE INDEX IF NOT EXISTS idx_run_active ON run (account_id, job_id, id)"
                " WHERE status < 10",
            ],
            reverse_sql=["DROP INDEX IF EXISTS idx_run_active", "DROP TABLE IF EXISTS log_line"],
        )
    ]
