"""The HTTP ceiling: a minimal Django WSGI app, served by the bench with granian
exactly as the product is (same workers and threads).

- ``/json``: a plain Django view returning ``JsonResponse`` (no middleware);
- ``/drf``: a plain DRF ``APIView`` (JSON renderer, no authentication).
"""

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
from django.http import JsonResponse  # noqa: E402
from django.urls import path  # noqa: E402
from rest_framework.response import Response  # noqa: E402
from rest_framework.views import APIView  # noqa: E402


def bare_json(request):
    return JsonResponse({"status": "ok"})


class BareDRF(APIView):
    def get(self, request):
        return Response({"status": "ok"})


urlpatterns = [path("json", bare_json), path("drf", BareDRF.as_view())]

application = get_wsgi_application()
