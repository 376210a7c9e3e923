"""The store: the statements of the database the server runs on, one module
per database (``sqlite``, ``postgresql``, ``mariadb``) over a common ``base``.

A store owns the hot path's raw statements (the claim, the insert, the
compare-and-set delete), its change feed for long polling, its housekeeping
and the count queries. Everything else is the ORM, in ``domain``.
"""

from .base import ClaimedRow, Store


def for_vendor(vendor: str) -> Store:
    """The store for Django's ``connection.vendor``."""
    from .mariadb import MariaDBStore
    from .postgresql import PostgreSQLStore
    from .sqlite import SQLiteStore

    return {"sqlite": SQLiteStore, "postgresql": PostgreSQLStore, "mysql": MariaDBStore}[vendor]()


__all__ = ["ClaimedRow", "Store", "for_vendor"]
