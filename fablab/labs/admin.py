from django.contrib import admin

from .models import Closure, Lab, Machine, MachineType, MaintenanceWindow, OpeningHours


class OpeningHoursInline(admin.TabularInline):
    model = OpeningHours
    extra = 0


class ClosureInline(admin.TabularInline):
    model = Closure
    extra = 0


@admin.register(Lab)
class LabAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "time_zone"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["managers"]
    inlines = [OpeningHoursInline, ClosureInline]


@admin.register(MachineType)
class MachineTypeAdmin(admin.ModelAdmin):
    list_display = ["name", "slug"]


class MaintenanceWindowInline(admin.TabularInline):
    model = MaintenanceWindow
    extra = 0
    exclude = ["created_by"]


@admin.register(Machine)
class MachineAdmin(admin.ModelAdmin):
    list_display = ["name", "lab", "machine_type", "bookable", "required_training", "approval_required"]
    list_filter = ["lab", "machine_type", "bookable", "approval_required"]
    search_fields = ["name", "slug", "model"]
    inlines = [MaintenanceWindowInline]
    fieldsets = [
        (None, {"fields": ["lab", "slug", "name", "machine_type", "model", "bookable", "required_training"]}),
        (
            "Booking policy",
            {
                "fields": [
                    "slot_minutes",
                    "min_duration_minutes",
                    "max_duration_minutes",
                    "min_notice_minutes",
                    "max_days_ahead",
                    "buffer_minutes",
                    "approval_required",
                    "bookable_around_the_clock",
                ]
            },
        ),
    ]
