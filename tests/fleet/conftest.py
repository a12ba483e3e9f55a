from tests.redisserver import redis_server
from tests.store.conftest import pg_dsn, pg_server

__all__ = ["pg_dsn", "pg_server", "redis_server"]
