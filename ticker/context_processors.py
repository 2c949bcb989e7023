from django.conf import settings


def site(request):
    """Called for every page: how the feed is wired (the footer), and the settings the browser shares with the server.

    ``client_config`` is rendered as the ``ticker-config`` json_script block
    (templates/base.html) and read once by static/ticker/js/config.js, so the
    browser never holds its own copy of these values.
    """
    return {
        "channel_layer_backend": settings.CHANNEL_LAYER_BACKEND,
        "client_config": {
            "silence_s": settings.TICKER_CLIENT_SILENCE_S,
            "history_steps": settings.MARKET_HISTORY_STEPS,
            "upgrade_probe_s": settings.TICKER_UPGRADE_PROBE_S,
            # The Lab: frames smaller than this go uncompressed (ticker/edge/server/outlet.py).
            "compress_min_bytes": settings.TICKER_WS_COMPRESS_MIN_BYTES,
        },
    }
