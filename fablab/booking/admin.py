"""Bookings in the admin go through the same services as pages and the API.

Adding a booking runs ``booking_create`` (every rule, the same locks);
existing bookings cannot be moved here, only cancelled, approved or declined
with the actions, which call the services too. Nor can they be deleted: a
deletion would skip the member's email and the calendar feeds' cancellation,
and erase the history the reports count.

Only network administrators (superusers) open the admin at all; lab managers
approve, decline and cancel on the manager pages.
"""

from django import forms
from django.contrib import admin, messages
from django.utils.translation import gettext_lazy as _

from . import services
from .errors import BookingError
from .forms import within_reach
from .models import Booking, QuotaPolicy


class BookingAddForm(forms.ModelForm):
    class Meta:
        model = Booking
        fields = ["machine", "member", "start", "end", "purpose"]

    # Field errors, so that the model's constraints are not checked with these values either.
    def clean_start(self):
        return within_reach(self.fields["start"], self.cleaned_data.get("start"))

    def clean_end(self):
        return within_reach(self.fields["end"], self.cleaned_data.get("end"))

    def clean(self):
        cleaned = super().clean()
        if self.errors:
            return cleaned
        try:
            # The admin wraps the whole view in one transaction, so the
            # booking created here is rolled back if anything later fails.
            self.instance = services.booking_create(
                machine=cleaned["machine"],
                member=cleaned["member"],
                start=cleaned["start"],
                end=cleaned["end"],
                purpose=cleaned.get("purpose", ""),
            )
        except BookingError as exc:
            raise forms.ValidationError(exc.detail, code=exc.code) from exc
        return cleaned


@admin.register(Booking)
class BookingAdmin(admin.ModelAdmin):
    list_display = ["machine", "member", "start", "end", "status"]
    list_filter = ["status", "machine__lab", "machine__machine_type"]
    search_fields = ["member__username", "member__email", "machine__name", "purpose"]
    date_hierarchy = "start"
    raw_id_fields = ["member"]
    actions = ["approve", "decline", "cancel"]
    readonly_fields = [
        "machine",
        "member",
        "start",
        "end",
        "blocked_until",
        "status",
        "created_at",
        "updated_at",
        "decided_by",
        "decided_at",
        "cancelled_at",
        "cancelled_by",
        "cancel_reason",
    ]

    def get_form(self, request, obj=None, **kwargs):
        if obj is None:
            kwargs["form"] = BookingAddForm
        return super().get_form(request, obj, **kwargs)

    def get_queryset(self, request):
        # Only network administrators reach the admin (fablab.members.admin), and they
        # manage every lab; lab managers use the manager pages instead.
        return super().get_queryset(request).select_related("machine", "member")

    def has_delete_permission(self, request, obj=None):
        return False

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        # Only the purpose may be edited: everything else changes through the services.
        others = [f.name for f in Booking._meta.fields if f.editable and f.name not in ("id", "purpose")]
        return list(dict.fromkeys([*self.readonly_fields, *others]))

    def save_model(self, request, obj, form, change):
        if change:
            obj.save(update_fields=["purpose", "updated_at"])
        # New bookings were created by BookingAddForm.clean through the service.

    def _apply(self, request, queryset, service, label):
        done = 0
        for booking in queryset:
            try:
                service(booking=booking, by=request.user)
                done += 1
            except BookingError as exc:
                self.message_user(request, f"{booking}: {exc.detail}", messages.WARNING)
        self.message_user(request, _("%(count)d bookings %(action)s.") % {"count": done, "action": label})

    @admin.action(description=_("Approve selected pending bookings"))
    def approve(self, request, queryset):
        self._apply(request, queryset, services.booking_approve, _("approved"))

    @admin.action(description=_("Decline selected pending bookings"))
    def decline(self, request, queryset):
        self._apply(request, queryset, services.booking_decline, _("declined"))

    @admin.action(description=_("Cancel selected bookings"))
    def cancel(self, request, queryset):
        self._apply(request, queryset, services.booking_cancel, _("cancelled"))


@admin.register(QuotaPolicy)
class QuotaPolicyAdmin(admin.ModelAdmin):
    list_display = ["machine_type", "lab", "max_hours_per_week", "max_future_bookings"]
