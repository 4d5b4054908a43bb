from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise import fields

from migrations._columns import AddFilledColumn, DropColumnIndex, RetypeColumn

async def _sqlite_expiry_index(apps, schema_editor) -> None:
    # The initial schema created this index on PostgreSQL only; the Tcc sweep needs it.
    if schema_editor.client.capabilities.dialect == "sqlite":
        await schema_editor.client.execute_script(
            "CREATE INDEX IF NOT EXISTS idx_credit_session_expires ON credit_session (expires_at)"
        )


class Migration(migrations.Migration):
    dependencies = [('ocs', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CcAnswer',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session_id', fields.CharField(max_length=255)),
                ('request_type', fields.SmallIntField()),
                ('request_number', fields.BigIntField()),
                ('answer', fields.TextField(unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'cc_answer', 'app': 'ocs', 'unique_together': (('session_id', 'request_type', 'request_number'),), 'pk_attr': 'id', 'table_description': 'Every credit-control answer given, so that any copy of a request, reaching any OCS'},
            bases=['Model'],
        ),
        ops.AlterField(
            model_name='CreditSession',
            name='last_request_number',
            field=fields.BigIntField(default=0),
        ),
        AddFilledColumn(
            model_name='CreditSession',
            name='killed',
            field=fields.BooleanField(default=False),
            sql_type='BOOLEAN',
            default_sql='FALSE',
        ),
        ops.RenameField(
            model_name='CreditSession', old_name='last_answer', new_name='charging_state'
        ),
        # JSON text, not jsonb: written on every request, read only by the charging core.
        RetypeColumn(
            model_name='CreditSession',
            name='charging_state',
            field=fields.TextField(null=True, unique=False),
            postgres_sql='ALTER TABLE credit_session ALTER COLUMN charging_state TYPE TEXT'
            ' USING charging_state::TEXT',
        ),
        # Closed sessions have no expiry any more: the Tcc sweep's index scan sees open ones.
        ops.RunSQL("UPDATE credit_session SET expires_at = NULL WHERE state = 'closed'"),
        # Open sessions a crashed orphan sweep had claimed (expires_at NULL, issue 13) were
        # never closed: make them due, the Tcc sweep settles them.
        ops.RunSQL(
            "UPDATE credit_session SET expires_at = updated_at"
            " WHERE state = 'open' AND expires_at IS NULL"
        ),
        ops.RunPython(_sqlite_expiry_index),
        # Every call writes a CDR: no index that nothing can use (a prefix LIKE cannot).
        DropColumnIndex(
            model_name='Cdr',
            name='dialed',
            field=fields.CharField(default='', max_length=64),
            index='idx_cdr_dialed_b11a98',
        ),
    ]
