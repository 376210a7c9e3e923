from django.apps import AppConfig


class MessagesAppConfig(AppConfig):
    name = "messages_app"
    verbose_name = "Message queue"
    default_auto_field = "django.db.models.BigAutoField"
