from django.core.management.base import BaseCommand

from messages_app import domain


class Command(BaseCommand):
    help = (
        "Housekeeping for cron: clear leases that have run out (ready again), mark "
        "messages past their last allowed delivery dead, drop old idempotency keys. "
        "Delivery is correct whether or not this runs."
    )

    def handle(self, *args, **options):
        done = domain.requeue_expired()
        self.stdout.write(
            f"{done.requeued} expired lease(s) requeued, {done.dead} message(s) dead, "
            f"{done.keys_dropped} idempotency key(s) dropped"
        )
