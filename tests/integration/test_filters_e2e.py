"""Every filter dialect on a real broker: each subscriber receives exactly the events its filter selects."""

from __future__ import annotations

import time

from conftest import Kev, RecordingSink
from helpers import broker_doc, trigger_doc

STREAM = [
    # id, type, source, extensions
    ("1", "com.shop.order.created", "/shop/eu", {"region": "eu", "amount": "120"}),
    ("2", "com.shop.order.created", "/shop/us", {"region": "us", "amount": "30"}),
    ("3", "com.shop.order.cancelled", "/shop/eu", {"region": "eu"}),
    ("4", "com.shop.payment.done", "/pay", {"amount": "99"}),
    ("5", "org.other.thing", "/other/eu", {}),
]

FILTERS = {
    "exact": ([{"exact": {"type": "com.shop.order.created"}}], {"1", "2"}),
    "prefix": ([{"prefix": {"type": "com.shop.order."}}], {"1", "2", "3"}),
    "suffix": ([{"suffix": {"source": "/eu"}}], {"1", "3", "5"}),
    "extension": ([{"exact": {"region": "eu"}}], {"1", "3"}),
    "all": ([{"all": [{"prefix": {"type": "com.shop."}}, {"exact": {"region": "eu"}}]}], {"1", "3"}),
    "any": ([{"any": [{"exact": {"region": "us"}}, {"suffix": {"type": ".done"}}]}], {"2", "4"}),
    "not": ([{"not": {"prefix": {"type": "com.shop."}}}], {"5"}),
    "nested": (
        [
            {
                "any": [
                    {"all": [{"exact": {"region": "eu"}}, {"not": {"suffix": {"type": "cancelled"}}}]},
                    {"exact": {"id": "5"}},
                ]
            }
        ],
        {"1", "5"},
    ),
    "cesql": ([{"cesql": "type LIKE 'com.shop.%' AND INT(amount) >= 99"}], {"1", "4"}),
    "anded": ([{"prefix": {"type": "com.shop."}}, {"cesql": "EXISTS region"}], {"1", "2", "3"}),
}


def test_each_dialect_selects_exactly_its_events(kev: Kev, sink: RecordingSink, ns: str) -> None:
    triggers = [
        trigger_doc(name, ns, "default", sink.url(f"{ns}/{name}"), filters=filters)
        for name, (filters, _) in FILTERS.items()
    ]
    legacy = trigger_doc(
        "legacy",
        ns,
        "default",
        sink.url(f"{ns}/legacy"),
        filter={"attributes": {"type": "com.shop.order.created"}},
    )
    everything = trigger_doc("everything", ns, "default", sink.url(f"{ns}/everything"))
    kev.apply(broker_doc("default", ns), *triggers, legacy, everything)
    for trigger in (*triggers, legacy, everything):
        kev.wait_ready("Trigger", trigger["metadata"]["name"], ns)
    for event_id, type_, source, extensions in STREAM:
        response = kev.send(ns, "default", event_id, type_, source=source, extensions=extensions)
        assert response.status_code == 202
    sink.wait_for(f"{ns}/everything", len(STREAM))
    for name, (_, expected) in FILTERS.items():
        sink.wait_for(f"{ns}/{name}", len(expected))
    time.sleep(1.0)  # anything wrongly selected has had time to arrive
    for name, (_, expected) in FILTERS.items():
        got = [e.id for e in sink.events(f"{ns}/{name}")]
        assert sorted(got) == sorted(expected), f"{name}: got {sorted(got)}, expected {sorted(expected)}"
    assert sorted(e.id for e in sink.events(f"{ns}/legacy")) == ["1", "2"]
