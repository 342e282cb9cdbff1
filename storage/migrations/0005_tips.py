from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('parley', '0004_social')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Tip',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('sender', fields.ForeignKeyField('parley.User', source_field='sender_id', db_constraint=True, to_field='id', related_name='tips_sent', on_delete=OnDelete.CASCADE)),
                ('recipient', fields.ForeignKeyField('parley.User', source_field='recipient_id', db_constraint=True, to_field='id', related_name='tips_received', on_delete=OnDelete.CASCADE)),
                ('conversation_id', fields.UUIDField(null=True)),
                ('chain_id', fields.BigIntField()),
                ('from_address', fields.CharField(max_length=42)),
                ('to_address', fields.CharField(max_length=42)),
                ('amount_eth', fields.CharField(max_length=40)),
                ('value_wei', fields.CharField(max_length=40)),
                ('nonce', fields.BigIntField()),
                ('gas_limit', fields.BigIntField()),
                ('max_fee_per_gas', fields.CharField(max_length=40)),
                ('max_priority_fee_per_gas', fields.CharField(max_length=40)),
                ('state', fields.CharField(default='prepared', max_length=16)),
                ('tx_hash', fields.CharField(null=True, unique=True, max_length=66)),
                ('verified', fields.BooleanField(default=False)),
                ('block_number', fields.BigIntField(null=True)),
                ('confirmations', fields.IntField(default=0)),
                ('reason', fields.CharField(default='', max_length=200)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
                ('submitted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'tips', 'app': 'parley', 'indexes': [Index(fields=['state', 'updated_at']), Index(fields=['sender_id', 'created_at']), Index(fields=['recipient_id', 'created_at'])], 'pk_attr': 'id', 'table_description': "Seed 003: an ETH transfer from one user's wallet to another's, prepared here."},
            bases=['Model'],
        ),
        ops.AlterModelOptions(
            name='Profile',
            options={'table': 'profiles', 'app': 'parley', 'pk_attr': 'user_id', 'table_description': 'What others may see of a user beyond the names: age, gender, interests, status.'},
        ),
    ]
