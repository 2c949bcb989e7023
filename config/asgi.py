"""ASGI entry point: HTTP through Django, WebSocket through Channels.

Run with: daphne -b 127.0.0.1 -p 8000 config.asgi:application
"""

import os
import sys

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
try:
    _ = settings.INSTALLED_APPS  # loads config/settings.py, which checks every environment variable
except ImproperlyConfigured as error:
    # daphne would print a traceback around it; one line that names the variable says it all (issue 20).
    sys.exit(f"ticker: {error}")
# Set up Django (apps, settings) before anything imports models: routing
# imports the consumers, which import the ORM.
django_asgi_app = get_asgi_application()

from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from ticker.edge.security import OriginCheck  # noqa: E402
from ticker.edge.session import SessionUser  # noqa: E402
from ticker.ops import health  # noqa: E402
from ticker.routing import websocket_urlpatterns  # noqa: E402

# /healthz, /readyz and /metrics are answered in front of everything, Host validation too (ticker/ops/health.py).
application = health.routes(
    ProtocolTypeRouter(
        {
            "http": django_asgi_app,
            # OriginCheck, not channels' AllowedHostsOriginValidator: the same Origin rule as SSE and
            # long-polling, Django's CSRF rule with the port (ticker/edge/security.py). Then the page's session
            # cookie names the user (scope["user"], channels' AuthMiddlewareStack), whose personal frames the
            # socket gets (issue 23); a socket without a session cookie is anonymous at once, with no thread hop
            # or query (ticker/edge/session.py).
            "websocket": OriginCheck(SessionUser(URLRouter(websocket_urlpatterns))),
        }
    )
)

from ticker.edge import server  # noqa: E402
from ticker.runtime.gc_schedule import freeze_startup_objects  # noqa: E402

server.install()
freeze_startup_objects()
