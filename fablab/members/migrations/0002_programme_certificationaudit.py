import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0001_initial'),
        ('members', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='CertificationAudit',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('action', models.CharField(choices=[('grant', 'granted'), ('revoke', 'revoked')], max_length=8, verbose_name='action')),
                ('at', models.DateTimeField(default=django.utils.timezone.now, verbose_name='when')),
                ('expires_at', models.DateTimeField(blank=True, null=True, verbose_name='expires at')),
                ('reason', models.CharField(blank=True, max_length=300, verbose_name='reason')),
                ('actor', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='by')),
                ('certification', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='audit', to='members.certification', verbose_name='certification')),
                ('member', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL, verbose_name='member')),
                ('training', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='audit', to='members.training', verbose_name='training')),
            ],
            options={
                'verbose_name': 'certification audit entry',
                'verbose_name_plural': 'certification audit',
                'ordering': ['-at', '-pk'],
            },
        ),
        migrations.CreateModel(
            name='Programme',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(max_length=200, unique=True, verbose_name='name')),
                ('labs', models.ManyToManyField(blank=True, related_name='programmes', to='labs.lab', verbose_name='labs it funds')),
                ('officers', models.ManyToManyField(blank=True, related_name='programmes', to=settings.AUTH_USER_MODEL, verbose_name='programme officers')),
            ],
            options={
                'verbose_name': 'programme',
                'verbose_name_plural': 'programmes',
                'ordering': ['name'],
            },
        ),
    ]
