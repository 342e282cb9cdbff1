from tortoise import migrations
from tortoise.migrations import operations as ops
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('parley', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Media',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('owner', fields.ForeignKeyField('parley.User', source_field='owner_id', db_constraint=True, to_field='id', related_name='media', on_delete=OnDelete.CASCADE)),
                ('kind', fields.CharField(max_length=16)),
                ('source_format', fields.CharField(default='', max_length=8)),
                ('width', fields.IntField(default=0)),
                ('height', fields.IntField(default=0)),
                ('animated', fields.BooleanField(default=False)),
                ('placeholder', fields.CharField(default='', max_length=64)),
                ('bytes', fields.BigIntField(default=0)),
                ('public', fields.BooleanField(default=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'media', 'app': 'parley', 'pk_attr': 'id', 'table_description': 'An uploaded image (its processed variants) or an opaque encrypted blob.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MediaUse',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('media', fields.ForeignKeyField('parley.Media', source_field='media_id', db_constraint=True, to_field='id', related_name='uses', on_delete=OnDelete.CASCADE)),
                ('conversation', fields.ForeignKeyField('parley.Conversation', source_field='conversation_id', db_constraint=True, to_field='id', related_name='media_uses', on_delete=OnDelete.CASCADE)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'media_uses', 'app': 'parley', 'unique_together': (('media', 'conversation'),), 'pk_attr': 'id', 'table_description': 'A conversation a media item was posted in (or uploaded for): its members may fetch it.'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='MediaVariant',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('media', fields.ForeignKeyField('parley.Media', source_field='media_id', db_constraint=True, to_field='id', related_name='variants', on_delete=OnDelete.CASCADE)),
                ('name', fields.CharField(max_length=16)),
                ('key', fields.CharField(db_index=True, max_length=64)),
                ('content_type', fields.CharField(max_length=32)),
                ('width', fields.IntField(default=0)),
                ('height', fields.IntField(default=0)),
                ('bytes', fields.BigIntField()),
            ],
            options={'table': 'media_variants', 'app': 'parley', 'unique_together': (('media', 'name'),), 'pk_attr': 'id', 'table_description': 'One stored rendition of a media item, addressed by the SHA-256 of its bytes.'},
            bases=['Model'],
        ),
        ops.AddField(
            model_name='User',
            name='avatar_media_id',
            field=fields.UUIDField(null=True),
        ),
    ]
