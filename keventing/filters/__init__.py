"""Trigger filters: Knative's legacy attribute filter and every Subscriptions API dialect.

>>> matches = compile_trigger_filter(None, [{"exact": {"type": "com.example.order"}},
...                                         {"cesql": "source LIKE 'https://%'"}])
>>> matches({"type": "com.example.order", "source": "https://shop.example.com"})
True

``compile_trigger_filter`` validates (raising :class:`FilterError` with the field path) and compiles once;
the returned :data:`Filter` is a plain function of the event's attributes. The CESQL engine lives in
:mod:`keventing.filters.cesql`.
"""

from __future__ import annotations

from .dialects import Attributes, Filter, compile_trigger_filter, match_all, string_form
from .validation import DIALECTS, FilterError, validate_attributes_filter, validate_filters

__all__ = [
    "DIALECTS",
    "Attributes",
    "Filter",
    "FilterError",
    "compile_trigger_filter",
    "match_all",
    "string_form",
    "validate_attributes_filter",
    "validate_filters",
]
