from django.db import migrations, models


class Migration(migrations.Migration):
    """The actions a machine's bridge declares it carries out (``status.capabilities``)."""

    dependencies = [
        ("devices", "0003_command_rows"),
    ]

    operations = [
        migrations.AddField(
            model_name="machinestatus",
            name="capabilities",
            field=models.JSONField(blank=True, null=True, verbose_name="capabilities"),
        ),
    ]
