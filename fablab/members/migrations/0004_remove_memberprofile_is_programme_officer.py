from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('members', '0003_officers_into_a_programme'),
    ]

    operations = [
        migrations.RemoveField(
            model_name='memberprofile',
            name='is_programme_officer',
        ),
    ]
