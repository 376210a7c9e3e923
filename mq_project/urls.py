from django.contrib import admin
from django.urls import path
from drf_spectacular.views import (
    SpectacularJSONAPIView,
    SpectacularRedocView,
    SpectacularSwaggerView,
)

from messages_app import pages
from messages_app.api import views
from messages_app.sqs import views as sqs

# Every message route, on the queue ``default`` at the top level and on any
# queue under ``/queues/<name>/``. Written out flat, not through include():
# an include is one more resolver to go through on every request.
message_routes = [
    ("message/new", views.SendMessage.as_view()),
    ("message/next", views.NextMessage.as_view()),
    ("message/<str:id>/status/done", views.MessageDone.as_view()),
    ("message/<str:id>/status/ready", views.GiveBack.as_view()),
    ("message/<str:id>/lease", views.ExtendLease.as_view()),
    ("messages/new", views.SendMessages.as_view()),
    ("messages/next", views.NextMessages.as_view()),
    ("messages/status/done", views.MessagesDone.as_view()),
]

urlpatterns = [
    *(path(route, view) for route, view in message_routes),
    path("queues", views.QueueList.as_view()),
    path("queues/<str:queue>", views.QueueDetail.as_view()),
    path("queues/<str:queue>/redrive", views.Redrive.as_view()),
    path("queues/<str:queue>/stats", views.QueueHistory.as_view()),
    *(path("queues/<str:queue>/" + route, view) for route, view in message_routes),
    path("health", views.Health.as_view()),
    # Amazon SQS's protocols: the endpoint and every queue URL (messages_app/sqs);
    # also at / for clients that cannot put a path in their endpoint (Celery's).
    path("sqs", sqs.endpoint),
    path("sqs/", sqs.endpoint),
    path("sqs/<str:account>/<str:queue>", sqs.endpoint),
    path("", sqs.root),
    # The OpenAPI schema, and Swagger UI and Redoc over it (served from here, no CDN).
    path("api/schema/", SpectacularJSONAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/docs/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("metrics", pages.metrics),
    path("info", pages.info, name="info"),
    path("info/<str:queue>", pages.queue_page, name="queue-page"),
    path("info/<str:queue>/<str:action>", pages.queue_action, name="queue-action"),
    path("admin/", admin.site.urls),
]

handler400 = "messages_app.api.errors.bad_request"
handler403 = "messages_app.api.errors.forbidden"
handler404 = "messages_app.api.errors.not_found"
handler500 = "messages_app.api.errors.server_error"
