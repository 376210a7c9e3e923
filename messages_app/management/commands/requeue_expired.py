from django.core.management.base import BaseCommand

from messages_app import domain


class Command(BaseCommand):
    help = (
        "Housekeeping for cron: clear leases that have run out, so those messages show "
        "as ready. Delivery is correct whether or not this runs."
    )

    def handle(self, *args, **options):
        count = domain.requeue_expired()
        self.stdout.write(f"{count} expired lease(s) requeued")
