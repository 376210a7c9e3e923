"""The operator console: rows are read-only; state changes only through actions,
which call the same domain functions as the API and the management commands."""

from django.conf import settings
from django.contrib import admin, messages
from django.db.models import Count, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from . import domain
from .models import UNLIMITED_ATTEMPTS, Message, Queue


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [(state, state) for state in ("ready", "leased", "delayed", "dead")]

    def queryset(self, request, queryset):
        state = self.value()
        if state in ("ready", "leased", "delayed", "dead"):
            return getattr(queryset, state)()
        return queryset


@admin.action(description="Requeue: deliverable now, at their place in the queue")
def requeue_messages(modeladmin, request, queryset):
    count = domain.requeue(queryset)
    modeladmin.message_user(request, f"{count} message(s) requeued.", messages.SUCCESS)


@admin.action(description="Redrive: dead messages ready again, attempts reset")
def redrive_messages(modeladmin, request, queryset):
    count = domain.redrive(queryset)
    modeladmin.message_user(request, f"{count} dead message(s) redriven.", messages.SUCCESS)


@admin.action(description="Purge: delete for good")
def purge_messages(modeladmin, request, queryset):
    count = domain.purge(queryset)
    modeladmin.message_user(request, f"{count} message(s) purged.", messages.SUCCESS)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "queue",
        "state",
        "attempts",
        "created_at",
        "visible_at",
        "payload_preview",
    )
    list_filter = (StateFilter, "queue")
    search_fields = ("=id", "payload")
    actions = [requeue_messages, redrive_messages, purge_messages]
    list_per_page = 50
    # A million rows: no COUNT(*) of the whole table on every page.
    show_full_result_count = False
    readonly_fields = [f.name for f in Message._meta.fields]

    @admin.display(description="state")
    def state(self, message):
        return message.state()

    @admin.display(description="payload")
    def payload_preview(self, message):
        return message.payload[:120]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.action(description="Redrive all their dead messages")
def redrive_queues(modeladmin, request, queryset):
    count = domain.redrive(Message.objects.filter(queue__in=queryset))
    modeladmin.message_user(request, f"{count} dead message(s) redriven.", messages.SUCCESS)


@admin.action(description="Purge all their messages")
def purge_queues(modeladmin, request, queryset):
    count = domain.purge(Message.objects.filter(queue__in=queryset))
    modeladmin.message_user(request, f"{count} message(s) purged.", messages.SUCCESS)


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("name", "timeout", "max_attempts", "message_count", "dead_count", "created_at")
    search_fields = ("name",)
    fields = ("name", "timeout", "max_attempts", "created_at")
    readonly_fields = ("created_at",)
    actions = [redrive_queues, purge_queues]

    def get_queryset(self, request):
        # Dead as /queues and /info count it: stored dead, or its last allowed
        # delivery's lease ran out (before requeue_expired stored that).
        limit = Coalesce(F("max_attempts"), Value(settings.MQ_MAX_ATTEMPTS or UNLIMITED_ATTEMPTS))
        spent = Q(
            messages__dead=False,
            messages__visible_at__lte=timezone.now(),
            messages__attempts__gte=limit,
        )
        return (
            super()
            .get_queryset(request)
            .annotate(
                message_count=Count("messages"),
                dead_count=Count("messages", filter=Q(messages__dead=True) | spent),
            )
        )

    def get_readonly_fields(self, request, obj=None):
        return ("name", "created_at") if obj else ("created_at",)

    @admin.display(description="messages", ordering="message_count")
    def message_count(self, queue):
        return queue.message_count

    @admin.display(description="dead", ordering="dead_count")
    def dead_count(self, queue):
        return queue.dead_count
