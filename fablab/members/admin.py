from django.contrib import admin

from .models import Certification, MemberProfile, Training


@admin.register(MemberProfile)
class MemberProfileAdmin(admin.ModelAdmin):
    list_display = ["user", "language", "is_programme_officer"]
    list_filter = ["language", "is_programme_officer"]
    search_fields = ["user__username", "user__email"]


@admin.register(Training)
class TrainingAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "validity_days"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Certification)
class CertificationAdmin(admin.ModelAdmin):
    list_display = ["member", "training", "granted_at", "expires_at", "revoked_at"]
    list_filter = ["training"]
    search_fields = ["member__username", "member__email"]
    raw_id_fields = ["member"]
    readonly_fields = ["granted_by", "revoked_by"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.granted_by = request.user
        if "revoked_at" in form.changed_data and obj.revoked_at:
            obj.revoked_by = request.user
        super().save_model(request, obj, form, change)
