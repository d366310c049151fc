"""The Django admin is for network administrators (active superusers) only.

Lab managers do everything they need on the manager pages (``/manage/``),
so the whole admin site refuses anyone else, whatever their ``is_staff`` flag
or model permissions say. Certifications are granted and revoked on the
manager pages only, through :mod:`fablab.members.services`, which writes the
audit; here they and their audit are read-only.
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from . import privacy, roles
from .models import Certification, CertificationAudit, MemberProfile, Programme, Training


def network_admins_only(request) -> bool:
    """``AdminSite.has_permission``: only network administrators get past the admin's login."""
    return roles.is_network_admin(request.user)


# Every admin view (index, app lists, each ModelAdmin's pages) asks the site first.
admin.site.has_permission = network_admins_only


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(MemberProfile)
class MemberProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "language"]
    list_filter = ["language"]
    search_fields = ["user__username", "user__email"]
    # The statistics answers are the member's alone: nobody sees them with a name, administrators
    # included (the reports count them in groups only).
    exclude = ["statistics_consent", "gender", "birth_year", "age_band", "user_category"]
    actions = ["erase_members"]

    @admin.action(description=_("Erase the selected members (cannot be undone)"))
    def erase_members(self, request, queryset):
        erased = sum(privacy.erase_member(profile.user, by=request.user) for profile in queryset)
        self.message_user(
            request, ngettext("%(n)d member erased.", "%(n)d members erased.", erased) % {"n": erased}
        )


@admin.register(Programme)
class ProgrammeAdmin(admin.ModelAdmin):
    list_display = ["name"]
    search_fields = ["name"]
    filter_horizontal = ["labs", "officers"]


@admin.register(Training)
class TrainingAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "validity_days"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Certification)
class CertificationAdmin(ReadOnlyAdmin):
    list_display = ["member", "training", "granted_at", "expires_at", "revoked_at"]
    list_filter = ["training"]
    search_fields = ["member__username", "member__email"]


@admin.register(CertificationAudit)
class CertificationAuditAdmin(ReadOnlyAdmin):
    list_display = ["at", "action", "training", "member", "actor", "expires_at", "reason"]
    list_filter = ["action", "training"]
    date_hierarchy = "at"
