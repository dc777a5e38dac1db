"""The keventing image as built (by deploy/e2e/setup.sh, on the local Debian base): its size, its user, its
HEALTHCHECK and what its final stage leaves out."""

from __future__ import annotations

import json

from .conftest import podman, wait_for


def test_image_size_user_and_healthcheck(images: dict[str, str]) -> None:
    image = images["keventing"]
    inspect = json.loads(podman("image", "inspect", image).stdout)[0]
    size_mb = inspect["Size"] / 1e6
    print(f"\n{image}: {size_mb:.0f} MB")
    assert size_mb < 500
    config = inspect["Config"]
    assert config["User"].split(":")[0] not in ("", "0", "root")
    assert config["Entrypoint"] == ["kev"]
    healthcheck = inspect.get("Healthcheck") or config.get("Healthcheck")  # podman keeps it beside Config
    assert healthcheck["Test"] == ["CMD", "python", "-m", "kev.healthcheck"]


def test_image_runs_as_its_user_without_build_tools(images: dict[str, str]) -> None:
    probe = "id -u; for tool in pip pip3 gcc cc make; do command -v $tool || true; done"
    out = podman(
        "run", "--rm", "--entrypoint", "sh", images["keventing"], "-c", probe, timeout=120
    ).stdout.split()
    assert out == ["10001"], f"uid and build tools found: {out}"


def test_image_healthcheck_probes_the_port_of_the_service_pid_1_runs(images: dict[str, str]) -> None:
    container = podman(
        "run", "--detach", images["keventing"], "event-display", "--port", "9123"
    ).stdout.strip()
    try:
        wait_for(
            lambda: podman("healthcheck", "run", container, check=False).returncode == 0,
            60,
            "event-display on :9123 to pass the image's HEALTHCHECK",
            every=1,
        )
        closed = podman(
            "exec", container, "python", "-m", "kev.healthcheck", "http://127.0.0.1:1/healthz", check=False
        )
        assert closed.returncode == 1, closed.stdout
    finally:
        podman("rm", "--force", "--time", "5", container, check=False)
