"""Initiatives and trainers in the admin (network administrators). Sessions are read-only here:
scheduling goes through :mod:`fablab.trainings.services` (the machines' holds, the seats)."""

from django.contrib import admin

from .models import Initiative, InitiativeParticipation, Registration, Trainer, TrainingSession


@admin.register(Initiative)
class InitiativeAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "programme"]
    prepopulated_fields = {"slug": ["name"]}


@admin.register(Trainer)
class TrainerAdmin(admin.ModelAdmin):
    list_display = ["member", "lab", "granted_by", "granted_at"]
    list_filter = ["lab"]


@admin.register(TrainingSession)
class TrainingSessionAdmin(admin.ModelAdmin):
    list_display = ["training", "lab", "start", "end", "seats", "cancelled_at"]
    list_filter = ["lab"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Registration)
class RegistrationAdmin(admin.ModelAdmin):
    list_display = ["session", "member", "status", "attended"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


admin.site.register(InitiativeParticipation)
