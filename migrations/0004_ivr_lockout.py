from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from tortoise import fields

from migrations._columns import AddFilledColumn
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('ocs', '0003_operator_tools')]

    initial = False

    operations = [
        ops.CreateModel(
            name='IvrFailure',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('caller', fields.CharField(max_length=64)),
                ('kind', fields.CharField(default='pin', max_length=16)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'ivr_failure', 'app': 'ocs', 'indexes': [Index(fields=['caller', 'created_at'])], 'pk_attr': 'id', 'table_description': 'A failed PIN (or voucher) attempt on the IVR: the lockout counts these.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IvrLock',
            fields=[
                ('caller', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('locked_until', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('failures', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'ivr_lock', 'app': 'ocs', 'pk_attr': 'caller', 'table_description': 'A caller ID locked out of PIN / voucher entry until `locked_until`.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IvrLogLine',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('call_id', fields.CharField(db_index=True, max_length=255)),
                ('step', fields.IntField()),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('line', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'ivr_log', 'app': 'ocs', 'pk_attr': 'id', 'table_description': 'One service-log line: a dialog step of an IVR call (`ivr_bridge.servicelog`).'},
            bases=['Model'],
        ),
        AddFilledColumn(
            model_name='Account',
            name='ivr_pin_required',
            field=fields.BooleanField(default=False),
            sql_type='BOOLEAN',
            default_sql='FALSE',
        ),
    ]
