"""What a data-plane process carries that it does not need: the Kubernetes client's generated models (~35 MiB)
and the JWT library (with cryptography, ~9 MiB) are loaded only once used; what it made to start is frozen
out of the cyclic collector's sight."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("kubernetes_asyncio", "jwt", "cryptography")


def _loaded_after(code: str) -> list[str]:
    probe = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return eval(done.stdout.strip())  # noqa: S307 - our own probe's list of names


@pytest.mark.parametrize(
    "code",
    [
        # The receiver as it starts: its entry point and the token source its EventTransforms are given.
        "import receiver.main\nfrom receiver.settings import ReceiverSettings\nReceiverSettings().token_source()",
        "import dispatcher.main\nfrom dispatcher.jobsink import JobPost",
    ],
)
def test_a_service_starting_loads_neither_the_kubernetes_client_nor_jwt(code: str) -> None:
    assert _loaded_after(code) == []


def test_they_are_loaded_where_they_are_used() -> None:
    loaded = _loaded_after(
        "import asyncio, base64, json, os\n"
        "from keventing.tokens import _renew_at\n"
        "from keventing.kubeapi import KubeApi, KubeConfigUnavailable\n"
        "part = lambda d: base64.urlsafe_b64encode(json.dumps(d).encode()).rstrip(b'=').decode()\n"
        "token = part({'alg': 'none'}) + '.' + part({'exp': 2000000000}) + '.'\n"
        "assert _renew_at(token) == 2000000000 - 60\n"
        "os.environ['KUBECONFIG'] = '/nonexistent/kubeconfig'\n"
        "try:\n"
        "    asyncio.run(KubeApi().client())\n"
        "except KubeConfigUnavailable:\n"
        "    pass\n"
        "else:\n"
        "    raise AssertionError('a configuration was found')\n"
    )
    assert {"jwt", "kubernetes_asyncio"} <= set(loaded)


def test_what_a_service_made_to_start_is_out_of_the_collectors_sight() -> None:
    # A full collection then walks only what was made afterwards, not the ~80k objects of the imports.
    probe = (
        "import gc, time\n"
        "import receiver.main, dispatcher.main\n"
        "from keventing.ops import freeze_startup_heap\n"
        "tracked = len(gc.get_objects())\n"
        "freeze_startup_heap()\n"
        "assert gc.get_threshold()[0] == 10_000, gc.get_threshold()\n"
        "print(tracked, gc.get_freeze_count(), len(gc.get_objects()))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    tracked, frozen, left = (int(n) for n in done.stdout.split())
    assert tracked > 50_000
    assert frozen >= tracked * 0.9
    assert left < tracked * 0.05
