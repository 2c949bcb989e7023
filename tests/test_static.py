"""Static files under the run command's settings (debug: WhiteNoise serves the source folders) are gzipped."""

from __future__ import annotations

import gzip

import pytest
from django.test import Client, override_settings

CHART = "/static/lightweight-charts/lightweight-charts.standalone.production.mjs"


@pytest.fixture
def debug_client():
    # As DJANGO_DEBUG=1 sets them (config/settings.py); the middleware reads them when the client builds it.
    with override_settings(WHITENOISE_AUTOREFRESH=True, WHITENOISE_USE_FINDERS=True):
        yield Client()


def body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.mark.parametrize("path", [CHART, "/static/ticker/js/main.js", "/static/ticker/css/ticker.css"])
def test_a_text_file_is_gzipped_for_a_browser_that_takes_gzip(debug_client, path):
    """The chart library, a script and the style sheet come gzipped, and inflate to the file as served plain."""
    plain = debug_client.get(path)
    packed = debug_client.get(path, headers={"Accept-Encoding": "gzip, deflate, br, zstd"})
    assert plain.status_code == packed.status_code == 200
    assert "Content-Encoding" not in plain and packed["Content-Encoding"] == "gzip"
    assert plain["Vary"] == packed["Vary"] == "Accept-Encoding"
    data = body(packed)
    assert int(packed["Content-Length"]) == len(data) < len(body(plain)) / 2
    assert gzip.decompress(data) == body(debug_client.get(path))
    assert packed["ETag"] == plain["ETag"] and packed["Content-Type"] == plain["Content-Type"]


def test_a_cached_copy_is_revalidated_with_304(debug_client):
    """A browser's If-None-Match still gets 304 Not Modified, with no body."""
    etag = debug_client.get(CHART, headers={"Accept-Encoding": "gzip"})["ETag"]
    again = debug_client.get(CHART, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and "Content-Encoding" not in again


def test_an_image_and_a_range_request_are_sent_as_they_are(debug_client):
    """Only whole answers of text files are compressed: the favicon is tiny, a Range asks for the file's bytes."""
    icon = debug_client.get("/static/ticker/img/favicon.svg", headers={"Accept-Encoding": "gzip"})
    assert icon.status_code == 200 and "Content-Encoding" not in icon
    part = debug_client.get(CHART, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
    assert part.status_code == 206 and "Content-Encoding" not in part and len(body(part)) == 100
