"""The operator console: rows are read-only; state changes only through actions
and the queue form, which call the same domain functions as the API and the
management commands. Actions that delete messages ask first, on a page that
says how many will go. Each queue and message links to its queue's console
page, /info/<name>."""

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html

from . import domain, states
from .models import Message, Queue


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [(state, state) for state in states.STATES]

    def queryset(self, request, queryset):
        if self.value() in states.STATES:
            return queryset.in_state(self.value())
        return queryset


@admin.action(description="Requeue: deliverable now, at their place in the queue")
def requeue_messages(modeladmin, request, queryset):
    count = domain.requeue(queryset)
    modeladmin.message_user(request, f"{count} message(s) requeued.", messages.SUCCESS)


@admin.action(description="Redrive: dead messages ready again, attempts reset")
def redrive_messages(modeladmin, request, queryset):
    count = domain.redrive(queryset)
    modeladmin.message_user(request, f"{count} dead message(s) redriven.", messages.SUCCESS)


def console_url(queue: str) -> str:
    """The queue's page of the console (``pages``)."""
    return f"/info/{queue}"


def _confirmation(modeladmin, request, queryset, action: str, question: str, going: int, items):
    """None once the operator confirmed; until then, the page that asks, saying
    how many messages will go (the pattern of Django's delete_selected)."""
    if request.POST.get("post") == "yes":
        return None
    opts = modeladmin.model._meta
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": question,
        "opts": opts,
        "queryset": queryset,
        "action": action,
        "going": going,
        "items": items,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "changelist_url": reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"),
    }
    return TemplateResponse(request, "admin/messages_app/confirm_action.html", context)


@admin.action(description="Purge: delete for good")
def purge_messages(modeladmin, request, queryset):
    going = queryset.count()
    question = f"Purge {going} message(s)?"
    items = [f"{message.queue_id} #{message.id}" for message in queryset[:100]]
    asking = _confirmation(modeladmin, request, queryset, "purge_messages", question, going, items)
    if asking:
        return asking
    count = domain.purge(queryset)
    modeladmin.message_user(request, f"{count} message(s) purged.", messages.SUCCESS)


def _limit_text(limit: int) -> str:
    return "unlimited" if limit == states.UNLIMITED_ATTEMPTS else str(limit)


@admin.register(Message)
class MessageAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "queue",
        "state",
        "attempts",
        "max_attempts",
        "created_at",
        "visible_at",
        "payload_preview",
        "console",
    )
    list_filter = (StateFilter, "queue")
    search_fields = ("=id", "payload")
    actions = [requeue_messages, redrive_messages, purge_messages]
    list_per_page = 50
    list_select_related = ("queue",)
    # A million rows: no COUNT(*) of the whole table on every page.
    show_full_result_count = False
    # The computed state and the queue's effective settings, not the stored
    # ``dead`` flag (a message can be dead by the clock before that is stored).
    fields = (
        "id",
        "queue",
        "state",
        "attempts",
        "max_attempts",
        "timeout",
        "lease",
        "visible_at",
        "created_at",
        "payload",
    )
    readonly_fields = fields

    @admin.display(description="state")
    def state(self, message):
        return message.state()

    @admin.display(description="max attempts")
    def max_attempts(self, message):
        return _limit_text(message.queue.effective_max_attempts())

    @admin.display(description="lease timeout (s)")
    def timeout(self, message):
        return f"{message.queue.effective_timeout():g}"

    @admin.display(description="payload")
    def payload_preview(self, message):
        return message.payload[:120]

    @admin.display(description="console")
    def console(self, message):
        return format_html('<a href="{}">{}</a>', console_url(message.queue_id), message.queue_id)

    def view_on_site(self, message):
        return console_url(message.queue_id)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.action(description="Redrive all their dead messages")
def redrive_queues(modeladmin, request, queryset):
    count = sum(domain.redrive_queue(queue.name) for queue in queryset)
    modeladmin.message_user(request, f"{count} dead message(s) redriven.", messages.SUCCESS)


def _messages_of(queryset) -> tuple[int, list[str]]:
    """How many messages the queues of ``queryset`` hold, and a line per queue."""
    names = [queue.name for queue in queryset]
    per_queue = dict(
        Message.objects.filter(queue_id__in=names)
        .order_by()
        .values("queue_id")
        .annotate(n=Count("*"))
        .values_list("queue_id", "n")
    )
    return sum(per_queue.values()), [f"{n}: {per_queue.get(n, 0)} message(s)" for n in names]


@admin.action(description="Purge all their messages")
def purge_queues(modeladmin, request, queryset):
    going, items = _messages_of(queryset)
    question = f"Purge every message of {len(items)} queue(s)?"
    asking = _confirmation(modeladmin, request, queryset, "purge_queues", question, going, items)
    if asking:
        return asking
    count = sum(domain.purge_queue(queue.name) for queue in queryset)
    modeladmin.message_user(request, f"{count} message(s) purged.", messages.SUCCESS)


@admin.action(description="Delete, with all their messages")
def delete_queues(modeladmin, request, queryset):
    going, items = _messages_of(queryset)
    question = f"Delete {len(items)} queue(s), their settings, history and messages?"
    asking = _confirmation(modeladmin, request, queryset, "delete_queues", question, going, items)
    if asking:
        return asking
    names = [queue.name for queue in queryset]
    count = sum(domain.delete_queue(name) for name in names)
    modeladmin.message_user(
        request, f"{len(names)} queue(s) deleted with {count} message(s).", messages.SUCCESS
    )


def _count_in_state(state: str, now):
    """The number of the queue's messages in ``state``, by the QuerySet's rules."""
    in_state = (
        Message.objects.filter(queue_id=OuterRef("name"))
        .in_state(state, now)
        .order_by()
        .values("queue_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return Coalesce(Subquery(in_state, output_field=IntegerField()), Value(0))


def _count_column(state: str):
    """A column of the queue list: its messages in ``state`` (annotated by get_queryset)."""

    @admin.display(description=state, ordering=state)
    def column(queue):
        return getattr(queue, state)

    return column


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        *(_count_column(state) for state in states.STATES),
        "effective_timeout",
        "effective_max_attempts",
        "created_at",
        "console",
    )
    search_fields = ("name",)
    fields = ("name", "timeout", "max_attempts", "dead_letter_queue", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("dead_letter_queue",)
    actions = [redrive_queues, purge_queues, delete_queues]

    def get_queryset(self, request):
        now = timezone.now()
        counts = {state: _count_in_state(state, now) for state in states.STATES}
        return super().get_queryset(request).annotate(**counts)

    def get_readonly_fields(self, request, obj=None):
        return ("name", "created_at") if obj else ("created_at",)

    def save_model(self, request, obj, form, change):
        # Through the domain, as PUT /queues/<name> does: deaths the old limit
        # decided stay decided, and this process's settings cache is told.
        domain.configure(
            obj.name,
            timeout=obj.timeout,
            max_attempts=obj.max_attempts,
            dead_letter_queue=obj.dead_letter_queue_id,
        )

    def has_delete_permission(self, request, obj=None):
        # Django's delete would delete the messages past the domain: the
        # action delete_queues goes through it.
        return False

    @admin.display(description="console")
    def console(self, queue):
        return format_html('<a href="{}">console</a>', console_url(queue.name))

    def view_on_site(self, queue):
        return console_url(queue.name)

    @admin.display(description="lease timeout (s)")
    def effective_timeout(self, queue):
        return f"{queue.effective_timeout():g}"

    @admin.display(description="max attempts")
    def effective_max_attempts(self, queue):
        return _limit_text(queue.effective_max_attempts())
