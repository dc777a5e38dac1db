"""event-display prints events exactly like Knative's event_display sample."""

from __future__ import annotations

from kev.eventdisplay import format_event
from keventing import events


def test_quickstart_event_is_printed_like_knative() -> None:
    event = events.from_http(
        {
            "ce-id": "say-hello",
            "ce-specversion": "1.0",
            "ce-type": "com.icloud2native.sayhievent",
            "ce-time": "2023-12-01T11:35:56.7181741Z",
            "ce-source": "sendoff",
            "content-type": "application/json",
        },
        b'{"msg":"Hello littlyboy Knative!"}',
    )
    assert format_event(event) == (
        "☁️  cloudevents.Event\n"
        "Context Attributes,\n"
        "  specversion: 1.0\n"
        "  type: com.icloud2native.sayhievent\n"
        "  source: sendoff\n"
        "  id: say-hello\n"
        "  time: 2023-12-01T11:35:56.7181741Z\n"
        "  datacontenttype: application/json\n"
        "Data,\n"
        "  {\n"
        '    "msg": "Hello littlyboy Knative!"\n'
        "  }\n"
    )


def test_optional_attributes_and_sorted_extensions() -> None:
    event = events.Event(
        {
            "specversion": "1.0",
            "id": "1",
            "type": "t",
            "source": "/s",
            "subject": "sub",
            "dataschema": "https://s",
            "zeta": "z",
            "alpha": "a",
        }
    )
    text = format_event(event)
    assert "  subject: sub\n  id: 1\n" in text
    assert "  dataschema: https://s\n" in text
    assert text.endswith("Extensions,\n  alpha: a\n  zeta: z\n")
    assert "Data," not in text


def test_non_json_data_is_printed_as_is() -> None:
    event = events.Event(
        {"specversion": "1.0", "id": "1", "type": "t", "source": "/s", "datacontenttype": "text/plain"},
        b"hello\nworld",
    )
    assert format_event(event).endswith("Data,\n  hello\nworld\n")
