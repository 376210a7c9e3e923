"""message_visible_idx (queue, dead, visible_at), on SQLite and MariaDB only.

It keeps the counts of /info and /queues to index ranges (what is not
deliverable yet) at any backlog. PostgreSQL does without: every claim changes
visible_at, and an index on it would stop those updates being HOT, so each
claim would add entries to every index and the head of the queue would fill
with dead ones (the bench measured the claim loop three times slower).
"""

from django.db import migrations

CREATE = (
    "CREATE INDEX message_visible_idx ON messages_app_message (queue_id, dead, visible_at)"
)


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        schema_editor.execute(CREATE)


def drop_index(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "mysql":
        schema_editor.execute("DROP INDEX message_visible_idx ON messages_app_message")
    elif vendor != "postgresql":
        schema_editor.execute("DROP INDEX message_visible_idx")


class Migration(migrations.Migration):
    # MariaDB cannot roll DDL back; Django refuses it inside a transaction.
    atomic = False
    dependencies = [("messages_app", "0002_mariadb_binary_collation")]

    operations = [migrations.RunPython(create_index, drop_index)]
