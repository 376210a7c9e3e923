from django.core.management.base import BaseCommand, CommandError

from messages_app import domain
from messages_app.models import Queue


class Command(BaseCommand):
    help = "Make a queue's dead messages ready again, with their attempts reset."

    def add_arguments(self, parser):
        parser.add_argument("queue", help="the queue's name")

    def handle(self, *args, queue, **options):
        if not Queue.objects.filter(name=queue).exists():
            raise CommandError(f"no queue named {queue!r}")
        count = domain.redrive_queue(queue)
        self.stdout.write(f"{count} dead message(s) of {queue} redriven")
