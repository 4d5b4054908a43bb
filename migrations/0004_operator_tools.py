from tortoise import migrations
from tortoise.migrations import operations as ops
from ocs.models import VoucherStatus
from tortoise.fields.base import OnDelete
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('ocs', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='CardBatch',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('label', fields.CharField(default='', max_length=128)),
                ('count', fields.IntField()),
                ('first_number', fields.CharField(max_length=32)),
                ('last_number', fields.CharField(max_length=32)),
                ('initial_credit', fields.BigIntField(default=0)),
                ('pin_length', fields.SmallIntField()),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'card_batch', 'app': 'ocs', 'pk_attr': 'id', 'table_description': 'Calling cards generated together: accounts first_number..last_number with PINs.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='DashboardDay',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('tz', fields.CharField(max_length=64)),
                ('day', fields.CharField(max_length=10)),
                ('tariff_prefix', fields.CharField(max_length=32)),
                ('calls', fields.BigIntField(default=0)),
                ('answered', fields.BigIntField(default=0)),
                ('seconds', fields.BigIntField(default=0)),
                ('revenue', fields.BigIntField(default=0)),
            ],
            options={'table': 'dashboard_day', 'app': 'ocs', 'unique_together': (('tz', 'day', 'tariff_prefix'),), 'pk_attr': 'id', 'table_description': 'Dashboard figures of one finished local day, per tariff prefix (prefix "*" = the'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='VoucherBatch',
            fields=[
                ('id', fields.IntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('label', fields.CharField(default='', max_length=128)),
                ('value', fields.BigIntField()),
                ('count', fields.IntField()),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('voided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_by', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'voucher_batch', 'app': 'ocs', 'pk_attr': 'id', 'table_description': 'N prepaid vouchers of one value, generated together (codes printed from its CSV).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Voucher',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('batch', fields.ForeignKeyField('ocs.VoucherBatch', source_field='batch_id', db_constraint=True, to_field='id', related_name='vouchers', on_delete=OnDelete.RESTRICT)),
                ('serial', fields.CharField(unique=True, max_length=32)),
                ('code_hash', fields.CharField(unique=True, max_length=64)),
                ('status', fields.CharEnumField(default=VoucherStatus.UNUSED, description='UNUSED: unused\nUSED: used\nVOIDED: voided', enum_type=VoucherStatus, max_length=16)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('used_by', fields.ForeignKeyField('ocs.Account', source_field='used_by_id', null=True, db_constraint=True, to_field='id', related_name='vouchers', on_delete=OnDelete.RESTRICT)),
                ('redeemed_by', fields.CharField(default='', max_length=64)),
                ('ledger_entry_id', fields.BigIntField(null=True)),
            ],
            options={'table': 'voucher', 'app': 'ocs', 'indexes': [Index(fields=['batch_id', 'status'])], 'pk_attr': 'id', 'table_description': 'One voucher. The code itself is never stored: only its keyed hash (like PINs).'},
            bases=['Model'],
        ),
        ops.AddIndex(
            model_name='Account',
            index=Index(fields=['balance']),
        ),
        ops.AddIndex(
            model_name='Cdr',
            index=Index(fields=['created_at', 'tariff_prefix', 'duration', 'cost']),
        ),
        ops.AddIndex(
            model_name='Cdr',
            index=Index(fields=['account_id', 'created_at']),
        ),
    ]
