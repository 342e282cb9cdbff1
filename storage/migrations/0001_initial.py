from tortoise import migrations
from tortoise.migrations import operations as ops
from orjson import loads
from tortoise.fields.base import OnDelete
from tortoise.fields.data import JSON_DUMPS
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    initial = True

    operations = [
        ops.CreateModel(
            name='User',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('code', fields.CharField(unique=True, max_length=32)),
                ('nickname', fields.CharField(default='', max_length=64)),
                ('first_name', fields.CharField(default='', max_length=100)),
                ('last_name', fields.CharField(default='', max_length=100)),
                ('login', fields.CharField(null=True, max_length=64)),
                ('login_key', fields.CharField(null=True, unique=True, max_length=64)),
                ('password_hash', fields.CharField(null=True, max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'users', 'app': 'parley', 'pk_attr': 'id', 'table_description': 'A person. Identities (phone, e-mail, wallets) hang off it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='ActionToken',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='action_tokens', on_delete=OnDelete.CASCADE)),
                ('purpose', fields.CharField(max_length=16)),
                ('token_hash', fields.CharField(unique=True, max_length=64)),
                ('email', fields.CharField(null=True, max_length=255)),
                ('email_display', fields.CharField(null=True, max_length=255)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'action_tokens', 'app': 'parley', 'pk_attr': 'id', 'table_description': 'A single-use e-mailed link: verify an address, or reset a password (seeds 003, 004).'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Conversation',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('kind', fields.CharField(max_length=16)),
                ('mode', fields.CharField(max_length=16)),
                ('direct_key', fields.CharField(null=True, unique=True, max_length=100)),
                ('title', fields.CharField(default='', max_length=128)),
                ('last_seq', fields.BigIntField(default=0)),
                ('created_by', fields.ForeignKeyField('parley.User', source_field='created_by_id', null=True, db_constraint=True, to_field='id', related_name='created_conversations', on_delete=OnDelete.SET_NULL)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'conversations', 'app': 'parley', 'pk_attr': 'id', 'table_description': 'A chat. Seed 001: every chat is a conversation, and direct chats have two members.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Identity',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='identities', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=16)),
                ('value', fields.CharField(max_length=255)),
                ('display', fields.CharField(default='', max_length=255)),
                ('verified_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'identities', 'app': 'parley', 'unique_together': (('kind', 'value'),), 'pk_attr': 'id', 'table_description': 'One way to sign in, proven and owned by exactly one user.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Member',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('parley.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='members', on_delete=OnDelete.CASCADE)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='memberships', on_delete=OnDelete.CASCADE)),
                ('role', fields.CharField(default='member', max_length=16)),
                ('joined_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'conversation_members', 'app': 'parley', 'unique_together': (('conversation', 'user'),), 'pk_attr': 'id', 'table_description': "A user's membership of a conversation."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Message',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('conversation', fields.ForeignKeyField('parley.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='messages', on_delete=OnDelete.CASCADE)),
                ('seq', fields.BigIntField()),
                ('sender', fields.ForeignKeyField('parley.User', source_field='sender_id', null=True, db_constraint=True, to_field='id', related_name='sent_messages', on_delete=OnDelete.SET_NULL)),
                ('client_msg_id', fields.CharField(max_length=64)),
                ('kind', fields.CharField(max_length=16)),
                ('body', fields.JSONField(encoder=JSON_DUMPS, decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('edited_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('deleted_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'messages', 'app': 'parley', 'unique_together': (('conversation', 'seq'), ('conversation', 'sender', 'client_msg_id')), 'pk_attr': 'id', 'table_description': 'A message: gap-free ``seq`` per conversation, idempotent by ``client_msg_id``.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Session',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='sessions', on_delete=OnDelete.CASCADE)),
                ('device_name', fields.CharField(default='', max_length=128)),
                ('user_agent', fields.CharField(default='', max_length=256)),
                ('ip', fields.CharField(default='', max_length=64)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_used_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('revoked_reason', fields.CharField(null=True, max_length=32)),
                ('refresh_hash', fields.CharField(unique=True, max_length=64)),
            ],
            options={'table': 'sessions', 'app': 'parley', 'pk_attr': 'id', 'table_description': 'A signed-in device. Its refresh tokens form one rotation family.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='Device',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', db_constraint=True, to_field='id', related_name='devices', on_delete=OnDelete.CASCADE)),
                ('session', fields.ForeignKeyField('parley.Session', source_field='session_id', null=True, db_constraint=True, to_field='id', related_name='devices', on_delete=OnDelete.SET_NULL)),
                ('name', fields.CharField(default='', max_length=128)),
                ('signing_key', fields.CharField(unique=True, max_length=64)),
                ('agreement_key', fields.CharField(max_length=64)),
                ('proof', fields.CharField(max_length=128)),
                ('reg_timestamp', fields.BigIntField()),
                ('reg_sign', fields.CharField(max_length=128)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('revoked_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'devices', 'app': 'parley', 'pk_attr': 'id', 'table_description': "A device's public keys, certified by the server's CA (seed 000)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SpentRefreshToken',
            fields=[
                ('token_hash', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('session', fields.ForeignKeyField('parley.Session', source_field='session_id', db_constraint=True, to_field='id', related_name='spent_refresh_tokens', on_delete=OnDelete.CASCADE)),
                ('spent_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'spent_refresh_tokens', 'app': 'parley', 'pk_attr': 'token_hash', 'table_description': 'A refresh token already exchanged. Presented again, it was stolen or replayed.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='WalletChallenge',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('nonce', fields.CharField(unique=True, max_length=64)),
                ('chain', fields.CharField(max_length=16)),
                ('address', fields.CharField(max_length=128)),
                ('display', fields.CharField(max_length=128)),
                ('message', fields.TextField(unique=False)),
                ('purpose', fields.CharField(max_length=16)),
                ('user', fields.ForeignKeyField('parley.User', source_field='user_id', null=True, db_constraint=True, to_field='id', related_name='wallet_challenges', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('used_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'wallet_challenges', 'app': 'parley', 'pk_attr': 'id', 'table_description': "Seed 004's auth_pk_challenge: a message to sign, single use, expiring."},
            bases=['Model'],
        ),
    ]
