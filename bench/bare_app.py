"""The HTTP ceiling: a minimal Django WSGI app, served by the bench with granian
exactly as the product is (same workers and threads).

- ``/json``: a plain Django view returning ``JsonResponse`` (no middleware);
- ``/drf``: a plain DRF ``APIView`` (JSON renderer, no authentication);
- ``/wait?wait=N``: a plain Django view that sleeps N seconds and answers 204,
  a long-poll that never finds anything (the floor of the long-poll workload).
"""

import time

import django
from django.conf import settings

settings.configure(
    DEBUG=False,
    SECRET_KEY="bench-only-secret-key",
    ALLOWED_HOSTS=["*"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[],
    MIDDLEWARE=[],
    USE_TZ=True,
    REST_FRAMEWORK={
        "DEFAULT_AUTHENTICATION_CLASSES": [],
        "DEFAULT_PERMISSION_CLASSES": [],
        "UNAUTHENTICATED_USER": None,
        "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    },
)
django.setup()

from django.core.wsgi import get_wsgi_application  # noqa: E402 (needs settings)
from django.http import HttpResponse, JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


def bare_json(request):
    return JsonResponse({"status": "ok"})


def bare_wait(request):
    time.sleep(float(request.GET["wait"]))
    return HttpResponse(status=204)


class BareDRF(APIView):
    def get(self, request):
        return Response({"status": "ok"})


urlpatterns = [
    path("json", bare_json),
    path("drf", BareDRF.as_view()),
    path("wait", bare_wait),
]

application = get_wsgi_application()
