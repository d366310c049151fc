"""Every profile flagged ``is_programme_officer`` becomes an officer of one programme funding every lab.

So that no officer loses what they could see when the flag goes (0004).
Backwards, every officer of any programme gets the flag again.
"""

from django.db import migrations

PROGRAMME_NAME = "Programme"


def flags_to_programme(apps, schema_editor):
    MemberProfile = apps.get_model("members", "MemberProfile")
    Programme = apps.get_model("members", "Programme")
    Lab = apps.get_model("labs", "Lab")
    officer_ids = list(
        MemberProfile.objects.filter(is_programme_officer=True).values_list("user_id", flat=True)
    )
    if not officer_ids:
        return
    programme, _created = Programme.objects.get_or_create(name=PROGRAMME_NAME)
    programme.labs.add(*Lab.objects.all())
    programme.officers.add(*officer_ids)


def programme_to_flags(apps, schema_editor):
    MemberProfile = apps.get_model("members", "MemberProfile")
    Programme = apps.get_model("members", "Programme")
    officer_ids = Programme.officers.through.objects.values_list("user_id", flat=True)
    MemberProfile.objects.filter(user_id__in=officer_ids).update(is_programme_officer=True)


class Migration(migrations.Migration):

    dependencies = [
        ('labs', '0001_initial'),
        ('members', '0002_programme_certificationaudit'),
    ]

    operations = [
        migrations.RunPython(flags_to_programme, programme_to_flags),
    ]
