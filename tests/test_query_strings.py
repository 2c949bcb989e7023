"""Query strings never make a JSON endpoint answer 500 (hypothesis, in-process, issue 22).

On SQLite only (ANY_DATABASE): what is checked is the views' parsing of parameters, which the database kind does not
change, and each request through Django's test client to an async view runs in an event loop of its own, which
starts a hub of its own: on PostgreSQL every such hub holds its own connections (one per executor thread), and 300
of them made the PostgreSQL pass hang.
"""

import urllib.parse

import hypothesis
from hypothesis import given
from hypothesis import strategies as st

# Query parameters of the JSON endpoints, drawn from what their views read and what nobody expects.
PARAMETERS = ("symbols", "since", "wait", "limit", "q", "count", "movers", "junk")
values = st.one_of(
    st.text(max_size=12),
    st.integers(-(10**20), 10**20).map(str),
    st.sampled_from(["", "*", "AAA", "aaa,BBB", "AAA,,", "0", "-1", "1.5", "nan", "inf", "1e400", "\u00b2", "9" * 400]),
    st.lists(st.sampled_from(["AAA", "BBB", "CCC", "NOPE", "*", ""]), max_size=120).map(",".join),
)
raw_queries = st.binary(max_size=30).map(urllib.parse.quote_from_bytes)  # invalid UTF-8, stray % and & too
path_symbols = st.sampled_from(["AAA", "aaa", "NOPE", "%00", "%FF", "A" * 300]) | st.text(
    st.characters(codec="ascii", exclude_characters="/?#%"), min_size=1, max_size=8
).map(urllib.parse.quote)
endpoints = st.one_of(
    st.just("/api/quotes/"),
    st.just("/api/quotes/sparklines/"),
    st.just("/api/movers/"),
    st.just("/api/symbols/"),
    path_symbols.map("/api/quotes/{}/history/".format),
    path_symbols.map("/api/quotes/{}/candles/".format),
)


@hypothesis.settings(
    max_examples=300, deadline=None, suppress_health_check=[hypothesis.HealthCheck.function_scoped_fixture]
)
@given(endpoints, st.dictionaries(st.sampled_from(PARAMETERS), values, max_size=4), raw_queries)
def test_no_query_string_makes_a_json_endpoint_answer_500(client, traded, path, params, raw):
    """Whatever the query string, every JSON endpoint answers 2xx or 4xx in the one JSON error shape, or the documented
    503 ``unavailable`` (the long-poll and movers wait for the hub's first snapshot, at most READY_TIMEOUT_S: on a
    busy machine that can pass), never a 500."""
    query = "&".join(filter(None, (urllib.parse.urlencode(params), raw)))
    if path == "/api/quotes/":
        query += "&wait=0"  # the last value counts: a long-poll that answers at once
    response = client.get(f"{path}?{query}")
    assert 200 <= response.status_code <= 503 and not 300 <= response.status_code < 400, (path, query, response)
    if response.status_code >= 400:
        body = response.json()
        assert body["type"] == "error" and body["code"] and body["message"], (path, query, body)
        assert response.status_code < 500 or body["code"] == "unavailable", (path, query, body)
