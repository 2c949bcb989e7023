from django.conf import settings


def site(request):
    """What every page's footer says about how the feed is wired."""
    return {"channel_layer_backend": settings.CHANNEL_LAYER_BACKEND}
