from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from ocs.models import OperatorRole
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('ocs', '0004_ivr_lockout')]

    initial = False

    # Operators with roles, the audit log, login throttling, API key roles (issue 10/13).
    # The single admin password of earlier versions becomes the first operator, "admin".

    operations = [
        ops.CreateModel(
            name='AuditEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('actor', fields.CharField(db_index=True, max_length=64)),
                ('action', fields.CharField(db_index=True, max_length=64)),
                ('target', fields.CharField(default='', db_index=True, max_length=255)),
                ('details', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('address', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'audit_entry', 'app': 'ocs', 'pk_attr': 'id', 'table_description': 'Who changed what and when (ocs.audit.record writes these).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LoginThrottle',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=200)),
                ('count', fields.IntField(default=0)),
                ('expires', fields.BigIntField(db_index=True)),
            ],
            options={'table': 'login_throttle', 'app': 'ocs', 'pk_attr': 'key', 'table_description': 'Login attempts per fixed time window, for one key (user:<name>, addr:<ip>, global).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Operator',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(unique=True, max_length=64)),
                ('role', fields.CharEnumField(default=OperatorRole.READONLY, description='READONLY: readonly\nOPERATOR: operator\nADMIN: admin', enum_type=OperatorRole, max_length=16)),
                ('password', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('disabled', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_login_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'operator', 'app': 'ocs', 'pk_attr': 'id', 'table_description': 'A person who logs in to the web UI: own password (scrypt record), own role.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='ApiKey',
            name='role',
            field=fields.CharEnumField(default=OperatorRole.ADMIN, description='READONLY: readonly\nOPERATOR: operator\nADMIN: admin', db_default='admin', enum_type=OperatorRole, max_length=16),
        ),
        ops.RunSQL(
            [
                'INSERT INTO "operator" ("name", "role", "password", "disabled", "created_at") '
                "SELECT 'admin', 'admin', \"value\", FALSE, CURRENT_TIMESTAMP FROM \"setting\" "
                "WHERE \"key\" = 'admin_password'",
                'DELETE FROM "setting" WHERE "key" = \'admin_password\'',
            ],
            reverse_sql=[
                'INSERT INTO "setting" ("key", "value") SELECT \'admin_password\', "password" '
                'FROM "operator" WHERE "name" = \'admin\'',
            ],
        ),
    ]
