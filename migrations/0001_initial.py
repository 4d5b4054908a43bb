from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from ocs.models import AccountStatus, LedgerKind, SessionState
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='Account',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('number', fields.CharField(unique=True, max_length=32)),
                ('name', fields.CharField(default='', max_length=128)),
                ('pin_index', fields.CharField(null=True, unique=True, max_length=64)),
                ('language', fields.CharField(default='FR', max_length=8)),
                ('status', fields.CharEnumField(default=AccountStatus.ACTIVE, description='ACTIVE: active\nBLOCKED: blocked', enum_type=AccountStatus, max_length=16)),
                ('balance', fields.BigIntField(default=0)),
                ('reserved', fields.BigIntField(default=0)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'account', 'app': 'ocs', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ApiKey',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('name', fields.CharField(max_length=64)),
                ('prefix', fields.CharField(unique=True, max_length=16)),
                ('key_hash', fields.CharField(max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('revoked', fields.BooleanField(default=False)),
            ],
            options={'table': 'api_key', 'app': 'ocs', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='BillingRun',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('period_end', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('last_ledger_id', fields.BigIntField(default=0)),
                ('filename', fields.CharField(default='', max_length=128)),
                ('status', fields.CharField(default='running', max_length=16)),
                ('accounts', fields.IntField(default=0)),
                ('lines', fields.IntField(default=0)),
            ],
            options={'table': 'billing_run', 'app': 'ocs', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CallerId',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('ocs.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='caller_ids', on_delete=OnDelete.CASCADE)),
                ('number', fields.CharField(unique=True, max_length=64)),
            ],
            options={'table': 'caller_id', 'app': 'ocs', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Cdr',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('ocs.Account', source_field='account_id', null=True, db_constraint=True, to_field='id', related_name='cdrs', on_delete=OnDelete.SET_NULL)),
                ('account_number', fields.CharField(default='', db_index=True, max_length=32)),
                ('session_id', fields.CharField(db_index=True, max_length=255)),
                ('call_id', fields.CharField(default='', max_length=255)),
                ('calling', fields.CharField(default='', max_length=64)),
                ('dialed', fields.CharField(default='', db_index=True, max_length=64)),
                ('started_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('connect_delay', fields.IntField(null=True)),
                ('duration', fields.IntField(default=0)),
                ('cost', fields.BigIntField(default=0)),
                ('tariff_prefix', fields.CharField(default='', max_length=32)),
                ('end_reason', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('billing_run', fields.ForeignKeyField('ocs.BillingRun', source_field='billing_run_id', null=True, db_constraint=True, to_field='id', related_name='cdrs', on_delete=OnDelete.SET_NULL)),
            ],
            options={'table': 'cdr', 'app': 'ocs', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='CreditSession',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session_id', fields.CharField(unique=True, max_length=255)),
                ('account', fields.ForeignKeyField('ocs.Account', source_field='account_id', null=True, db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.SET_NULL)),
                ('state', fields.CharEnumField(default=SessionState.OPEN, description='OPEN: open\nCLOSED: closed', enum_type=SessionState, max_length=16)),
                ('peer', fields.CharField(default='', max_length=255)),
                ('calling', fields.CharField(default='', max_length=64)),
                ('called', fields.CharField(default='', max_length=64)),
                ('tariff_prefix', fields.CharField(default='', max_length=32)),
                ('rate', fields.IntField(default=0)),
                ('reserved', fields.BigIntField(default=0)),
                ('used_seconds', fields.IntField(default=0)),
                ('cost', fields.BigIntField(default=0)),
                ('last_request_number', fields.IntField(default=0)),
                ('last_answer', fields.JSONField(null=True, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('end_reason', fields.CharField(default='', max_length=64)),
            ],
            options={'table': 'credit_session', 'app': 'ocs', 'pk_attr': 'id', 'table_description': 'A live or finished Diameter credit-control session (one call).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DidMapping',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('ocs.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='dids', on_delete=OnDelete.CASCADE)),
                ('did', fields.CharField(max_length=64)),
                ('forward_to', fields.CharField(max_length=64)),
            ],
            options={'table': 'did_mapping', 'app': 'ocs', 'unique_together': (('account', 'did'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='LedgerEntry',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('ocs.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='ledger', on_delete=OnDelete.RESTRICT)),
                ('kind', fields.CharEnumField(description='CREDIT: CREDIT\nCALL: CALL\nADJUST: ADJUST\nREFUND: REFUND', enum_type=LedgerKind, max_length=16)),
                ('amount', fields.BigIntField()),
                ('balance_after', fields.BigIntField()),
                ('reference', fields.CharField(default='', max_length=255)),
                ('actor', fields.CharField(default='', max_length=64)),
                ('note', fields.CharField(default='', max_length=255)),
                ('dialed', fields.CharField(default='', max_length=64)),
                ('duration', fields.IntField(default=0)),
                ('created_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'ledger_entry', 'app': 'ocs', 'indexes': [Index(fields=['account_id', 'id'])], 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Setting',
            fields=[
                ('key', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('value', fields.JSONField(encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
            ],
            options={'table': 'setting', 'app': 'ocs', 'pk_attr': 'key'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StatementBalance',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('run', fields.ForeignKeyField('ocs.BillingRun', source_field='run_id', db_constraint=True, to_field='id', related_name='balances', on_delete=OnDelete.CASCADE)),
                ('account', fields.ForeignKeyField('ocs.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='statement_balances', on_delete=OnDelete.CASCADE)),
                ('total', fields.BigIntField()),
            ],
            options={'table': 'statement_balance', 'app': 'ocs', 'unique_together': (('run', 'account'),), 'pk_attr': 'id', 'table_description': "Closing balance of an account at a billing run: the next run's REPORT line."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Tariff',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('prefix', fields.CharField(unique=True, max_length=32)),
                ('h1_rate', fields.IntField()),
                ('h2_begin', fields.SmallIntField(default=0)),
                ('h2_end', fields.SmallIntField(default=0)),
                ('h2_rate', fields.IntField(default=0)),
                ('initial_block', fields.IntField(default=1)),
                ('increment', fields.IntField(default=1)),
                ('connection_charge', fields.IntField(default=0)),
                ('barred', fields.BooleanField(default=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'tariff', 'app': 'ocs', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
