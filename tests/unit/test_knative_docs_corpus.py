"""Every Knative document of tests/corpus/knative-docs goes through what `kev apply --dry-run` validates
(`read_documents` then `parse_resource`, as `_parse_all` does): all are accepted but the expected refusals,
which are refused with exactly the message listed in tests/knative_corpus.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from knative_corpus import CORPUS, EXPECTED_REFUSALS, KNATIVE_REJECTS, NEVER_WORKS, NOT_SERVED, corpus_files

from kev.cli.main import read_documents
from keventing.resources import ResourceInvalid, parse_resource

FILES = corpus_files()


def test_the_corpus_is_what_the_report_says() -> None:
    # One document a file, each naming where in knative/docs it comes from.
    assert len(FILES) >= 40
    for path in FILES:
        assert len(read_documents([str(path)])) == 1, path.name
        assert path.read_text().startswith("# Source: https://github.com/knative/docs/blob/"), path.name
    assert set(EXPECTED_REFUSALS) <= {p.name for p in FILES}
    assert {r.reason for r in EXPECTED_REFUSALS.values()} == {KNATIVE_REJECTS, NEVER_WORKS, NOT_SERVED}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_kev_apply_accepts_the_document_or_refuses_it_as_expected(path: Path) -> None:
    [(_, document)] = read_documents([str(path)])
    refusal = EXPECTED_REFUSALS.get(path.name)
    if refusal is None:
        resource = parse_resource(document)
        assert (resource.KIND, resource.name) == (document["kind"], document["metadata"]["name"])
    else:
        with pytest.raises(ResourceInvalid) as err:
            parse_resource(document)
        assert str(err.value) == refusal.message


def test_the_corpus_covers_every_eventing_group() -> None:
    groups = {document["apiVersion"].split("/")[0] for _, document in read_documents([str(CORPUS)])}
    assert {
        "eventing.knative.dev",
        "messaging.knative.dev",
        "sources.knative.dev",
        "sinks.knative.dev",
        "flows.knative.dev",
    } <= groups
