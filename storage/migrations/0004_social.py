from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields
from tortoise.indexes import Index

class Migration(migrations.Migration):
    dependencies = [('parley', '0003_search')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Block',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('blocker', fields.ForeignKeyField('parley.User', source_field='blocker_id', db_constraint=True, to_field='id', related_name='blocks_made', on_delete=OnDelete.CASCADE)),
                ('blocked', fields.ForeignKeyField('parley.User', source_field='blocked_id', db_index=True, db_constraint=True, to_field='id', related_name='blocks_received', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'blocks', 'app': 'parley', 'unique_together': (('blocker', 'blocked'),), 'pk_attr': 'id', 'table_description': '``blocker`` no longer receives chat requests or direct messages from ``blocked``.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ChatRequest',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('sender', fields.ForeignKeyField('parley.User', source_field='sender_id', db_constraint=True, to_field='id', related_name='chat_requests_sent', on_delete=OnDelete.CASCADE)),
                ('recipient', fields.ForeignKeyField('parley.User', source_field='recipient_id', db_constraint=True, to_field='id', related_name='chat_requests_received', on_delete=OnDelete.CASCADE)),
                ('text', fields.CharField(default='', max_length=500)),
                ('mode', fields.CharField(default='encrypted', max_length=16)),
                ('state', fields.CharField(default='pending', max_length=16)),
                ('conversation_id', fields.UUIDField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('decided_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'chat_requests', 'app': 'parley', 'indexes': [Index(fields=['recipient_id', 'state']), Index(fields=['sender_id', 'state'])], 'pk_attr': 'id', 'table_description': 'Seed 003: a request to chat. Accepting it opens a direct conversation.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Contact',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('parley.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='address_book', on_delete=OnDelete.CASCADE)),
                ('phone_hash', fields.CharField(db_index=True, max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'contacts', 'app': 'parley', 'unique_together': (('owner', 'phone_hash'),), 'pk_attr': 'id', 'table_description': "A number in a user's address book, kept only as HMAC-SHA256(server secret, E.164)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Event',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=16)),
                ('payload', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'events', 'app': 'parley', 'pk_attr': 'id', 'table_description': "The outbox (seed 000's log): written in the transaction of the change it records."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='IndexerState',
            fields=[
                ('name', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=32)),
                ('position', fields.BigIntField(default=0)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'indexer_state', 'app': 'parley', 'pk_attr': 'name', 'table_description': 'How far a consumer of the outbox has got.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='PhoneDirectory',
            fields=[
                ('phone_hash', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='phone_hashes', on_delete=OnDelete.CASCADE)),
            ],
            options={'table': 'phone_directory', 'app': 'parley', 'pk_attr': 'phone_hash', 'table_description': 'Keyed hashes of verified phone numbers, for matching address books in one query.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Profile',
            fields=[
                ('user', fields.OneToOneField('parley.User', source_field='user_id', primary_key=True, db_index=True, db_constraint=True, to_field='id', related_name='profile', on_delete=OnDelete.CASCADE)),
                ('age', fields.IntField(null=True)),
                ('gender', fields.CharField(default='', max_length=16)),
                ('interests', fields.JSONField(default=list, encoder=JSON_DUMPS, decoder=loads)),
                ('visibility', fields.CharField(default='everyone', max_length=16)),
                ('status_state', fields.CharField(default='', max_length=16)),
                ('status_text', fields.CharField(default='', max_length=140)),
                ('status_expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('status_updated_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'profiles', 'app': 'parley', 'pk_attr': 'user_id', 'table_description': 'What others may see of a user beyond the names: age, gender, interests, status.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='StatusChange',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='status_changes', on_delete=OnDelete.CASCADE)),
                ('state', fields.CharField(max_length=16)),
                ('text', fields.CharField(default='', max_length=140)),
                ('expires_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'status_changes', 'app': 'parley', 'indexes': [Index(fields=['user_id', 'id'])], 'pk_attr': 'id', 'table_description': "One status change, kept for the contacts' update feed."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='UserContact',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('parley.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='contacts_out', on_delete=OnDelete.CASCADE)),
                ('contact', fields.ForeignKeyField('parley.User', source_field='contact_id', db_index=True, db_constraint=True, to_field='id', related_name='contacts_in', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'user_contacts', 'app': 'parley', 'unique_together': (('owner', 'contact'),), 'pk_attr': 'id', 'table_description': "Seed 002's user_contact: the owner's address book holds a number of ``contact``."},
            bases=['Model'],
        ),
    ]
