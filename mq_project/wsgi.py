"""The WSGI application: API paths without middleware, pages with it (see ``handlers``).

``application`` is what ``WSGI_APPLICATION`` names (``manage.py runserver``,
other WSGI servers, which log requests themselves); ``served`` is what the
``message-queue`` command serves: the same, with an access line per request
unless ``MQ_ACCESS_LOG`` is off (``access``).
"""

import os

import django
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler

from . import access
from .handlers import OnePass, WithoutMiddleware, is_page

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mq_project.settings")


class APIHandler(OnePass, WithoutMiddleware, WSGIHandler):
    pass


def get_application():
    django.setup(set_prefix=False)
    api, pages = APIHandler(), WSGIHandler()

    def application(environ, start_response):
        handler = pages if is_page(environ.get("PATH_INFO", "")) else api
        return handler(environ, start_response)

    return application


application = get_application()
served = access.logged(application) if settings.MQ_ACCESS_LOG else application
