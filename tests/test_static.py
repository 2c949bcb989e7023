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
    # Two representations: the gzipped one's ETag is the weak form of the file's, never the same strong tag.
    assert packed["ETag"] == "W/" + plain["ETag"] and packed["Content-Type"] == plain["Content-Type"]


def test_a_cached_copy_is_revalidated_with_304(debug_client):
    """A browser's If-None-Match still gets 304 Not Modified, with no body."""
    etag = debug_client.get(CHART, headers={"Accept-Encoding": "gzip"})["ETag"]
    again = debug_client.get(CHART, headers={"Accept-Encoding": "gzip", "If-None-Match": etag})
    assert again.status_code == 304 and "Content-Encoding" not in again


def test_a_browser_revalidating_either_form_gets_304(debug_client):
    """The plain answer's strong ETag and the gzipped answer's weak one both revalidate to 304."""
    strong = debug_client.get(CHART)["ETag"]
    weak = debug_client.get(CHART, headers={"Accept-Encoding": "gzip"})["ETag"]
    for tag in (strong, weak):
        again = debug_client.get(CHART, headers={"Accept-Encoding": "gzip", "If-None-Match": tag})
        assert again.status_code == 304, tag


@pytest.mark.parametrize(
    "header, gzipped",
    [("gzip", True), ("gzip;q=0", False), ("br, gzip;q=0.5", True), ("identity", False), ("*", True),
     ("*, gzip;q=0", False), ("GZIP ; q=1.0", True), ("deflate;q=0, *;q=0", False)],
)  # fmt: skip
def test_accept_encoding_is_read_with_its_weights(header, gzipped):
    """gzip;q=0 means "not gzip"; * stands for gzip only when gzip itself is not listed."""
    from ticker.edge.middleware import accepts_gzip

    assert accepts_gzip(header) is gzipped


def test_an_image_and_a_range_request_are_sent_as_they_are(debug_client):
    """Only whole answers of text files are compressed: the favicon is tiny, a Range asks for the file's bytes."""
    icon = debug_client.get("/static/ticker/img/favicon.svg", headers={"Accept-Encoding": "gzip"})
    assert icon.status_code == 200 and "Content-Encoding" not in icon
    part = debug_client.get(CHART, headers={"Accept-Encoding": "gzip", "Range": "bytes=0-99"})
    assert part.status_code == 206 and "Content-Encoding" not in part and len(body(part)) == 100
