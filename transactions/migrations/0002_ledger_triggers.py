from pathlib import Path

from django.db import migrations

SQL_DIR = Path(__file__).resolve().parent.parent / "sql"


def _run(filename):
    def run(apps, schema_editor):
        # RAISE uses % placeholders: escape them for the driver.
        sql = (SQL_DIR / filename).read_text().replace("%", "%%")
        schema_editor.execute(sql, params=())

    return run


class Migration(migrations.Migration):
    dependencies = [("transactions", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run("ledger_triggers.sql"), _run("ledger_triggers_reverse.sql")
        ),
    ]
