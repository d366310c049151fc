from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from .models import (
    Alert,
    Bridge,
    Command,
    MachineLink,
    MachineStatus,
    PowerPlug,
    ServiceInterval,
    ServiceRecord,
    UsageSession,
)
from .mqtt_auth import set_bridge_password, set_plug_password


@admin.register(Bridge)
class BridgeAdmin(admin.ModelAdmin):
    list_display = ["slug", "lab", "online", "online_changed_at"]
    list_filter = ["lab", "online"]
    readonly_fields = ["online", "online_changed_at"]
    actions = ["new_password"]

    @admin.action(description=_("Issue a new MQTT password (shown once; run mqtt_sync afterwards)"))
    def new_password(self, request, queryset):
        for bridge in queryset:
            password = set_bridge_password(bridge)
            self.message_user(request, f"{bridge.slug}: {password}", messages.WARNING)


@admin.register(MachineLink)
class MachineLinkAdmin(admin.ModelAdmin):
    list_display = ["machine", "bridge", "adapter", "interlock", "telemetry_interval_s"]
    list_filter = ["bridge", "adapter", "interlock"]


@admin.register(PowerPlug)
class PowerPlugAdmin(admin.ModelAdmin):
    list_display = ["machine", "kind", "topic", "mqtt_username"]
    actions = ["new_password"]

    @admin.action(description=_("Issue a new MQTT password (shown once; run mqtt_sync afterwards)"))
    def new_password(self, request, queryset):
        for plug in queryset:
            password = set_plug_password(plug)
            self.message_user(request, f"{plug.mqtt_username}: {password}", messages.WARNING)


@admin.register(MachineStatus)
class MachineStatusAdmin(admin.ModelAdmin):
    list_display = ["machine", "state", "since", "online", "enabled", "job_name", "progress_pct"]
    list_filter = ["state", "online"]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(UsageSession)
class UsageSessionAdmin(admin.ModelAdmin):
    list_display = ["machine", "started_at", "ended_at", "job_name", "outcome", "energy_wh"]
    list_filter = ["outcome", "machine__lab"]
    date_hierarchy = "started_at"


@admin.register(Alert)
class AlertAdmin(admin.ModelAdmin):
    list_display = ["machine", "kind", "message", "raised_at", "cleared_at"]
    list_filter = ["kind", "machine__lab"]


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = ["machine", "action", "issued_by", "issued_at", "result", "error_code"]
    list_filter = ["action", "result"]

    def has_change_permission(self, request, obj=None):
        return False


class ServiceRecordInline(admin.TabularInline):
    model = ServiceRecord
    extra = 0
    fields = ["at", "by", "hours", "note"]
    readonly_fields = fields  # a record is never edited; services are recorded on the machine's page
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


@admin.register(ServiceInterval)
class ServiceIntervalAdmin(admin.ModelAdmin):
    list_display = ["machine", "name", "every_hours", "basis", "counted_from"]
    list_filter = ["basis", "machine__lab"]
    search_fields = ["name", "machine__name"]
    inlines = [ServiceRecordInline]


@admin.register(ServiceRecord)
class ServiceRecordAdmin(admin.ModelAdmin):
    list_display = ["interval", "at", "by", "hours", "note"]
    list_filter = ["interval__machine__lab"]
    date_hierarchy = "at"

    def has_change_permission(self, request, obj=None):
        return False  # a record is never edited (devices.models.ServiceRecord)
