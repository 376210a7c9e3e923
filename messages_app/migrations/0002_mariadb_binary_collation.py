"""On MariaDB/MySQL, compare queue names, keys and leases byte for byte.

The server's default collation (utf8mb4_general_ci) is case-insensitive, so
queue ``Jobs`` would read queue ``jobs``'s messages, and pads with spaces, so
key ``"a "`` would be key ``"a"``. The other databases
compare text exactly already; this does nothing there.
"""

from django.db import migrations

QUEUE_TABLE = "messages_app_queue"
REFERRING_TABLES = ["messages_app_message", "messages_app_idempotencykey"]


def binary_collation(apps, schema_editor):
    connection = schema_editor.connection
    if connection.vendor != "mysql":
        return
    # A column under a foreign key cannot change collation, and the two ends of
    # a key must match: drop the keys, convert the tables, put the keys back.
    keys = []
    with connection.cursor() as cursor:
        for table in REFERRING_TABLES:
            for name, info in connection.introspection.get_constraints(cursor, table).items():
                if info["foreign_key"]:
                    keys.append((table, name, info["columns"][0]))
    for table, name, _ in keys:
        schema_editor.execute(f"ALTER TABLE {table} DROP FOREIGN KEY {name}")
    collation = "utf8mb4_nopad_bin" if connection.mysql_is_mariadb else "utf8mb4_0900_bin"
    for table in [QUEUE_TABLE, *REFERRING_TABLES]:
        schema_editor.execute(
            f"ALTER TABLE {table} CONVERT TO CHARACTER SET utf8mb4 COLLATE {collation}"
        )
    for table, name, column in keys:
        schema_editor.execute(
            f"ALTER TABLE {table} ADD CONSTRAINT {name} "
            f"FOREIGN KEY ({column}) REFERENCES {QUEUE_TABLE} (name)"
        )


class Migration(migrations.Migration):
    # MariaDB cannot roll DDL back; Django refuses it inside a transaction.
    atomic = False
    dependencies = [("messages_app", "0001_initial")]

    operations = [migrations.RunPython(binary_collation, migrations.RunPython.noop)]
