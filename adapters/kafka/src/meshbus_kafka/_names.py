"""``_naming`` under the name it had before (imported so by the end-to-end tests)."""

from meshbus_kafka._naming import *  # noqa: F403
from meshbus_kafka._naming import __all__ as __all__
